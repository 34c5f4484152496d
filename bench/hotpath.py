"""What issue 12's checks cost on the hot path, each measured apart against what the code did
before (CPU time per call, the best of --rounds rounds; the machine is shared):

- a content frame's JSON string: the line breaks U+2028, U+2029 and U+0085 escaped
  (gateway/api/sse.py json_string) against encode_basestring alone, for an ASCII token, a
  non-ASCII one without them, and one with them (the only case that pays a translate);
- a key name with every id escaped (gateway/storage/keys.py part()) against the bare
  f-string, for the resume log's key (two ids) and a four-part index key;
- the id alphabet check of a JWT's claims (gateway/access/auth.py), per JWT request;
- the PING a direct turn sends before its upstream when no rate limit is configured, and
  the admission script with a token reservation against the one before it (reads only), on a
  real redis-server over its unix socket (wall time per call: a round trip).

    python -m bench.hotpath [--n 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from json.encoder import encode_basestring
from pathlib import Path

from gateway.access.auth import _id_problem
from gateway.api.sse import json_string
from gateway.storage import keys
from gateway.storage.client import connect
from gateway.storage.embedded import EmbeddedRedis
from gateway.storage.quotas import Quotas
from gateway.storage.scripts import Script

CID = "5a7e8f91-0b1c-4d2e-8f3a-9b8c7d6e5f40"
MID = "e5ed0c1a-2b3c-4d5e-8f9a-0b1c2d3e4f50"
TOKENS = {"ASCII token": " vector", "non-ASCII token": " café", "token with U+2028": "a\u2028b"}

# the admission script before issue 12 (token windows read, never written), for comparison
_ADMIT_BEFORE = """
local n = tonumber(ARGV[1])
local used = {}
local full = false
for i = 1, #KEYS do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used[i] >= tonumber(ARGV[i + 1]) then full = true end
end
if full then
  table.insert(used, 1, 0)
  return used
end
for i = 1, n do
  used[i] = redis.call('INCR', KEYS[i])
  if used[i] == 1 then redis.call('EXPIREAT', KEYS[i], ARGV[#KEYS + 1 + i]) end
end
table.insert(used, 1, 1)
return used
"""


def cpu_ns(fn: Callable[[], object], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time_ns() - t0) / n)
    return best


async def wall_us(fn: Callable[[], Awaitable[object]], n: int, rounds: int) -> float:
    for _ in range(50):
        await fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            await fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def pure(n: int, rounds: int) -> list[tuple[str, float, float, str]]:
    rows = []
    for name, tok in TOKENS.items():
        before = cpu_ns(lambda t=tok: encode_basestring(t).encode(), n, rounds)  # type: ignore[misc]
        after = cpu_ns(lambda t=tok: json_string(t), n, rounds)  # type: ignore[misc]
        rows.append((f"content frame JSON string, {name}", before, after, "ns"))
    rows.append(
        (
            "resume log key (2 ids)",
            cpu_ns(lambda: f"gw:{{c:{CID}}}:r:{MID}", n, rounds),
            cpu_ns(lambda: keys.resume_log(CID, MID), n, rounds),
            "ns",
        )
    )
    rows.append(
        (
            "index key (org + 3 ids)",
            cpu_ns(lambda: f"gw:{{o:org-1}}:convs:ws_repo_u:ws-1:repo-1:{'alice'}", n, rounds),
            cpu_ns(
                lambda: keys.org_index("org-1", "ws_repo_u", "ws-1", "repo-1", "alice"), n, rounds
            ),
            "ns",
        )
    )
    claims = frozenset({"ws-1", "ws-2"})
    rows.append(
        (
            "JWT claims' id check (sub, org, 2 workspaces)",
            0.0,
            cpu_ns(lambda: _id_problem("auth0|5f1c2b", "org-1", claims), n, rounds),
            "ns",
        )
    )
    return rows


async def redis_rows(n: int, rounds: int) -> list[tuple[str, float, float, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp), appendonly=False).start()
        try:
            redis = connect(server.url)
            quotas = Quotas(redis)
            before = Script(redis, _ADMIT_BEFORE)
            req = "gw:{o:b}:rl:req:min:1:u:x"
            tok = "gw:{o:b}:rl:tok:min:1:u:x"
            limits = [10**12, 10**12]

            async def admit_before() -> object:
                return await before([req, tok], [1, *limits, 2_000_000_000])

            async def admit_after() -> object:
                return await quotas.admit(
                    [(req, limits[0], 2_000_000_000)],
                    [(tok, limits[1], 2_000_000_000)],
                    reserve=515,
                )

            rows = [
                (
                    "direct turn's PING before the upstream",
                    0.0,
                    await wall_us(redis.ping, n, rounds),
                    "µs",
                ),
                (
                    "admission script, one request + one token window",
                    await wall_us(admit_before, n, rounds),
                    await wall_us(admit_after, n, rounds),
                    "µs",
                ),
            ]
            await redis.aclose()
            return rows
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hotpath", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--n", type=int, default=200_000, help="calls per round (pure checks)")
    parser.add_argument("--redis-n", type=int, default=5_000, help="calls per round (Redis)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = pure(args.n, args.rounds) + asyncio.run(redis_rows(args.redis_n, args.rounds))
    width = max(len(r[0]) for r in rows)
    print(f"{'check'.ljust(width)}  {'before':>9}  {'after':>9}  {'added':>9}")
    for name, before, after, unit in rows:
        b = f"{before:9.1f}" if before else "        -"
        print(f"{name.ljust(width)}  {b}  {after:9.1f}  {after - before:9.1f} {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
