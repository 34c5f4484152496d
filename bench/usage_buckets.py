"""What usage and cost cost: the end of a turn (the one script that counts a message's tokens,
now with its cost and usage buckets, against the script it replaced), the bytes a busy org's
buckets hold in Redis, and the time GET /usage takes to sum them.

    python bench/usage_buckets.py [--users 2000] [--models 4] [--repos 50] [--days 31]

A "busy org" by default: 2,000 users active every day, each on two of 4 models in one of 50
repositories with a key of their own, 6 turns a day each (12,000 turns a day), a quarter of
them active in any hour. Figures only, no asserts: they depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.access.principal import Principal
from gateway.access.usage import UsageView, Window
from gateway.storage import keys
from gateway.storage.client import connect
from gateway.storage.embedded import EmbeddedRedis
from gateway.storage.records import Message, now_ms
from gateway.storage.scripts import Script
from gateway.storage.store import Store
from gateway.storage.usage import Tally

ORG = "busy"
DAY_MS = 86_400_000

# The counting script before cost and buckets (git show 7f97cd9:gateway/storage/usage.py):
# the baseline for what the end of a turn costs Redis.
_BEFORE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local tin, tout, nf = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, nf do
  redis.call('HINCRBY', KEYS[2], 'tokens_in' .. ARGV[4 + i], tin)
  redis.call('HINCRBY', KEYS[2], 'tokens_out' .. ARGV[4 + i], tout)
end
for k = 3, #KEYS do
  redis.call('INCRBY', KEYS[k], tin + tout)
  redis.call('EXPIREAT', KEYS[k], ARGV[4 + nf + k - 2])
end
return 1
"""


def message(i: int, user: str, model: str, at: int) -> Message:
    return Message(
        id=f"m{i}",
        conversation_id="c",
        role="assistant",
        content="",
        status="complete",
        created_at=at,
        model_id=model,
        user_id=user,
        input_tokens=900 + i % 300,
        output_tokens=300 + i % 200,
        cost_nusd=4_500_000 + i % 1000,
    )


async def commandstats(store: Store) -> dict[str, tuple[int, float]]:
    stats = await store.redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for k, v in stats.items()}


async def end_of_turn_cost(store: Store, n: int = 500, rounds: int = 5) -> list[tuple[str, str]]:
    """Redis work of the counting script in one pipeline, before and after, in alternating
    rounds (the machine is shared: the median round of each): round trips, commands the
    script runs, Redis CPU per call (INFO commandstats), and the client's wall time."""
    before = Script(store.redis, _BEFORE)
    windows = [(keys.rate_window(ORG, "tokens", "day:20260101", "org", ""), 2_000_000_000)]

    async def old(i: int) -> None:
        pipe = store.redis.pipeline(transaction=False)
        m = message(i, "u1", "gpt", now_ms())
        scopes = ["", ":gpt", ":user:u1", ":key:k1"]
        before.queue(
            pipe,
            [keys.counted_once(ORG, f"old{i}"), keys.org_usage(ORG), *[k for k, _ in windows]],
            [3600, m.input_tokens, m.output_tokens, len(scopes), *scopes, windows[0][1]],
        )
        await pipe.execute()

    async def new(i: int) -> None:
        pipe = store.redis.pipeline(transaction=False)
        m = message(1_000_000 + i, "u1", "gpt", now_ms())
        store.usage.queue(pipe, m, Tally(ORG, "k1", "ws-1", "repo-1"), windows)
        await pipe.execute()

    results: dict[str, list[tuple[float, ...]]] = {"old": [], "new": []}
    for r in range(rounds):
        for name, run in (("old", old), ("new", new)):
            first = await commandstats(store)
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(n):
                await run(r * n + i)
            wall = (time.perf_counter() - t0) / n * 1e6
            cpu = (time.process_time() - c0) / n * 1e6
            last = await commandstats(store)
            calls = {k: last[k][0] - first.get(k, (0, 0))[0] for k in last}
            usec = sum(
                last[k][1] - first.get(k, (0, 0.0))[1] for k in ("eval", "sadd") if k in last
            )
            inner = sum(c for k, c in calls.items() if k not in ("eval", "info", "sadd")) / n
            results[name].append(
                (calls.get("eval", 0) / n, calls.get("sadd", 0) / n, inner, usec / n, wall, cpu)
            )
    rows = []
    for name, label in (("old", "before (tokens only)"), ("new", "now (+ cost, 3 buckets)")):
        evals, sadds, inner, usec, wall, cpu = (
            statistics.median(x[k] for x in results[name]) for k in range(6)
        )
        rows.append(
            (
                label,
                f"1 round trip; {evals:.0f} EVAL + {sadds:.0f} SADD; {inner:.0f} commands in "
                f"the script; Redis CPU {usec:.1f} us; client CPU {cpu:.0f} us, "
                f"wall {wall:.0f} us",
            )
        )
    return rows


async def fill(store: Store, users: int, models: int, repos: int, days: int) -> int:
    """The busy org's last `days` days, six turns a day per user, in pipelines of 2,000."""
    end = now_ms()
    turns = 0
    pipe = store.redis.pipeline(transaction=False)
    for d in range(days):
        day_start = end - (days - 1 - d) * DAY_MS
        for u in range(users):
            for t in range(6):
                model = f"model-{(u + t % 2) % models}"
                at = day_start - ((u % 4) * 6 + t) * 3_600_000 % DAY_MS  # a quarter per hour
                at = min(at, end)
                tally = Tally(ORG, f"key-{u}", f"ws-{u % 10}", f"repo-{u % repos}")
                store.usage.queue(pipe, message(turns, f"user-{u}", model, at), tally)
                turns += 1
                if turns % 2000 == 0:
                    await pipe.execute()
                    pipe = store.redis.pipeline(transaction=False)
    await pipe.execute()
    return turns


async def memory(store: Store) -> list[tuple[str, str]]:
    groups: dict[str, list[int]] = {"hour": [], "day": [], "month": []}
    fields: dict[str, list[int]] = {k: [] for k in groups}
    async for key in store.redis.scan_iter(match=keys.usage_bucket_pattern(ORG), count=1000):
        name = key if isinstance(key, str) else key.decode()
        kind = {"h": "hour", "d": "day", "m": "month"}[name.split(":usage:")[1][0]]
        groups[kind].append(int(await store.redis.memory_usage(key, samples=0) or 0))
        fields[kind].append(int(await store.redis.hlen(key)))
    rows = []
    total = 0
    for kind, sizes in groups.items():
        total += sum(sizes)
        n = len(sizes)
        per_field = sum(sizes) / max(1, sum(fields[kind]))
        rows.append(
            (
                f"{kind} buckets",
                f"{n} hashes, {sum(fields[kind]):,} fields, {sum(sizes) / 2**20:.1f} MiB "
                f"({per_field:.0f} B per field; largest "
                f"{max(sizes, default=0) / 2**20:.2f} MiB)",
            )
        )
    rows.append(("all of the org's usage", f"{total / 2**20:.1f} MiB"))
    return rows


async def reading(store: Store, days: int) -> list[tuple[str, str]]:
    view = UsageView(store)
    now = now_ms()
    rows = []
    cases: list[tuple[str, Principal, str, tuple[str, ...]]] = [
        (
            "org admin, 30 days by day, group_by=model,user",
            Principal("o", "org_admin", ORG),
            "d",
            ("model", "user"),
        ),
        ("org admin, 30 days by day, no grouping", Principal("o", "org_admin", ORG), "d", ()),
        (
            "org admin, 30 days by day, group_by=model",
            Principal("o", "org_admin", ORG),
            "d",
            ("model",),
        ),
        (
            "org admin, 24 hours by hour, group_by=model",
            Principal("o", "org_admin", ORG),
            "h",
            ("model",),
        ),
        (
            "a user, 30 days by day, group_by=model",
            Principal("user-7", "user", ORG),
            "d",
            ("model",),
        ),
    ]
    for name, who, grain, group_by in cases:
        span = 30 * DAY_MS if grain == "d" else DAY_MS
        window = Window.of(grain, now - span, now, now)
        times, cpu = [], []
        answer: dict[str, Any] = {}
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                answer = await view.answer(who, [ORG], window, group_by)
            except Exception as exc:  # a bound: say so
                rows.append((name, f"refused: {exc}"))
                break
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        else:
            rows.append(
                (
                    name,
                    f"{statistics.median(times) * 1000:.0f} ms wall, "
                    f"{statistics.median(cpu) * 1000:.0f} ms CPU (gateway); "
                    f"{len(answer['series']):,} points, {answer['totals']['requests']:,} requests",
                )
            )
    return rows


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(Path(tmp), appendonly=False).start()
        store = Store(connect(redis.url))
        try:
            print("end of a turn (the counting script, one pipeline):")
            for name, value in await end_of_turn_cost(store):
                print(f"  {name:32} {value}")
            await store.redis.flushall()
            t0 = time.perf_counter()
            turns = await fill(store, args.users, args.models, args.repos, args.days)
            took = time.perf_counter() - t0
            print(
                f"\na busy org's {args.days} days: {args.users:,} users, {args.models} models, "
                f"{args.repos} repositories, {turns:,} turns ({took:.0f} s to write)"
            )
            for name, value in await memory(store):
                print(f"  {name:32} {value}")
            print("\nGET /usage over it (reading and summing, in-process, median of 3):")
            for name, value in await reading(store, args.days):
                print(f"  {name:48} {value}")
        finally:
            await store.aclose()
            redis.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--days", type=int, default=31)
    asyncio.run(main(parser.parse_args()))
