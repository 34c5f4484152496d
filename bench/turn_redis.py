"""Redis round trips per conversation turn, counted inside a real gateway: N turns of
`/api/conversation/stream_chat` through real HTTP (the bench harness: embedded Redis, fake
upstream, default policies, an API key), each sent redis-py execution (one socket write:
one round trip) and each command packed counted where our code made it, and Redis's own
INFO commandstats beside them (those count the commands Lua scripts run too).

The gateway runs under this module (`--counting-server`), which wraps redis-py's
`send_packed_command` and `pack_command` (and the Lane's write of a batch) and dumps its
counters on SIGUSR2 (SIGUSR1 is the gateway's own stack dump); the harness dumps them before
and after the counted turns and takes the difference. A second, unwrapped gateway gives the
CPU per turn (its process time over the turns, one client: noisy on a shared machine,
compare runs of the same minute).

    python -m bench.turn_redis [--turns 200] [--per-session 5] [--concurrency 1]
        [--gateway-src DIR]   (before/after: DIR an export of main, e.g.
        `mkdir /tmp/main && git archive main | tar -x -C /tmp/main`)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

COUNTS_ENV = "BENCH_TURN_REDIS_COUNTS"  # where the counting server writes its counters


# -- inside the gateway -----------------------------------------------------------------------


def _site() -> str:
    """The innermost frame of our own code below redis-py: who made the round trip."""
    for frame in reversed(traceback.extract_stack(limit=40)):
        if "/gateway/" in frame.filename and "bench" not in frame.filename:
            if frame.filename.endswith(("/storage/batch.py", "/storage/lane.py")):
                continue  # a Batch's round trip: who executed it says more
            short = frame.filename.split("/gateway/", 1)[1].removesuffix(".py")
            return f"{short}:{frame.name}"
    return "?"


def counting_server(argv: list[str]) -> int:
    """`gateway serve ...` with redis-py's writes and packed commands counted per site."""
    from redis.asyncio.connection import AbstractConnection

    trips: Counter[str] = Counter()
    commands: Counter[str] = Counter()
    send, pack = AbstractConnection.send_packed_command, AbstractConnection.pack_command

    async def counted_send(self: Any, command: Any, check_health: bool = True) -> None:
        trips[_site()] += 1
        await send(self, command, check_health)

    def counted_pack(self: Any, *args: Any) -> Any:
        name = args[0] if isinstance(args[0], str) else args[0].decode()
        commands[name.split()[0].upper()] += 1
        return pack(self, *args)

    def dump(*_: object) -> None:
        Path(os.environ[COUNTS_ENV]).write_text(
            json.dumps({"trips": dict(trips), "commands": dict(commands)})
        )

    AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]
    AbstractConnection.pack_command = counted_pack  # type: ignore[method-assign]
    try:  # a batch on the shared connection (gateway/storage/lane.py): one write as well
        from gateway.storage.lane import _Wire
    except ImportError:  # a --gateway-src tree from before the Lane
        pass
    else:
        wire_call = _Wire.call

        async def counted_call(self: Any, packed: bytes, count: int) -> list[Any]:
            trips[_site()] += 1
            return await wire_call(self, packed, count)

        _Wire.call = counted_call  # type: ignore[method-assign]
    signal.signal(signal.SIGUSR2, dump)
    from gateway.cli import main

    return main(argv[argv.index("gateway") + 1 :])


# -- the harness ------------------------------------------------------------------------------


async def _target(env: Any, args: argparse.Namespace) -> Any:
    """A pool of fresh sessions for the run (made before anything is counted), warmed up."""
    from bench.scenarios import gateway_target, make_pool, sequential

    need = (args.rounds + 1) * args.turns // args.per_session + args.concurrency + 2
    target = gateway_target(env, await make_pool(env, "openai-10", need, args.per_session))
    await sequential(target, 2 * args.per_session)  # connections, scripts, caches
    return target


async def _turns(target: Any, args: argparse.Namespace) -> list[Any]:
    from bench.scenarios import closed_loop, sequential

    if args.concurrency == 1:
        return await sequential(target, args.turns)
    win = await closed_loop(target, args.concurrency, warmup=0, seconds=args.turns / 150)
    return win.recs


async def _dump(pid: int, counts: Path) -> dict[str, Any]:
    """The counting server's counters so far."""
    counts.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    for _ in range(100):
        await asyncio.sleep(0.05)
        if counts.exists():
            try:
                return dict(json.loads(counts.read_text()))
            except ValueError:
                continue  # caught mid-write
    raise RuntimeError("the counting server wrote no counters")


async def _counted(env: Any, args: argparse.Namespace) -> dict[str, Any]:
    counts = env.workdir / "turn_redis.json"
    os.environ[COUNTS_ENV] = str(counts)
    # run as a file, so that a --gateway-src tree without this module is counted too
    gw = env.start_gateway(wrap=[*env.python(), __file__, "--counting-server"])
    r = env.redis_client()
    from bench.scenarios import command_calls

    target = await _target(env, args)
    await asyncio.sleep(1.0)  # the warm-up's resume-log and audit writes land
    before = await _dump(gw.process.pid, counts)
    r.config_resetstat()
    t0 = time.monotonic()
    recs = await _turns(target, args)
    await asyncio.sleep(0.5)  # the last turns' background writes (audit) land
    took = time.monotonic() - t0
    after = await _dump(gw.process.pid, counts)
    found = {k: dict(Counter(after[k]) - Counter(before[k])) for k in ("trips", "commands")}
    executed = command_calls(r)
    r.close()
    env.stop_gateway()
    ok = sum(1 for x in recs if x.ok) or 1
    return {
        "turns": ok,
        "seconds": round(took, 2),
        "trips_per_turn": round(sum(found["trips"].values()) / ok, 2),
        "trips_by_site": {k: round(v / ok, 3) for k, v in sorted(found["trips"].items())},
        "commands_sent_per_turn": round(sum(found["commands"].values()) / ok, 2),
        "commands_sent": {k: round(v / ok, 3) for k, v in sorted(found["commands"].items())},
        "commands_executed_per_turn": round(sum(executed.values()) / ok, 2),
    }


async def _cpu(env: Any, args: argparse.Namespace) -> dict[str, Any]:
    gw = env.start_gateway()
    target = await _target(env, args)
    best = float("inf")
    for _ in range(args.rounds):
        c0 = gw.cpu()
        recs = await _turns(target, args)
        ok = sum(1 for x in recs if x.ok) or 1
        best = min(best, (gw.cpu() - c0) / ok * 1000)
    env.stop_gateway()
    return {"gateway_cpu_ms_per_turn": round(best, 3), "rounds": args.rounds}


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    from bench.harness import REPO, Env

    src = Path(args.gateway_src).resolve() if args.gateway_src else REPO
    with Env(src=src) as env:  # __enter__ starts it (a .start() too would leak a pair)
        counted = await _counted(env, args)
        cpu = await _cpu(env, args)
    return {**counted, **cpu}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--counting-server":
        return counting_server(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.turn_redis")
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--per-session", type=int, default=5, help="turns per chat session")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="CPU rounds (the best is kept)")
    parser.add_argument(
        "--gateway-src", help="measure another tree (`git archive main | tar -x -C DIR`)"
    )
    out = asyncio.run(_main(parser.parse_args(argv)))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
