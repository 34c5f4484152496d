"""One row's figures, with the load generator of bench/loadgen.py for every row: the time to
the first content frame at one client (beside the same requests sent straight to the upstream
just before, so "added" is the row's own share; for our rows also the Redis commands per
stream, from INFO commandstats), and completed streams/s with the row's CPU seconds per
completed stream at N concurrent clients in a closed loop."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.cli import loadavg
from bench.peers.rows import Context, Row, Running
from bench.scenarios import closed_loop, command_calls, diff, direct_target, sequential, summary


@dataclass(frozen=True)
class Sizes:
    ttft_requests: int = 400  # sequential streams at one client, after the warm-up ones
    ttft_warmup: int = 40
    clients: int = 50  # concurrent clients of the saturation load
    warmup_s: float = 3.0
    seconds: float = 15.0  # the window streams/s and CPU are counted over
    sessions: int = 2000  # conversations for the conversation route (5 prompts each)


FULL = Sizes()
QUICK = Sizes(ttft_requests=100, ttft_warmup=10, warmup_s=1.0, seconds=5.0, sessions=600)


class RowFailed(RuntimeError):
    """The row's server answered, but not with the stream of ctx.tokens every row must carry."""


async def probe(ctx: Context, running: Running) -> None:
    """One stream first: a peer that is misconfigured fails here with its own answer."""
    rec = (await sequential(running.target, 1, timeout=60))[0]
    if not rec.ok or rec.frames != ctx.tokens:
        body = rec.body[:300] if rec.body else b""
        raise RowFailed(
            f"probe stream: {rec.error or 'error frame'}, {rec.frames} content "
            f"frames of {ctx.tokens} {body!r}"
        )


async def ttft(
    ctx: Context, running: Running, s: Sizes, *, baseline: bool, ours: bool
) -> dict[str, Any]:
    direct = None
    if baseline:
        straight = direct_target(ctx.env, ctx.model)
        direct = summary(await sequential(straight, s.ttft_requests, warmup=s.ttft_warmup))
    redis = ctx.env.redis_client() if ours else None
    if redis is not None:
        redis.config_resetstat()
    own = summary(await sequential(running.target, s.ttft_requests, warmup=s.ttft_warmup))
    commands = None
    if redis is not None:  # the idle gateway's heartbeats and polls (a few per second) included
        commands = round(sum(command_calls(redis).values()) / (s.ttft_warmup + s.ttft_requests), 2)
        redis.close()
    added = None
    if direct is not None:
        added = {p: diff(own["ttft_ms"][p], direct["ttft_ms"][p]) for p in ("p50", "p99")}
    return {"row": own, "direct": direct, "added_ms": added, "redis_commands_per_stream": commands}


def core_seconds(cpus: set[int]) -> tuple[float, float]:
    """(busy, stolen) CPU seconds of these cores since boot, from /proc/stat: busy is what any
    process ran there, stolen what the hypervisor gave to other VMs."""
    hz = os.sysconf("SC_CLK_TCK")
    busy = steal = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, stolen = map(int, ticks[:8])
            busy += user + nice + system + irq + softirq
            steal += stolen
    return busy / hz, steal / hz


async def saturation(
    running: Running, s: Sizes, cores: set[int] | None, row_on_cores: bool
) -> dict[str, Any]:
    snaps: list[tuple[float, float]] = []

    def meter() -> float:  # closed_loop reads it at the window's start and end
        if cores:
            snaps.append(core_seconds(cores))
        return running.cpu()

    win = await closed_loop(
        running.target, s.clients, warmup=s.warmup_s, seconds=s.seconds, cpu=meter
    )
    cpu_ms = None
    if win.cpu is not None and win.completed:
        cpu_ms = round(win.cpu * win.seconds / win.completed * 1000, 3)
    neighbours = None
    if len(snaps) == 2 and win.cpu is not None:
        busy, steal = (b - a for a, b in zip(*snaps, strict=True))
        own = win.cpu if row_on_cores else 0.0
        neighbours = {
            "others_cores": round(max(0.0, busy / win.seconds - own), 3),
            "stolen_cores": round(steal / win.seconds, 3),
        }
    return {
        "streams_per_s": round(win.completed / win.seconds, 1),
        "cpu_cores": None if win.cpu is None else round(win.cpu, 3),
        "cpu_ms_per_stream": cpu_ms,
        "gateway_core_neighbours": neighbours,
        **summary(win.recs),
    }


def doubts(
    ctx: Context, row: Row, running: Running, one: dict[str, Any], sat: dict[str, Any]
) -> list[str]:
    out = []
    if running.pool is not None and running.pool.wrapped:
        out.append(
            f"the {len(running.pool.ids)} conversations were reused "
            f"{running.pool.wrapped}x: some histories grew longer"
        )
    for name, part in (("one client", one["row"]), ("saturation", sat)):
        if part["errors"]:
            out.append(f"{name}: {part['requests'] - part['ok']} failed streams: {part['errors']}")
        if part["ok"] and round(part["frames_per_stream"], 2) != ctx.tokens:
            frames = part["frames_per_stream"]
            out.append(f"{name}: {frames:.2f} content frames per stream, not {ctx.tokens}")
    near = sat.get("gateway_core_neighbours") or {}
    taken = near.get("others_cores", 0.0) + near.get("stolen_cores", 0.0)
    if taken > 0.05:
        out.append(
            f"other processes and VMs took {taken:.2f} of the gateway core during the "
            f"window (others {near['others_cores']}, stolen {near['stolen_cores']})"
        )
    cores = sat["cpu_cores"]
    if row.id != "direct" and cores is not None and cores < 0.9:
        out.append(
            f"the row used only {cores:.2f} of its core at {sat.get('requests')} "
            "streams: it was not the bottleneck (the harness core, or a neighbour)"
        )
    return out


async def measure(ctx: Context, row: Row, s: Sizes) -> dict[str, Any]:
    t0, load0 = time.monotonic(), loadavg()
    running = await row.start(ctx)
    try:
        await probe(ctx, running)
        one = await ttft(ctx, running, s, baseline=row.id != "direct", ours=row.ours)
        sat = await saturation(running, s, ctx.env.gateway_cpus, row.id != "direct")
    finally:
        running.stop()
    return {
        "id": row.id,
        "label": row.label,
        "version": running.version,
        "command": running.command,
        "notes": running.notes,
        "ttft_one_client": one,
        "saturation": sat,
        "warnings": doubts(ctx, row, running, one, sat),
        "seconds": round(time.monotonic() - t0, 1),
        "loadavg_1m": {"before": load0, "after": loadavg()},
        "sizes": asdict(s),
    }


def _get(res: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        res = (res or {}).get(key)  # type: ignore[assignment]
    return res


def _median(values: list[Any]) -> float | None:
    found = [v for v in values if v is not None]
    return round(statistics.median(found), 3) if found else None


SPREAD = {  # the figures the table shows, by where a single round keeps them
    "added_p50_ms": "ttft_one_client.added_ms.p50",
    "added_p99_ms": "ttft_one_client.added_ms.p99",
    "ttft_p50_ms": "ttft_one_client.row.ttft_ms.p50",
    "ttft_p99_ms": "ttft_one_client.row.ttft_ms.p99",
    "redis_commands_per_stream": "ttft_one_client.redis_commands_per_stream",
    "streams_per_s": "saturation.streams_per_s",
    "cpu_ms_per_stream": "saturation.cpu_ms_per_stream",
    "cpu_cores": "saturation.cpu_cores",
    "others_cores": "saturation.gateway_core_neighbours.others_cores",
    "stolen_cores": "saturation.gateway_core_neighbours.stolen_cores",
}


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rounds of one row: the median of each figure in a single round's shape (so the
    table reads it alike), its (min, max) in `spread`, and every round kept in `rounds`."""
    if len(runs) == 1:
        return runs[0]
    values = {name: [_get(r, path) for r in runs] for name, path in SPREAD.items()}
    med = {name: _median(v) for name, v in values.items()}
    spread = {
        name: [min(x for x in v if x is not None), max(x for x in v if x is not None)]
        for name, v in values.items()
        if any(x is not None for x in v)
    }
    first = runs[0]
    added = None
    if first["ttft_one_client"]["added_ms"] is not None:
        added = {"p50": med["added_p50_ms"], "p99": med["added_p99_ms"]}
    return {
        **{k: first[k] for k in ("id", "label", "version", "command", "notes", "sizes")},
        "warnings": [f"round {i + 1}: {w}" for i, r in enumerate(runs) for w in r["warnings"]],
        "ttft_one_client": {
            "row": {"ttft_ms": {"p50": med["ttft_p50_ms"], "p99": med["ttft_p99_ms"]}},
            "added_ms": added,
            "redis_commands_per_stream": med["redis_commands_per_stream"],
        },
        "saturation": {
            **{k: med[k] for k in ("streams_per_s", "cpu_ms_per_stream", "cpu_cores")},
            "gateway_core_neighbours": {k: med[k] for k in ("others_cores", "stolen_cores")},
        },
        "spread": spread,
        "rounds": runs,
        "seconds": round(sum(r["seconds"] for r in runs), 1),
        "loadavg_1m": {
            "before": runs[0]["loadavg_1m"]["before"],
            "after": runs[-1]["loadavg_1m"]["after"],
        },
    }
