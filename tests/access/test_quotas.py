"""Rate limits and token budgets (gateway/limits.py): prompts per minute and tokens per
minute, day and month, per user and per org, counted in Redis and so shared by every
gateway on it. A refused prompt is a 429 with Retry-After and X-RateLimit-* headers, stores
nothing, reaches no upstream and costs nothing. The limiter's clock is frozen per test."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from redis.asyncio import Redis

from gateway.access import quotas as limits
from gateway.settings import ConfigError, load_settings
from gateway.storage import keys
from tests.api.compat.support import snapshot, stored_messages
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer


class Clock:
    """The limiter's time.time(): 10 s into the current UTC minute, moved by hand."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) // 60 * 60 + 10)

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(limits, "time", SimpleNamespace(time=c.time))
    return c


def seconds_to_midnight(now: float) -> int:
    t = datetime.fromtimestamp(now, UTC)
    midnight = datetime(t.year, t.month, t.day, tzinfo=UTC) + timedelta(days=1)
    return int(midnight.timestamp() - now)


async def session_for(client, token, org=ORG, model="gpt"):
    conv = await client.create_conversation(token, org=org)
    return conv, await client.create_session(token, conv["id"], model, org=org)


async def refused(client, token, session_id, org=ORG, *, code="rate_limited"):
    """A prompt answered 429 in the contract's shape; the response for header checks."""
    r, raw = await client.stream_chat(token, session_id, "one more", org)
    body = json.loads(raw)
    assert r.status_code == 429, raw
    assert body["success"] is False and body["code"] == code and body["message"]
    assert r.headers["retry-after"] == r.headers["x-ratelimit-reset"]
    assert r.headers["x-ratelimit-remaining"] == "0"
    return r


def rate_keys(redis):
    return redis.keys(keys.rate_window_pattern())


async def test_user_prompts_per_minute(gateway_factory, clock, alice, bob, upstream, redis):
    async with gateway_factory(extra_toml="[limits]\nuser_requests_per_minute = 2") as client:
        conv, session = await session_for(client, alice)
        upstream.script(
            Reply(chunks=["a"]), Reply(chunks=["b"]), Reply(chunks=["c"]), Reply(chunks=["d"])
        )
        for remaining in ("1", "0"):
            r, raw = await client.stream_chat(alice, session["id"], "hi")
            assert r.status_code == 200, raw
            assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"]) == (
                "2",
                remaining,
            )
            assert r.headers["x-ratelimit-reset"] == "50"  # seconds, not an epoch instant
        before = await snapshot(redis)

        r = await refused(client, alice, session["id"])
        assert (r.headers["retry-after"], r.headers["x-ratelimit-limit"]) == ("50", "2")
        assert "2 prompts per minute" in r.json()["message"]
        assert await snapshot(redis) == before  # not stored, not even counted
        assert len(upstream.requests) == 2
        assert [m["content"] for m in await stored_messages(redis, conv["id"])] == [
            "hi",
            "a",
            "hi",
            "b",
        ]

        # the limit is alice's, not the org's
        _, bobs = await session_for(client, bob)
        assert (await client.chat(bob, bobs["id"], "hi")).text == "c"
        # a new minute, a new window
        clock.now += 60
        assert (await client.chat(alice, session["id"], "again")).text == "d"
        minute = int(clock.now // 60)
        key = keys.rate_window(ORG, "requests", f"min:{minute}", "user", "alice")
        assert await redis.get(key) == b"1"
        expires_at = (minute + 1) * 60 + limits.EXPIRY_GRACE  # EXPIREAT (Redis 6.2: no EXPIRETIME)
        assert abs(await redis.ttl(key) - (expires_at - time.time())) <= 2


async def test_org_prompts_per_minute_and_a_per_org_override(
    gateway_factory, clock, alice, bob, mallory, upstream, redis
):
    toml = """
[limits]
org_requests_per_minute = 2
[limits.orgs.org-2]
org_requests_per_minute = 3
"""
    async with gateway_factory(extra_toml=toml) as client:
        _, a = await session_for(client, alice)
        _, b = await session_for(client, bob)
        _, m = await session_for(client, mallory, org="org-2")
        await client.chat(alice, a["id"], "1")
        await client.chat(bob, b["id"], "2")
        before = await snapshot(redis)
        r = await refused(client, bob, b["id"])
        assert "organization's limit of 2 prompts per minute" in r.json()["message"]
        assert await snapshot(redis) == before
        assert len(upstream.requests) == 2
        for _ in range(3):  # org-2 has its own window, and its own limit
            await client.chat(mallory, m["id"], "hi", org="org-2")
        r = await refused(client, mallory, m["id"], org="org-2")
        assert r.headers["x-ratelimit-limit"] == "3"


async def test_tokens_per_minute_refuse_the_prompt_after_the_turn_that_used_them_up(
    gateway_factory, clock, alice, upstream, redis
):
    async with gateway_factory(extra_toml="[limits]\nuser_tokens_per_minute = 20") as client:
        conv, session = await session_for(client, alice)
        upstream.script(Reply(chunks=["big"], input_tokens=15, output_tokens=10))
        r, _ = await client.stream_chat(alice, session["id"], "hi")
        # while it runs, the turn holds its reservation (its input + 512 for its answer)
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == "0"
        key = keys.rate_window(ORG, "tokens", f"min:{int(clock.now // 60)}", "user", "alice")
        assert await redis.get(key) == b"25"  # input + output, written with the turn's end
        assert await redis.ttl(key) > 0
        before = await snapshot(redis)

        r = await refused(client, alice, session["id"], code="token_budget_exceeded")
        assert (r.headers["retry-after"], r.headers["x-ratelimit-limit"]) == ("50", "20")
        assert "20 tokens per minute" in r.json()["message"]
        assert await snapshot(redis) == before
        assert len(upstream.requests) == 1
        assert len(await stored_messages(redis, conv["id"])) == 2

        clock.now += 60
        upstream.script(Reply(chunks=["ok"], input_tokens=1, output_tokens=1))
        assert (await client.chat(alice, session["id"], "later")).text == "ok"


async def test_daily_org_budget_covers_every_prompt_route(
    gateway_factory, clock, alice, bob, upstream, redis
):
    async with gateway_factory(extra_toml="[limits]\norg_tokens_per_day = 30") as client:
        conv, session = await session_for(client, alice)
        _, bobs = await session_for(client, bob)
        upstream.script(
            Reply(chunks=["x"], input_tokens=10, output_tokens=10),
            Reply(chunks=["y"], input_tokens=5, output_tokens=5),
        )
        await client.chat(alice, session["id"], "first")
        # the OpenAI-compatible route (a direct turn) counts against the same budget
        r = await client.http.post(
            "/v1/chat/completions",
            headers=bearer(bob),
            json={
                "model": "gpt",
                "messages": [{"role": "user", "content": "second"}],
            },
        )
        assert r.status_code == 200, r.text
        day = datetime.fromtimestamp(clock.now, UTC).strftime("%Y%m%d")
        assert await redis.get(keys.rate_window(ORG, "tokens", f"day:{day}", "org", "")) == b"30"
        before = await snapshot(redis)

        r = await refused(client, bob, bobs["id"], code="token_budget_exceeded")
        wait = seconds_to_midnight(clock.now)
        assert r.headers["retry-after"] == str(wait)
        assert "organization's budget of 30 tokens per day" in r.json()["message"]
        # the repository-style route and the compatible routes are refused alike
        r = await client.http.post(
            f"/conversation/{conv['id']}/prompt", json={"prompt": "hi"}, headers=bearer(alice)
        )
        assert r.status_code == 429 and r.json()["code"] == "token_budget_exceeded"
        assert r.headers["retry-after"] == str(wait)
        r = await client.http.post(
            "/v1/chat/completions",
            headers=bearer(alice),
            json={
                "model": "gpt",
                "messages": [{"role": "user", "content": "third"}],
            },
        )
        assert r.status_code == 429 and r.json()["error"]["code"] == "token_budget_exceeded"
        assert r.headers["retry-after"] == str(wait) and r.headers["x-ratelimit-limit"] == "30"
        r = await client.http.post(
            "/v1/messages",
            headers=bearer(alice),
            json={
                "model": "claude",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "fourth"}],
            },
        )
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
        assert r.headers["retry-after"] == str(wait)
        assert len(upstream.requests) == 2
        assert await snapshot(redis) == before


async def test_monthly_user_budget(gateway_factory, clock, alice, bob, upstream, redis):
    async with gateway_factory(extra_toml="[limits]\nuser_tokens_per_month = 5") as client:
        _, a = await session_for(client, alice)
        _, b = await session_for(client, bob)
        upstream.script(Reply(chunks=["x"], input_tokens=3, output_tokens=3), Reply(chunks=["y"]))
        await client.chat(alice, a["id"], "hi")
        r = await refused(client, alice, a["id"], code="token_budget_exceeded")
        assert int(r.headers["retry-after"]) > seconds_to_midnight(clock.now) - 1  # the month's end
        assert (await client.chat(bob, b["id"], "hi")).text == "y"


async def test_two_gateways_on_one_redis_share_the_limits(
    gateway_factory, clock, alice, upstream, redis
):
    toml = "[limits]\nuser_requests_per_minute = 3"
    async with gateway_factory(extra_toml=toml) as one, gateway_factory(extra_toml=toml) as two:
        _, session = await session_for(one, alice)
        upstream.script(*[Reply(chunks=[str(i)]) for i in range(3)])
        for gw in (one, two, one):
            await gw.chat(alice, session["id"], "hi")
        before = await snapshot(redis)
        await refused(two, alice, session["id"])
        await refused(one, alice, session["id"])
        assert await snapshot(redis) == before
        assert len(upstream.requests) == 3


async def test_a_limited_user_cannot_make_the_pre_policy_store_blocked_prompts(
    gateway_factory, clock, alice, upstream, redis
):
    toml = """
[limits]
user_requests_per_minute = 1

[[policies]]
id = "no-codename"
stages = ["pre"]
action = "block"
kind = "keywords"
keywords = ["bluebird"]
"""
    async with gateway_factory(extra_toml=toml) as client:
        conv, session = await session_for(client, alice)
        r, raw = await client.stream_chat(alice, session["id"], "about bluebird")
        assert r.status_code == 400 and json.loads(raw)["code"] == "policy_blocked"  # counted
        assert [m["status"] for m in await stored_messages(redis, conv["id"])] == ["blocked"]
        before = await snapshot(redis)
        await refused(client, alice, session["id"])  # before the policy runs: nothing stored
        assert await snapshot(redis) == before
        assert upstream.requests == []


async def test_without_limits_no_counter_is_kept(client, alice, upstream, redis):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    r, _ = await client.stream_chat(alice, session["id"], "hi")
    assert r.status_code == 200 and "x-ratelimit-limit" not in r.headers
    assert await rate_keys(redis) == []


async def test_admin_prompting_in_an_org_counts_against_that_org(
    gateway_factory, clock, alice, admin, upstream, redis
):
    async with gateway_factory(extra_toml="[limits]\norg_requests_per_minute = 1") as client:
        _, session = await session_for(client, alice)
        await client.chat(admin, session["id"], "from the operator")
        await refused(client, alice, session["id"])


def test_bad_limits_stop_the_start(tmp_path):
    cfg = tmp_path / "g.toml"
    for text, field in (
        ("[limits]\nuser_requests_per_minute = 0", "limits.user_requests_per_minute"),
        ("[limits]\nrequests_per_minute = 5", "limits.requests_per_minute"),
        ("[limits.orgs.acme]\norg_tokens_per_day = -1", "limits.orgs.acme.org_tokens_per_day"),
    ):
        cfg.write_text(text)
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_settings(cfg, env={})


def test_per_org_values_replace_only_what_they_set(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text(
        "[limits]\nuser_requests_per_minute = 5\norg_tokens_per_day = 100\n"
        "[limits.orgs.acme]\norg_tokens_per_day = 1000\n"
    )
    config = load_settings(cfg, env={}).limits
    acme, other = config.for_org("acme"), config.for_org("other")
    assert (acme.user_requests_per_minute, acme.org_tokens_per_day) == (5, 1000)
    assert (other.user_requests_per_minute, other.org_tokens_per_day) == (5, 100)


def test_windows_end_at_utc_minute_day_and_month_boundaries():
    now = datetime(2025, 12, 31, 23, 59, 30, tzinfo=UTC).timestamp()
    ids = limits.window_ids(now)
    assert ids["minute"] == (f"min:{int(now // 60)}", int(now) + 30)
    assert ids["day"] == ("day:20251231", int(now) + 30)
    assert ids["month"] == ("mon:202512", int(now) + 30)


def test_when_several_windows_are_full_the_answer_names_the_one_that_frees_up_last():
    now = datetime(2025, 6, 10, 12, 0, 15, tzinfo=UTC).timestamp()
    config = load_settings(
        None,
        env={},
        overrides={
            "limits": {
                "user_requests_per_minute": 5,
                "org_tokens_per_minute": 100,
                "org_tokens_per_day": 1000,
            }
        },
    ).limits
    windows = limits.RateLimits(config, Redis()).windows("acme", "kim", now)  # never connects
    assert [(w.kind, w.scope, w.period) for w in windows] == [
        ("requests", "user", "minute"),
        ("tokens", "org", "minute"),
        ("tokens", "org", "day"),
    ]
    exc = limits.refusal(windows, [5, 100, 1000], now)
    assert exc.code == "token_budget_exceeded" and exc.headers["Retry-After"] == str(12 * 3600 - 15)
    exc = limits.refusal(windows, [5, 100, 10], now)
    assert exc.headers["Retry-After"] == "45" and exc.headers["X-RateLimit-Limit"] == "5"
