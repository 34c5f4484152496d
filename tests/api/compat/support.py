"""What the OpenAI- and Anthropic-compatible API tests share: API keys minted into Redis,
a snapshot of everything Redis holds, and the official SDKs pointed at the gateway."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import anthropic
import openai
import pytest
from redis.asyncio import Redis

from gateway.access.auth import digest, new_api_key
from gateway.storage import keys
from gateway.storage.store import Store
from tests.gateway_fixtures import ORG
from tests.support import GatewayServer


@dataclass(frozen=True)
class Key:
    key_id: str
    key: str
    user_id: str


MakeKey = Callable[..., Awaitable[Key]]


@pytest.fixture
async def make_key(redis_url: str, redis: Any) -> AsyncIterator[MakeKey]:
    """Mint a gateway API key (stored hashed, as `keys create` does)."""
    store = Store(Redis.from_url(redis_url, decode_responses=True))

    async def make(user: str = "kim", *, org: str = ORG, role: str = "user") -> Key:
        key_id, key = new_api_key()
        await store.credentials.save_api_key(
            digest(key),
            {
                "key_id": key_id,
                "org_id": org,
                "user_id": user,
                "role": role,
                "workspaces": ["ws-1"],
            },
        )
        return Key(key_id, key, user)

    yield make
    await store.aclose()


async def snapshot(redis: Any) -> dict[bytes, Any]:
    """Every key with its whole value: "Redis unchanged" means two snapshots are equal.
    Workers' heartbeats come and go on their own and are left out; fire-and-forget writes
    of an earlier step (audit events) are waited for."""
    state = await _state(redis)
    for _ in range(20):
        await asyncio.sleep(0.02)
        again = await _state(redis)
        if again == state:
            break
        state = again
    return state


async def _state(redis: Any) -> dict[bytes, Any]:
    state: dict[bytes, Any] = {}
    for key in await redis.keys("*"):
        if key.startswith(keys.worker("").encode()):
            continue
        kind = await redis.type(key)
        if kind == b"string":
            state[key] = await redis.get(key)
        elif kind == b"hash":
            state[key] = await redis.hgetall(key)
        elif kind == b"list":
            state[key] = await redis.lrange(key, 0, -1)
        elif kind == b"zset":
            state[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            state[key] = await redis.smembers(key)
        elif kind == b"stream":
            state[key] = await redis.xrange(key)
        else:
            state[key] = kind
    return state


async def stored_messages(redis: Any, cid: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in await redis.lrange(keys.messages(cid), 0, -1)]


async def usage(redis: Any, org: str = ORG) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in (await redis.hgetall(keys.org_usage(org))).items()}


def openai_client(server: GatewayServer, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=10)


def anthropic_client(server: GatewayServer, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.url, api_key=key, max_retries=0, timeout=10)


def wire_json(text: str) -> str:
    """A JSON string as the providers write it (UTF-8 kept), but with U+2028, U+2029 and
    U+0085 escaped: a reader splitting lines on them must still see one line of JSON."""
    out = json.dumps(text, ensure_ascii=False)
    return out.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")


def strip_pings(raw: bytes) -> bytes:
    return raw.replace(b": ping\n\n", b"")


# A gateway for the policy and rate-limit tests: a keyword blocked before and while the
# model answers, and two prompts per user and minute.
GOVERNED_TOML = """
[limits]
user_requests_per_minute = 3  # a pre-blocked prompt counts too: limits come before any write

[[policies]]
id = "codename"
stages = ["pre", "during"]
action = "block"
kind = "keywords"
keywords = ["bluebird"]
"""


def freeze_limits_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """10 s into the current minute, for the whole test: no window turns over mid-test."""
    from gateway.access import quotas as limits

    now = float(int(time.time()) // 60 * 60 + 10)
    monkeypatch.setattr(limits, "time", SimpleNamespace(time=lambda: now))
