"""One row's figures, with the load generator of bench/loadgen.py for every row: the time to
the first content frame at one client (beside the same requests sent straight to the upstream
just before, so "added" is the row's own share; for our rows also the Redis commands per
stream, from INFO commandstats), and completed streams/s with the row's CPU seconds per
completed stream at N concurrent clients in a closed loop."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.cli import loadavg
from bench.peers.rows import MODEL, TOKENS, Context, Row, Running
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
    """The row's server answered, but not with the 50-token stream every row must carry."""


async def probe(running: Running) -> None:
    """One stream first: a peer that is misconfigured fails here with its own answer."""
    rec = (await sequential(running.target, 1, timeout=60))[0]
    if not rec.ok or rec.frames != TOKENS:
        body = rec.body[:300] if rec.body else b""
        raise RowFailed(f"probe stream: {rec.error or 'error frame'}, {rec.frames} content "
                        f"frames of {TOKENS} {body!r}")


async def ttft(ctx: Context, running: Running, s: Sizes, *, baseline: bool,
               ours: bool) -> dict[str, Any]:
    direct = None
    if baseline:
        direct = summary(await sequential(direct_target(ctx.env, MODEL), s.ttft_requests,
                                          warmup=s.ttft_warmup))
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


async def saturation(running: Running, s: Sizes) -> dict[str, Any]:
    win = await closed_loop(running.target, s.clients, warmup=s.warmup_s, seconds=s.seconds,
                            cpu=running.cpu)
    cpu_ms = None
    if win.cpu is not None and win.completed:
        cpu_ms = round(win.cpu * win.seconds / win.completed * 1000, 3)
    return {"streams_per_s": round(win.completed / win.seconds, 1),
            "cpu_cores": None if win.cpu is None else round(win.cpu, 3),
            "cpu_ms_per_stream": cpu_ms, **summary(win.recs)}


def doubts(row: Row, one: dict[str, Any], sat: dict[str, Any]) -> list[str]:
    out = []
    for name, part in (("one client", one["row"]), ("saturation", sat)):
        if part["errors"]:
            out.append(f"{name}: {part['requests'] - part['ok']} failed streams: "
                       f"{part['errors']}")
        if part["ok"] and round(part["frames_per_stream"], 2) != TOKENS:
            out.append(f"{name}: {part['frames_per_stream']:.2f} content frames per stream, "
                       f"not {TOKENS}")
    cores = sat["cpu_cores"]
    if row.id != "direct" and cores is not None and cores < 0.9:
        out.append(f"the row used only {cores:.2f} of its core at {sat.get('requests')} "
                   "streams: it was not the bottleneck (the harness core, or a neighbour)")
    return out


async def measure(ctx: Context, row: Row, s: Sizes) -> dict[str, Any]:
    t0, load0 = time.monotonic(), loadavg()
    running = await row.start(ctx)
    try:
        await probe(running)
        one = await ttft(ctx, running, s, baseline=row.id != "direct", ours=row.ours)
        sat = await saturation(running, s)
    finally:
        running.stop()
    return {
        "id": row.id, "label": row.label, "version": running.version,
        "command": running.command, "notes": running.notes,
        "ttft_one_client": one, "saturation": sat, "warnings": doubts(row, one, sat),
        "seconds": round(time.monotonic() - t0, 1),
        "loadavg_1m": {"before": load0, "after": loadavg()}, "sizes": asdict(s),
    }
