"""Where the memory of an idle open stream goes: N streams held open against the fake upstream
(its first token due in an hour), the gateway's heap traced by tracemalloc before and after,
the difference per stream split by area (the innermost frame outside the standard library
says who asked for the memory).

The gateway runs under this module (`--traced-server`): tracemalloc on once it serves, a
snapshot written on each later SIGUSR2. Traced bytes are Python's allocations only (RSS adds the
allocator's slack and the C libraries'); scenario d measures RSS.

    python -m bench.idle_memory [--streams 200] [--route conversation|openai] [--frames 30]
        [--top 25] [--gateway-src DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import sysconfig
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

SNAPSHOT_ENV = "BENCH_IDLE_MEMORY_SNAPSHOT"  # where the traced server writes its snapshots

# (area, path fragments of the innermost frame outside the standard library)
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "server connection (uvicorn, EdgeProtocol)",
        ("/uvicorn/", "/httptools/", "gateway/server.py"),
    ),
    ("EventStream (gateway/api/sse.py)", ("gateway/api/sse.py",)),
    ("ASGI/Starlette chain", ("/starlette/", "gateway/app.py", "gateway/observability.py")),
    ("routes (gateway/api)", ("gateway/api/",)),
    ("turn (gateway/turn)", ("gateway/turn/",)),
    ("adapter chain (providers, gateway/models)", ("providers/", "gateway/models/")),
    ("SDK request (openai, anthropic)", ("/openai/", "/anthropic/")),
    (
        "upstream transport (httpx, httpcore, anyio, h11)",
        ("/httpx", "/httpcore/", "/anyio/", "/h11/", "/aiohttp/", "/sniffio/"),
    ),
    ("redis", ("/redis/",)),
    ("policy (gateway/policy, gateway/governance)", ("gateway/policy/", "gateway/governance/")),
    ("storage (gateway/storage)", ("gateway/storage/",)),
    ("pydantic", ("/pydantic",)),
    ("gateway, other", ("gateway/",)),
)
_STDLIB = tuple(p for p in {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")} if p)


# -- inside the gateway -----------------------------------------------------------------------


def traced_server(argv: list[str], frames: int) -> int:
    """`gateway serve ...`; the first SIGUSR2 starts tracemalloc (after the start-up, which it
    would slow past the harness's patience), each later one writes a snapshot to
    SNAPSHOT_ENV.<k>. (SIGUSR1 is the worker's own: faulthandler's stack dump.)"""
    taken = 0

    def on_usr2(*_: object) -> None:
        nonlocal taken
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)
            return
        gc.collect()
        snap = tracemalloc.take_snapshot()
        snap.dump(f"{os.environ[SNAPSHOT_ENV]}.{taken}")
        taken += 1

    signal.signal(signal.SIGUSR2, on_usr2)
    from gateway.cli import main

    return main(argv[argv.index("gateway") + 1 :])


# -- reading snapshots ------------------------------------------------------------------------


def _ours(filename: str) -> bool:
    return not filename.startswith(_STDLIB) or "site-packages" in filename


def blame(traceback: tracemalloc.Traceback) -> tuple[str, str]:
    """(area, site) of an allocation: its innermost frame outside the standard library (or
    the innermost frame at all, when it has none)."""
    frames = list(traceback)  # oldest first
    chosen = next(
        (f for f in reversed(frames) if _ours(f.filename)), frames[-1] if frames else None
    )
    if chosen is None:
        return "unknown", "?"
    name = chosen.filename
    site = f"{_short(name)}:{chosen.lineno}"
    if chosen is not frames[-1]:  # the standard library's frame that allocated, beside it
        site += f" <- {_short(frames[-1].filename)}:{frames[-1].lineno}"
    if not _ours(name):
        return f"stdlib only ({Path(name).stem})", site
    for area, parts in AREAS:
        if any(p in name for p in parts):
            return area, site
    return f"other ({_package(name)})", site


def _short(filename: str) -> str:
    for mark in ("site-packages/", "/idlemem/", "/lib/python3"):
        if mark in filename:
            return filename.split(mark, 1)[1]
    return filename


def _package(filename: str) -> str:
    short = _short(filename)
    return short.split("/", 1)[0] if "/" in short else short


def breakdown(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int
) -> dict[str, Any]:
    areas: Counter[str] = Counter()
    sites: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for diff in after.compare_to(before, "traceback"):
        if not diff.size_diff:
            continue
        area, site = blame(diff.traceback)
        areas[area] += diff.size_diff
        sites[f"{area} | {site}"] += diff.size_diff
        counts[area] += diff.count_diff
    total = sum(areas.values())
    return {
        "streams": n,
        "kb_per_stream": round(total / n / 1024, 2),
        "areas_kb_per_stream": {a: round(b / n / 1024, 2) for a, b in areas.most_common()},
        "blocks_per_stream": {a: round(counts[a] / n, 1) for a, _ in areas.most_common()},
        "top_sites_kb_per_stream": {s: round(b / n / 1024, 3) for s, b in sites.most_common(top)},
    }


# -- the harness ------------------------------------------------------------------------------


async def _open(env: Any, sids: list[str], route: str) -> tuple[list[Any], int]:
    from bench.scenarios import hold_idle

    if route == "conversation":
        conns, recs, _ = await hold_idle(env, sids)
        return conns, sum(1 for r in recs if r.started and r.error is None)
    return await _hold_idle_openai(env, len(sids))


async def _hold_idle_openai(env: Any, n: int, batch: int = 50) -> tuple[list[Any], int]:
    """scenario d's hold_idle for `/v1/chat/completions` with stream: true."""
    from bench.harness import HOST
    from bench.loadgen import OPENAI, Recorder, http_request, open_many
    from bench.scenarios import PROMPT, Countdown

    gw = env.gateway
    host = f"{HOST}:{gw.port}"
    conns: list[Any] = []
    recs: list[Any] = []
    for i in range(0, n, batch):
        part = min(batch, n - i)
        cs = await open_many(HOST, gw.port, part)
        waiting = Countdown(part)
        for conn in cs:
            rec = Recorder(OPENAI, on_start=waiting.tick)
            conns.append(conn)
            recs.append(rec)
            body = {
                "model": "openai-idle",
                "stream": True,
                "messages": [{"role": "user", "content": PROMPT}],
            }
            fut = conn.request(
                http_request(
                    "POST", "/v1/chat/completions", host=host, token=env.api_key, body=body
                ),
                rec,
            )
            fut.add_done_callback(lambda f, r=rec, w=waiting: None if r.started else w.tick(r))
        await asyncio.wait_for(waiting.done.wait(), 60)
    return conns, sum(1 for r in recs if r.started and r.error is None)


async def _snapshot(env: Any, path: Path, k: int) -> tracemalloc.Snapshot:
    os.kill(env.gateway.process.pid, signal.SIGUSR2)
    target = Path(f"{path}.{k}")
    for _ in range(600):
        await asyncio.sleep(0.1)
        if target.exists():
            size = target.stat().st_size
            await asyncio.sleep(0.2)
            if target.stat().st_size == size:
                break
    return tracemalloc.Snapshot.load(str(target))


async def _measure(env: Any, args: argparse.Namespace) -> dict[str, Any]:
    from bench.harness import rss_bytes
    from bench.scenarios import close_gently, settle

    snaps = env.workdir / "idle_memory.snapshot"
    os.environ[SNAPSHOT_ENV] = str(snaps)
    wrap = [*env.python(), __file__, "--traced-server", str(args.frames)]
    gw = env.start_gateway(wrap=wrap)
    os.kill(gw.process.pid, signal.SIGUSR2)
    warm_n = 50
    sids = (
        await env.sessions("openai-idle", 2 * warm_n + args.streams)
        if args.route == "conversation"
        else []
    )
    for k in range(2):  # first-use allocations (lazy imports, schemas), twice: the first
        # round's closes take paths of their own for the first time
        part = sids[k * warm_n : (k + 1) * warm_n] or [""] * warm_n
        conns, _ = await _open(env, part, args.route)
        await close_gently(conns)
        await settle(env, 0)
        await asyncio.sleep(1.5)  # the cancelled answers are recorded
    rss0 = rss_bytes(gw.process.pid)
    before = await _snapshot(env, snaps, 0)
    conns, started = await _open(env, sids[2 * warm_n :] or [""] * args.streams, args.route)
    upstream_open = await settle(env, started)
    await asyncio.sleep(1.0)
    after = await _snapshot(env, snaps, 1)
    rss1 = rss_bytes(gw.process.pid)
    await close_gently(conns)
    await settle(env, 0, timeout=60)
    env.stop_gateway()
    out = breakdown(before, after, max(1, started), args.top)
    out.update(
        route=args.route,
        streams_open=started,
        upstream_open=upstream_open,
        rss_kb_per_stream_under_tracemalloc=round((rss1 - rss0) / max(1, started) / 1024, 1),
    )
    return out


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    from bench.harness import REPO, Env

    src = Path(args.gateway_src).resolve() if args.gateway_src else REPO
    with Env(src=src) as env:  # __enter__ starts it (a .start() too would leak a pair)
        return await _measure(env, args)


def _print(out: dict[str, Any]) -> None:
    print(
        f"{out['streams_open']} idle streams ({out['route']}; {out['upstream_open']} open "
        f"upstream): {out['kb_per_stream']} KB traced per stream"
    )
    for area, kb in out["areas_kb_per_stream"].items():
        print(f"  {kb:8.2f} KB  {out['blocks_per_stream'][area]:6.1f} blocks  {area}")
    print("top sites (KB per stream):")
    for site, kb in out["top_sites_kb_per_stream"].items():
        print(f"  {kb:8.3f}  {site}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--traced-server":
        return traced_server(argv[2:], int(argv[1]))
    parser = argparse.ArgumentParser(prog="python -m bench.idle_memory")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--route", choices=("conversation", "openai"), default="conversation")
    parser.add_argument("--frames", type=int, default=12, help="tracemalloc frames kept")
    parser.add_argument("--top", type=int, default=25, help="allocation sites listed")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--gateway-src", help="measure another tree (`git archive main | tar -x -C DIR`)"
    )
    args = parser.parse_args(argv)
    out = asyncio.run(_main(args))
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        _print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
