"""Scenario b's saturation load with the gateway under a profiler.

py-spy attaches to the running worker (`py-spy record --pid`), writes a flame graph (SVG) and
the raw collapsed stacks, from which the top functions by own and by inclusive samples are
printed. pyinstrument runs the gateway under `python -m pyinstrument` and writes its text and
HTML reports when the gateway stops.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import Env
from bench.scenarios import SessionPool, closed_loop, gateway_target, summary


def top_functions(raw: Path, n: int = 25) -> str:
    """Own and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].startswith("thread ("):
            # --threads: only the event loop's thread does the gateway's work; the others
            # (the default executor's) wait on a queue and would drown it
            if "_worker (concurrent/futures/thread.py" in stack:
                continue
            frames = frames[1:]
        if not frames:
            continue
        k = int(count)
        total += k
        own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    if not total:
        return "no samples"
    pkg: Counter[str] = Counter()
    for f, c in own.items():
        where = f.rpartition("(")[2]
        pkg[where.split("/")[0] if "/" in where else where.split(":")[0]] += c
    out = [f"{total} samples", "", "own %   package or module (the leaf frame's)"]
    out += [f"{100 * c / total:5.1f}   {p}" for p, c in pkg.most_common(20)]
    out += ["", "own %   function"]
    out += [f"{100 * c / total:5.1f}   {f}" for f, c in own.most_common(n)]
    out += ["", "incl %  function"]
    out += [f"{100 * c / total:5.1f}   {f}" for f, c in incl.most_common(n)]
    return "\n".join(out)


async def load(
    env: Env, args: argparse.Namespace, during: Any, sessions: int = 3000
) -> dict[str, Any]:
    pool = SessionPool(await env.sessions(args.model, sessions), 5)
    loop_task = asyncio.create_task(
        closed_loop(
            gateway_target(env, pool),
            args.vus,
            warmup=2.0,
            seconds=args.seconds,
            cpu=env.gateway.cpu,
        )  # type: ignore[union-attr]
    )
    await asyncio.sleep(2.0)
    await during()
    win = await loop_task
    return {
        "streams_per_s": round(win.completed / win.seconds, 1),
        "cpu": win.cpu,
        **summary(win.recs),
    }


def profile(args: argparse.Namespace) -> int:
    from bench.cli import RESULTS, run_loop

    out_dir = Path(args.out) if args.out else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    from bench.harness import REPO

    src = Path(args.gateway_src).resolve() if args.gateway_src else REPO
    with Env(src=src) as env:
        if args.tool == "py-spy":
            if shutil.which("py-spy") is None:
                print("bench: py-spy is not installed (pip install py-spy)", file=sys.stderr)
                return 2
            gw = env.start_gateway(workers=1, cpus=env.gateway_cpus)
            svg, raw = out_dir / f"profile-{stamp}.svg", out_dir / f"profile-{stamp}.txt"

            async def during() -> None:
                secs = str(max(1, int(args.seconds) - 1))
                common = [
                    "--pid",
                    str(gw.process.pid),
                    "--duration",
                    secs,
                    "--rate",
                    "100",
                    "--nonblocking",
                ]
                procs = [
                    await asyncio.create_subprocess_exec(
                        "py-spy",
                        "record",
                        "-o",
                        str(svg),
                        "--format",
                        "flamegraph",
                        *common,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    ),
                ]
                await asyncio.gather(*(p.wait() for p in procs))

            result = run_loop(load(env, args, during))
            # a second pass for the collapsed stacks (one py-spy per process at a time)
            env.start_gateway(workers=1, cpus=env.gateway_cpus)
            gw = env.gateway

            async def during_raw() -> None:
                p = await asyncio.create_subprocess_exec(
                    "py-spy",
                    "record",
                    "-o",
                    str(raw),
                    "--format",
                    "raw",
                    "--pid",
                    str(gw.process.pid),
                    "--duration",
                    str(max(1, int(args.seconds) - 1)),  # type: ignore[union-attr]
                    "--rate",
                    "100",
                    "--nonblocking",
                    "--threads",
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                await p.wait()

            run_loop(load(env, args, during_raw))
            print(f"load under py-spy: {result['streams_per_s']} streams/s")
            if raw.exists():
                text = top_functions(raw)
                (out_dir / f"profile-{stamp}-top.txt").write_text(text)
                print(text)
            print(f"flame graph: {svg}\ncollapsed stacks: {raw}")
        else:
            txt = out_dir / f"pyinstrument-{stamp}.txt"
            wrap = [*env.python(), "-m", "pyinstrument", "-r", "text", "-o", str(txt), "-m"]
            env.start_gateway(workers=1, cpus=env.gateway_cpus, wrap=wrap)

            async def idle() -> None:
                return None

            result = run_loop(load(env, args, idle, sessions=200))
            env.stop_gateway(signal.SIGINT)
            print(f"load under pyinstrument: {result['streams_per_s']} streams/s")
            print(f"pyinstrument report: {txt}")
    return 0
