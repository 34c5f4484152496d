"""g. Scale-out: the saturation load (scenario b's closed loop of 50-token streams) against one
gateway process, against `serve --workers 2`, and against two replicas: two `serve`
processes on the same Redis, the load generator spreading its connections over both the way
a plain round-robin load balancer would (no stickiness: a user's next prompt may land on
either). Nothing is pinned, so all three runs get the same cores.

Registered as scenario "g" (`python -m bench --only g`); built only from the harness's and
the other scenarios' functions.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from typing import Any

from bench.harness import Env, Gateway
from bench.scenarios import (
    FULL,
    SCENARIOS,
    Sizes,
    closed_loop,
    gateway_target,
    make_pool,
    row,
    saturation,
    summary,
)


def start_second_replica(env: Env) -> tuple[Gateway, Gateway]:
    """Another `serve` process beside env.gateway, started by the harness (which keeps one
    gateway at a time: hand it the slot, then take it back)."""
    first = env.gateway
    assert first is not None
    env.gateway = None
    try:
        second = env.start_gateway(workers=1, cpus=None)
    finally:
        env.gateway = first
    return first, second


def stop_replica(env: Env, replica: Gateway) -> None:
    first, env.gateway = env.gateway, replica
    try:
        env.stop_gateway()
    finally:
        env.gateway = first


async def round_robin(
    env: Env, s: Sizes, seconds: float, pool: Any, gateways: list[Gateway]
) -> dict[str, Any]:
    """The closed loop with its connections dealt over the gateways in turn; CPU is the
    sum over every gateway process."""
    base = gateway_target(env, pool)
    targets = [replace(base, port=gw.port) for gw in gateways]
    share = [
        s.b_vus // len(targets) + (1 if i < s.b_vus % len(targets) else 0)
        for i in range(len(targets))
    ]

    def cpu() -> float:
        return sum(gw.cpu() for gw in gateways)

    wins = await asyncio.gather(
        *(
            closed_loop(t, n, warmup=s.b_warmup, seconds=seconds, cpu=cpu if i == 0 else None)
            for i, (t, n) in enumerate(zip(targets, share, strict=True))
        )
    )
    completed = sum(w.completed for w in wins)
    recs = [r for w in wins for r in w.recs]
    total_cpu = wins[0].cpu
    cpu_ms = (
        round(total_cpu * seconds / completed * 1000, 3)
        if total_cpu is not None and completed
        else None
    )
    return {
        "streams_per_s": round(completed / seconds, 1),
        "gateway_cpu": None if total_cpu is None else round(total_cpu, 3),
        "gateway_cpu_ms_per_stream": cpu_ms,
        "per_replica_streams_per_s": [round(w.completed / seconds, 1) for w in wins],
        **summary(recs),
    }


async def scenario_g(env: Env, s: Sizes) -> dict[str, Any]:
    pool = await make_pool(env, "openai-50", 4000 if s is FULL else 200, s.turns_per_conversation)
    saved = (env.gateway_cpus, env.harness_cpus)
    env.place(None, None)  # everything may run on every core, for every run alike
    out: dict[str, Any] = {}
    try:
        env.start_gateway(workers=1, cpus=None)
        out["one"] = await saturation(env, s, s.f_seconds, pool)
        env.start_gateway(workers=2, cpus=None)
        out["workers"] = await saturation(env, s, s.f_seconds, pool)
        env.start_gateway(workers=1, cpus=None)
        first, second = start_second_replica(env)
        try:
            out["replicas"] = await round_robin(env, s, s.f_seconds, pool, [first, second])
        finally:
            stop_replica(env, second)
    finally:
        env.place(*saved)
        env.start_gateway(workers=1, cpus=env.gateway_cpus)

    def ratio(key: str) -> float | None:
        one = out["one"]["streams_per_s"]
        return round(out[key]["streams_per_s"] / one, 2) if one else None

    def figures(key: str) -> str:
        o = out[key]
        return (
            f"{o['streams_per_s']}/s, TTFT p50 {o['ttft_ms']['p50']} ms, "
            f"p99 {o['ttft_ms']['p99']} ms, CPU {o['gateway_cpu_ms_per_stream']} ms/stream"
        )

    cores = os.cpu_count()
    return {
        "id": "g",
        "title": "scale-out: 1 process vs --workers 2 vs 2 replicas (round-robin)",
        "rows": [
            row("streams/s, 1 process", out["one"]["streams_per_s"], None, unit="/s"),
            row("streams/s, --workers 2", out["workers"]["streams_per_s"], None, unit="/s"),
            row("streams/s, 2 replicas", out["replicas"]["streams_per_s"], None, unit="/s"),
            row("--workers 2 / 1 process", ratio("workers"), None, unit="x"),
            row("2 replicas / 1 process", ratio("replicas"), None, unit="x"),
            row(
                "gateway CPU ms/stream: 1 / workers / replicas",
                " / ".join(
                    str(out[k]["gateway_cpu_ms_per_stream"]) for k in ("one", "workers", "replicas")
                ),
                None,
            ),
            row(
                "TTFT p99 ms: 1 / workers / replicas",
                " / ".join(str(out[k]["ttft_ms"]["p99"]) for k in ("one", "workers", "replicas")),
                None,
            ),
        ],
        "details": out,
        "notes": [
            f"1 process: {figures('one')}",
            f"--workers 2: {figures('workers')}",
            (
                f"2 replicas: {figures('replicas')}; per replica "
                f"{out['replicas']['per_replica_streams_per_s']} /s"
            ),
            (
                f"this machine has {cores} cores shared by the gateway(s), Redis, "
                "the fake upstream "
                "and the load generator: the ratios are bounded by that, not by the gateway; the "
                "CPU ms per stream shows what a process costs, whichever way it is deployed"
            ),
        ],
    }


SCENARIOS.setdefault("g", scenario_g)
