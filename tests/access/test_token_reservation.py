"""Token budgets under concurrency: a prompt admitted reserves an estimate of its tokens in
the budget's windows (in the admission script), and its end settles the reservation
against what it used (in the end-of-turn round trip). So twenty prompts at once cannot all
pass a 100-token budget, and a reservation never outlives its turn: a refused, blocked or
busy prompt gives it back."""

# ruff: noqa: F811  (pytest fixtures imported from other modules are parameters here)
from __future__ import annotations

import asyncio
import json

from gateway.storage import keys
from tests.access.test_quotas import Clock, clock, session_for  # noqa: F401  (a fixture)
from tests.api.compat.support import stored_messages
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG

BUDGET = "[limits]\nuser_tokens_per_minute = 100\n"


def minute_key(clock: Clock, user: str = "alice") -> str:
    return keys.rate_window(ORG, "tokens", f"min:{int(clock.now // 60)}", "user", user)


async def test_twenty_concurrent_prompts_cannot_overshoot_a_token_budget(
    gateway_factory, clock, alice, upstream, redis
):
    async with gateway_factory(extra_toml=BUDGET) as client:
        sessions = [(await session_for(client, alice))[1]["id"] for _ in range(20)]
        upstream.script(
            *[Reply(chunks=["tok "] * 5, delay=0.05, input_tokens=12, output_tokens=40)] * 20
        )
        answers = await asyncio.gather(
            *(client.stream_chat(alice, sid, "hello there") for sid in sessions)
        )
        passed = [raw for r, raw in answers if r.status_code == 200]
        refused = [(r, json.loads(raw)) for r, raw in answers if r.status_code != 200]
        assert passed, "the budget was free: one prompt at least must pass"
        assert all(r.status_code == 429 for r, _ in refused)
        assert all(body["code"] == "token_budget_exceeded" for _, body in refused)
        assert all(r.headers["retry-after"] for r, _ in refused)
        used = 52 * len(passed)
        assert used <= 100 + 52, f"{len(passed)} prompts passed and used {used} tokens"
        # the window holds what the turns used: every reservation was settled
        assert await redis.get(minute_key(clock)) == str(used).encode()
        assert len(upstream.requests) == len(passed)


async def test_a_reservation_is_given_back_when_the_prompt_goes_no_further(
    gateway_factory, clock, alice, upstream, redis
):
    toml = (
        BUDGET
        + """
[[policies]]
id = "no-zebras"
stages = ["pre"]
action = "block"
kind = "keywords"
keywords = ["zebra"]
"""
    )
    async with gateway_factory(extra_toml=toml) as client:
        conv, session = await session_for(client, alice)
        r, raw = await client.stream_chat(alice, session["id"], "tell me about a zebra")
        assert r.status_code == 400 and json.loads(raw)["code"] == "policy_blocked"
        assert await redis.get(minute_key(clock)) == b"0"  # reserved, then given back
        # a prompt refused as busy gives its reservation back too
        await redis.set(keys.worker("otherworker1"), "1", px=10_000)
        await redis.set(keys.turn_lock(conv["id"]), "otherworker1:m", px=60_000)
        r, raw = await client.stream_chat(alice, session["id"], "hello")
        assert r.status_code == 409
        assert await redis.get(minute_key(clock)) == b"0"
        assert [m["status"] for m in await stored_messages(redis, conv["id"])] == ["blocked"]
        assert upstream.requests == []


async def test_a_turn_that_ends_in_the_next_window_settles_the_window_it_reserved_in(store, redis):
    from gateway.storage.quotas import Quotas, Reservation
    from gateway.storage.records import Message
    from gateway.storage.usage import Tally, Usage

    quotas, usage = Quotas(store.redis), Usage(store.redis)
    before = keys.rate_window("org-1", "tokens", "min:1", "user", "alice")
    after = keys.rate_window("org-1", "tokens", "min:2", "user", "alice")
    admitted = await quotas.admit([], [(before, 100, 2_000_000_000)], reserve=60)
    assert admitted.admitted and await redis.get(before) == b"60"
    message = Message("m-1", "", "assistant", "x", "complete", 0, input_tokens=5, output_tokens=7)
    pipe = store.redis.pipeline(transaction=False)
    usage.queue(pipe, message, Tally(ORG), [(after, 2_000_000_000)], Reservation((before,), 60))
    await pipe.execute()
    assert (await redis.get(before), await redis.get(after)) == (b"0", b"12")
    # the end counted once: a retried write moves nothing again
    pipe = store.redis.pipeline(transaction=False)
    usage.queue(pipe, message, Tally(ORG), [(after, 2_000_000_000)], Reservation((before,), 60))
    await pipe.execute()
    assert (await redis.get(before), await redis.get(after)) == (b"0", b"12")
    # a window that expired meanwhile is not brought back (nor made negative)
    await redis.delete(before)
    await quotas.release(Reservation((before,), 60))
    assert await redis.exists(before) == 0
