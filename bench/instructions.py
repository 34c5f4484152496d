"""Instructions per stream, counted by valgrind: a CPU figure this host's noise cannot move.

CPU time per stream on this VM moves up to 1.6x between runs of the same tree (a "slow mode"
that a whole run either hits or not; BENCHMARKS.md, issue 17's seventh round), more than most
levers are worth. Counting the instructions the gateway executes does not depend on the
host's clock or caches: our gateway runs under `valgrind --tool=callgrind` with counting off
while it starts and warms up, then counts `--streams` sequential streams of the peers
table's rows (the same requests, fake upstream and Redis as `python -m bench.peers`), and
prints instructions per stream. The same tree counts within a fraction of a percent from
run to run, so two trees compare in one run of each.

    python -m bench.instructions [--only openai-compat,conversation] [--streams 150] [--tokens 50]
    python -m bench.instructions --src DIR   # another tree (e.g. `git archive C | tar -x`)
    python -m bench.instructions --keep DIR  # and each row's dump, for callgrind_annotate

Instructions are not time: a cache miss or a syscall costs more than its count. They are
a lever's measure, not the peers table's (Portkey's JIT under valgrind would not be its
usual self, so only our rows are counted).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import MODELS, REPO
from bench.peers.cache import Cache
from bench.peers.rows import (
    TOKENS,
    Context,
    Running,
    model_ids,
    start_conversation,
    start_openai_compat,
)
from bench.peers.servers import PeerEnv
from bench.scenarios import sequential

ROWS = {"openai-compat": start_openai_compat, "conversation": start_conversation}
STARTUP_S = 600.0  # the gateway starts under valgrind's translator: minutes, not seconds


class CountedEnv(PeerEnv):
    """PeerEnv whose gateway runs under callgrind, counting only when told to."""

    out: Path = Path()

    def start_gateway(self, *, workers: int = 1, cpus: set[int] | None = None, wrap: Any = None):  # type: ignore[no-untyped-def]
        self.out = self.workdir / f"callgrind-{time.monotonic_ns()}.out"
        valgrind = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={self.out}",
            *self.python(),
            "-m",
        ]
        return super().start_gateway(workers=1, cpus=cpus, wrap=valgrind)


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def newest_dump(out: Path) -> Path:
    """The dump callgrind_control just asked for: the newest part file of `out`."""
    dumps = sorted(out.parent.glob(out.name + "*"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump next to {out}")
    return dumps[-1]


def counted(dump: Path) -> int:
    """The instructions a callgrind dump counted (its `totals:` line)."""
    m = re.search(r"^totals:\s*(\d+)", dump.read_text(errors="replace"), re.MULTILINE)
    if m is None:
        raise RuntimeError(f"no instruction total in {dump}")
    return int(m.group(1))


async def count_row(
    ctx: Context, start: Any, streams: int, warmup: int, keep: Path | None = None
) -> dict[str, Any]:
    running: Running = await start(ctx)
    try:
        await sequential(running.target, 0, warmup=warmup, timeout=120)
        callgrind(running.pid, "--zero")
        callgrind(running.pid, "--instr=on")
        recs = await sequential(running.target, streams, timeout=120)
        callgrind(running.pid, "--instr=off")
        callgrind(running.pid, "--dump")
        failed = [r for r in recs if r.error]
        if failed:
            raise RuntimeError(f"{len(failed)} of {streams} streams failed: {failed[0].error}")
        frames = sum(r.frames for r in recs) / len(recs)
        dump = newest_dump(ctx.env.out)  # type: ignore[attr-defined]
        total = counted(dump)
        if keep is not None:  # for callgrind_annotate: where the instructions went
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(dump, keep / f"{start.__name__.removeprefix('start_')}.callgrind")
    finally:
        running.stop()
    return {"streams": streams, "frames_per_stream": frames, "instructions": total}


async def run(args: argparse.Namespace) -> int:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench.instructions needs valgrind (apt install valgrind)", file=sys.stderr)
        return 2
    src = Path(args.src).resolve() if args.src else REPO
    keep = Path(args.keep).resolve() if args.keep else None
    model, upstream_model = model_ids(args.tokens)
    MODELS.setdefault(model, ("openai", upstream_model))  # our gateway's config is made of these
    env = CountedEnv(src=src, workdir=Path(tempfile.mkdtemp(prefix="cgw-instr-")))
    with env:
        ctx = Context(
            env=env,
            cache=Cache(log=False),
            sessions=args.streams + args.warmup,
            tokens=args.tokens,
        )
        print(
            f"tree {src}; {args.streams} streams of {args.tokens} tokens counted "
            f"after {args.warmup} uncounted"
        )
        for name in args.only.split(","):
            res = await count_row(ctx, ROWS[name], args.streams, args.warmup, keep)
            per = res["instructions"] / res["streams"]
            print(
                f"{name:14} {per / 1e6:8.3f} M instructions per stream "
                f"({res['frames_per_stream']:.0f} frames each)",
                flush=True,
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--only", default="openai-compat,conversation")
    parser.add_argument("--streams", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--tokens", type=int, default=TOKENS, help="content tokens per stream")
    parser.add_argument("--src", help="a folder holding another tree (its gateway/ is counted)")
    parser.add_argument(
        "--keep", help="a folder for each row's callgrind dump (read it with callgrind_annotate)"
    )
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
