"""Our rows under py-spy, after the measured passes (sampling costs the harness core CPU, so it
never runs while figures are taken): the same saturation load on a fresh pinned gateway,
`py-spy record --format raw --nonblocking`, and the top of it by package and by function
(bench.profile.top_functions) written next to the results."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench.peers.measure import Sizes, probe
from bench.peers.rows import Context, Row
from bench.profile import top_functions
from bench.scenarios import closed_loop

WARMUP_S = 2.0


def packages(top: str, n: int = 12) -> list[str]:
    """The 'own % by package' lines of a top_functions report."""
    lines = top.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith("own %   package")) + 1
    except StopIteration:
        return []
    out = []
    for ln in lines[start:]:
        if not ln.strip():
            break
        out.append(ln.strip())
    return out[:n]


async def record(py_spy: str, pid: int, raw: Path, seconds: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "-o",
        str(raw),
        "--format",
        "raw",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(seconds))),
        "--rate",
        "100",
        "--nonblocking",
        "--threads",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    return "" if proc.returncode == 0 else err.decode(errors="replace").strip()[-300:]


async def profile_row(
    ctx: Context, row: Row, s: Sizes, *, py_spy: str, out: Path, seconds: float
) -> dict[str, Any]:
    raw = out.with_suffix(".txt")
    top_path = out.parent / f"{out.name}-top.txt"
    running = await row.start(ctx)
    try:
        await probe(ctx, running)
        load = asyncio.create_task(
            closed_loop(
                running.target, s.clients, warmup=WARMUP_S, seconds=seconds + 1, cpu=running.cpu
            )
        )
        await asyncio.sleep(WARMUP_S)
        error = await record(py_spy, running.pid, raw, seconds)
        win = await load
    finally:
        running.stop()
    result: dict[str, Any] = {
        "streams_per_s_under_profiler": round(win.completed / win.seconds, 1),
        "command": f"{py_spy} record --format raw --nonblocking --threads "
        f"--rate 100 --duration {int(seconds)} --pid <gateway>",
    }
    if error or not raw.is_file():
        return {**result, "error": error or "py-spy wrote nothing"}
    top = top_functions(raw)
    top_path.write_text(
        f"{row.label}: {s.clients} clients, py-spy at 100 Hz for {int(seconds)} s\n\n{top}\n"
    )
    return {**result, "raw": str(raw), "top": str(top_path), "packages": packages(top)}
