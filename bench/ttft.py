"""Time to first token at one client, two trees side by side: a lever's latency, measured in
one run.

The peers table's TTFT moves with this host's mood from run to run (BENCHMARKS.md, issue
17's seventh round) by more than a lever changes it. This runs our two rows (the same
requests, fake upstream, config and keys as `python -m bench.peers`) for this tree and
another one in turns, A B then B A, round after round, each with its own Redis and upstream
and its gateway pinned to the gateway core, so both trees meet the same hours of the host:

    python -m bench.ttft --src DIR [--rounds 3] [--streams 600] [--only conversation]

(`git archive C | tar -x -C DIR` makes DIR). It prints each measurement, then per tree and
row the median over the rounds of the TTFT p50 and p99 (the time from the request's last
byte to the first content frame at the client, the upstream's own included: direct to the
upstream it is about 0.06-0.1 ms here).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.harness import MODELS, REPO
from bench.peers.cache import Cache
from bench.peers.rows import (
    TOKENS,
    Context,
    model_ids,
    start_conversation,
    start_openai_compat,
)
from bench.peers.servers import PeerEnv
from bench.scenarios import sequential

ROWS: dict[str, Callable[[Context], Any]] = {
    "conversation": start_conversation,
    "openai-compat": start_openai_compat,
}
WARMUP = 200


def turns(rounds: int) -> Iterator[tuple[int, str]]:
    """(round, tree) in the order they run: A B, then B A, so neither always goes first."""
    for i in range(rounds):
        for tree in ("A", "B") if i % 2 == 0 else ("B", "A"):
            yield i, tree


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def summary(results: dict[tuple[str, str], list[tuple[float, float]]]) -> list[str]:
    """One line per tree and row: the medians over the rounds of p50 and p99 (ms)."""
    lines = []
    for (tree, row), runs in sorted(results.items()):
        p50 = statistics.median(r[0] for r in runs)
        p99 = statistics.median(r[1] for r in runs)
        lines.append(f"{tree} {row:14} TTFT p50 {p50:.3f} ms  p99 {p99:.3f} ms  ({len(runs)} runs)")
    return lines


async def measure(env: PeerEnv, start: Any, streams: int, tokens: int) -> tuple[float, float]:
    ctx = Context(env=env, cache=Cache(log=False), sessions=streams + WARMUP, tokens=tokens)
    running = await start(ctx)
    try:
        await sequential(running.target, 0, warmup=WARMUP, timeout=120)
        recs = await sequential(running.target, streams, timeout=120)
    finally:
        running.stop()
    failed = [r for r in recs if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} of {streams} streams failed: {failed[0].error}")
    ttft = [(r.first - r.sent) * 1000 for r in recs]
    return percentile(ttft, 0.5), percentile(ttft, 0.99)


async def run(args: argparse.Namespace) -> int:
    model, upstream_model = model_ids(args.tokens)
    MODELS.setdefault(model, ("openai", upstream_model))
    trees = {"A": REPO, "B": Path(args.src).resolve()}
    print(f"A: {trees['A']}\nB: {trees['B']}")
    envs: dict[str, PeerEnv] = {}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for name, src in trees.items():
            env = PeerEnv(src=src, workdir=Path(tempfile.mkdtemp(prefix=f"cgw-ttft-{name}-")))
            envs[name] = env.__enter__()
        for i, tree in turns(args.rounds):
            for row in args.only.split(","):
                p50, p99 = await measure(envs[tree], ROWS[row], args.streams, args.tokens)
                results.setdefault((tree, row), []).append((p50, p99))
                print(f"round {i} {tree} {row:14} p50 {p50:.3f} ms  p99 {p99:.3f} ms", flush=True)
    finally:
        for env in envs.values():
            env.__exit__(None, None, None)
    print("\n".join(summary(results)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ttft", description=__doc__)
    parser.add_argument("--src", required=True, help="the other tree (B); A is this one")
    parser.add_argument("--only", default="conversation,openai-compat")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=600, help="measured per row and round")
    parser.add_argument("--tokens", type=int, default=TOKENS, help="content tokens per stream")
    args = parser.parse_args(argv)
    unknown = [row for row in args.only.split(",") if row not in ROWS]
    if unknown or args.rounds < 1 or args.streams < 1:
        parser.error(f"rows are {', '.join(ROWS)}; rounds and streams at least 1")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
