"""Soak: minutes of mixed load with disconnects, stops and resumes, printing the gateway's
RSS and Redis's memory before and after. Both must stay flat: what Redis keeps on purpose
(the stored messages) is measured and reported apart from everything else.

    python -m bench.soak                 # 10 minutes
    python -m bench.soak --seconds 60    # a short run

Each virtual user loops over four kinds of turn: a complete stream; a client that leaves
mid-stream (the turn is cancelled and stored); a stop through the stop route; and a
disconnect with on_disconnect=continue followed by a resume with Last-Event-ID. Resume logs
are kept 60 s here (resume_ttl), so they come and go within the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter

import httpx

from bench.harness import ORG, Env

MODEL = "openai-soak"
ACTIONS = ("complete", "leave", "stop", "resume")


def soak_config(env: Env) -> None:
    """The bench config plus a paced model (so there is time to leave, stop and resume)
    and a short resume_ttl."""
    text = env.config_path().read_text()
    extra = f"""
[[models]]
id = "{MODEL}"
provider = "openai"
model = "bench/tokens=40/pace=10"
base_url = "http://127.0.0.1:{env.upstream_port}/v1"
max_retries = 0
"""
    env._config_text = "resume_ttl = 60\n" + text + extra


async def one_turn(
    http: httpx.AsyncClient, session: str, action: str, counts: Counter[str]
) -> None:
    body = {
        "chat_session_id": session,
        "message": "soak",
        "on_disconnect": "continue" if action == "resume" else "cancel",
    }
    mid = last = None
    seen = 0
    stopped = False
    async with http.stream("POST", f"/api/conversation/stream_chat?org_id={ORG}", json=body) as r:
        if r.status_code != 200:
            counts[f"http_{r.status_code}"] += 1
            await r.aread()
            return
        async for line in r.aiter_lines():
            if line.startswith("data: ") and mid is None:
                mid = json.loads(line[6:]).get("message_id")
            if line.startswith("id: "):
                last, seen = line[4:], seen + 1
            if action != "complete" and seen == 5:
                if action == "stop":
                    if not stopped:
                        stopped = True
                        s = await http.post(
                            f"/api/conversation/stop?org_id={ORG}", json={"message_id": mid}
                        )
                        counts[f"stop_{s.status_code}"] += 1
                    continue
                break  # leave (cancel) or drop before resuming
            if line.startswith("event: end"):
                break
    if action == "resume" and mid:
        r = await http.get(
            f"/api/conversation/stream?org_id={ORG}&message_id={mid}",
            headers={"Last-Event-ID": last or ""},
        )
        counts["resumed_ok" if "event: end" in r.text else "resumed_incomplete"] += 1
    counts[action] += 1


async def user(
    base: str, key: str, sessions: list[str], deadline: float, counts: Counter[str], seed: int
) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(
        base_url=base, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        while time.monotonic() < deadline:
            try:
                await one_turn(http, rng.choice(sessions), rng.choice(ACTIONS), counts)
            except httpx.HTTPError as exc:
                counts[f"client_{type(exc).__name__}"] += 1


def redis_memory(env: Env) -> tuple[int, int, int]:
    """(used_memory, keys, bytes held by stored messages)."""
    import redis

    client = redis.Redis.from_url(env.redis_url)
    try:
        used = int(client.info("memory")["used_memory"])
        keys = client.dbsize()
        kept = sum(
            client.memory_usage(k) or 0 for k in client.scan_iter(keys.messages("*"), count=1000)
        )
        return used, keys, kept
    finally:
        client.close()


async def soak(seconds: float, users: int, conversations: int) -> dict[str, object]:
    with Env(gateway_cpus=None, harness_cpus=None) as env:
        soak_config(env)
        gw = env.start_gateway()
        base = f"http://127.0.0.1:{gw.port}"
        sessions = await env.sessions(MODEL, conversations)
        counts: Counter[str] = Counter()
        # warm up (imports, pools, first allocations), then take the "before" readings
        await asyncio.gather(
            *(
                user(base, env.api_key, sessions, time.monotonic() + 15, counts, i)
                for i in range(users)
            )
        )
        await asyncio.sleep(2)
        rss_before, redis_before = gw.rss(), redis_memory(env)
        counts.clear()
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(user(base, env.api_key, sessions, deadline, counts, 100 + i) for i in range(users))
        )
        await asyncio.sleep(65)  # the last resume logs expire (resume_ttl = 60)
        rss_after, redis_after = gw.rss(), redis_memory(env)
    return {
        "seconds": seconds,
        "users": users,
        "turns": dict(counts),
        "gateway_rss_before": rss_before,
        "gateway_rss_after": rss_after,
        "redis_used_before": redis_before[0],
        "redis_used_after": redis_after[0],
        "redis_keys_before": redis_before[1],
        "redis_keys_after": redis_after[1],
        "stored_messages_bytes_before": redis_before[2],
        "stored_messages_bytes_after": redis_after[2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--conversations", type=int, default=64)
    args = parser.parse_args()
    r = asyncio.run(soak(args.seconds, args.users, args.conversations))
    mib = 1024 * 1024
    other_before = r["redis_used_before"] - r["stored_messages_bytes_before"]
    other_after = r["redis_used_after"] - r["stored_messages_bytes_after"]
    print(f"soak: {r['seconds']:.0f} s, {r['users']} users, turns: {r['turns']}")
    print(
        f"gateway RSS      {r['gateway_rss_before'] / mib:8.1f} MiB -> "
        f"{r['gateway_rss_after'] / mib:8.1f} MiB"
    )
    print(
        f"Redis used       {r['redis_used_before'] / mib:8.1f} MiB -> "
        f"{r['redis_used_after'] / mib:8.1f} MiB"
        f"  ({r['redis_keys_before']} -> {r['redis_keys_after']} keys)"
    )
    print(
        f"  stored messages {r['stored_messages_bytes_before'] / mib:7.1f} MiB -> "
        f"{r['stored_messages_bytes_after'] / mib:8.1f} MiB  (kept on purpose)"
    )
    print(f"  everything else {other_before / mib:7.1f} MiB -> {other_after / mib:8.1f} MiB")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
