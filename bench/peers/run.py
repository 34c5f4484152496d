"""One side-by-side run: install what the chosen rows need into the cache (before anything is
timed), start the bench's Redis and fake upstream on the harness core, measure each row in
turn on the gateway core, profile our rows, and write everything to one JSON file."""

from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.cli import RESULTS, loadavg, run_loop
from bench.harness import MODELS, machine_info
from bench.peers.cache import DEFAULT_ROOT, Cache, Unavailable
from bench.peers.measure import FULL, Sizes, combine, measure
from bench.peers.profile import profile_row
from bench.peers.rows import ROWS, TOKENS, Context, Row, model_ids, node_version
from bench.peers.servers import PeerEnv


def say(text: str) -> None:
    print(f"bench.peers: {text}", file=sys.stderr, flush=True)


def prepare(rows: list[Row], cache: Cache) -> dict[str, str]:
    """Install the peers now, so no install runs between two measured rows; a peer that
    cannot be installed is skipped with the reason (row id -> reason)."""
    skipped = {}
    for row in rows:
        try:
            if row.peer == "portkey":
                cache.portkey()
            elif row.peer == "litellm":
                cache.litellm()
        except Unavailable as exc:
            skipped[row.id] = str(exc)
            say(f"{row.id} skipped: {exc}")
    return skipped


def skipped_row(row: Row, why: str) -> dict[str, Any]:
    return {"id": row.id, "label": row.label, "skipped": why}


def order(rows: list[Row], k: int) -> list[Row]:
    """Round k's order: direct first (the harness's state before the rows), the others
    rotated by k, so no row always runs right after a given other one."""
    rest = [r for r in rows if r.id != "direct"]
    shift = k % len(rest) if rest else 0
    return [r for r in rows if r.id == "direct"] + rest[shift:] + rest[:shift]


async def measure_rows(
    ctx: Context, rows: list[Row], s: Sizes, skipped: dict[str, str], rounds: int = 1
) -> list[dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {r.id: [] for r in rows}
    failed: dict[str, str] = dict(skipped)
    for k in range(rounds):
        for row in order(rows, k):
            if row.id in failed:
                continue
            say(f"measuring {row.id}" + (f" (round {k + 1} of {rounds})" if rounds > 1 else ""))
            try:
                res = await measure(ctx, row, s)
            except Exception as exc:  # noqa: BLE001 - one row failing must not hide the others
                traceback.print_exc()
                failed[row.id] = f"failed: {type(exc).__name__}: {exc}"
                continue
            say(f"{row.id}: {res['saturation']['streams_per_s']} streams/s in {res['seconds']} s")
            runs[row.id].append(res)
    return [skipped_row(r, failed[r.id]) if r.id in failed else combine(runs[r.id]) for r in rows]


async def profile_rows(
    ctx: Context, rows: list[Row], s: Sizes, *, py_spy: str, out: Path, stamp: str, seconds: float
) -> dict[str, Any]:
    found = {}
    for row in (r for r in rows if r.ours):
        say(f"profiling {row.id} ({seconds:g} s under py-spy) ...")
        try:
            found[row.id] = await profile_row(
                ctx,
                row,
                s,
                py_spy=py_spy,
                seconds=seconds,
                out=out / f"peers-{stamp}-profile-{row.id}",
            )
        except Exception as exc:  # noqa: BLE001 - a profile that fails leaves the figures
            traceback.print_exc()
            found[row.id] = {"error": f"{type(exc).__name__}: {exc}"}
    return found


def run(
    *,
    only: list[str] | None = None,
    sizes: Sizes = FULL,
    profile: bool = True,
    profile_seconds: float = 15.0,
    cache_root: Path = DEFAULT_ROOT,
    out: Path = RESULTS,
    keep: bool = False,
    quick: bool = False,
    rounds: int = 1,
    pin: bool = True,
    tokens: int = TOKENS,
) -> tuple[Path, dict[str, Any]]:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    rows = [ROWS[i] for i in (only or list(ROWS))]
    cache = Cache(cache_root)
    skipped = prepare(rows, cache)
    py_spy, profile_note = None, ""
    if profile and any(r.ours for r in rows):
        try:
            py_spy = cache.py_spy()
        except Unavailable as exc:
            profile_note = f"no profile: {exc}"
            say(profile_note)
    out.mkdir(parents=True, exist_ok=True)
    cpus: dict[str, Any] = {} if pin else {"gateway_cpus": None, "harness_cpus": None}
    model, upstream_model = model_ids(tokens)
    MODELS.setdefault(model, ("openai", upstream_model))  # our gateway's config is made of these
    with PeerEnv(keep=keep, **cpus) as env:
        machine = machine_info()
        commit = str(machine.get("commit", ""))
        ctx = Context(env, cache, sessions=sizes.sessions, commit=commit, tokens=tokens)

        async def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
            results = await measure_rows(ctx, rows, sizes, skipped, rounds)
            profiles: dict[str, Any] = {}
            if py_spy:
                profiles = await profile_rows(
                    ctx, rows, sizes, py_spy=py_spy, out=out, stamp=stamp, seconds=profile_seconds
                )
            return results, profiles

        load0 = loadavg()
        results, profiles = run_loop(go())
        report = {
            "started": stamp,
            "quick": quick,
            "rounds": rounds,
            "tokens": tokens,
            "sizes": asdict(sizes),
            "machine": {**machine, "node": node_version()},
            "placement": {
                "gateway_cpus": sorted(env.gateway_cpus or []),
                "harness_cpus": sorted(env.harness_cpus or []),
                "gateway": "each row's server (ours, Portkey's node, LiteLLM's python) in turn, "
                "pinned with taskset; the direct row has none",
                "harness": "load generator (bench/loadgen.py), fake upstream (bench/upstream.py) "
                "and Redis",
            },
            "loadavg_1m": {"before": load0, "after": loadavg()},
            "policies": env.policies_note,
            "rows": results,
            "profiles": profiles,
            "profile_note": profile_note,
        }
    path = out / f"peers-{stamp}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    return path, report
