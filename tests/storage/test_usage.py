"""The usage buckets in Redis: one write per turn fills the org's hour, day and month buckets
and the user's own copies, counted once however often the write is retried, each bucket
expiring a fixed time after it ends."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from gateway.storage import keys
from gateway.storage.records import Message
from gateway.storage.usage import RETENTION, Tally, bucket_end, bucket_of, buckets_between

AT = int(datetime.now(UTC).timestamp() * 1000)  # buckets of long ago expire at once


def answer(mid: str = "m1", **fields) -> Message:
    defaults = {
        "model_id": "gpt",
        "user_id": "alice",
        "input_tokens": 120,
        "output_tokens": 30,
        "cost_nusd": 36_000,
    }
    return Message(
        id=mid,
        conversation_id="c1",
        role="assistant",
        content="...",
        status="complete",
        created_at=AT,
        **{**defaults, **fields},
    )


async def test_one_turn_fills_each_bucket_once_however_often_it_is_written(store, redis):
    tally = Tally("acme", "k123", "ws-1", "repo-1")
    for _ in range(3):  # a write retried after its reply was lost
        await store.usage.record(answer(), tally)
    await store.usage.record(answer("m2", input_tokens=5, output_tokens=5, cost_nusd=7), tally)
    field = json.dumps(["alice", "ws-1", "repo-1", "k123", "gpt"], separators=(",", ":"))
    for grain in ("h", "d", "m"):
        bucket = bucket_of(grain, AT)
        key = keys.usage_bucket("acme", grain, bucket)
        assert await redis.hgetall(key) == {field.encode(): b"125,35,36007,2"}, key
        expire_at = int(bucket_end(grain, bucket).timestamp()) + RETENTION[grain]
        ttl = await redis.ttl(key)  # Redis 6.2 has no EXPIRETIME
        assert abs(expire_at - int(datetime.now(UTC).timestamp()) - ttl) <= 2, key
    assert await redis.smembers(keys.USAGE_ORGS) == {b"acme"}
    # the running counters are unchanged in shape (tokens per org, model, user, key)
    assert await store.usage.of_org("acme") == {
        "tokens_in": 125,
        "tokens_out": 35,
        "tokens_in:gpt": 125,
        "tokens_out:gpt": 35,
        "tokens_in:user:alice": 125,
        "tokens_out:user:alice": 35,
        "tokens_in:key:k123": 125,
        "tokens_out:key:k123": 35,
    }


async def test_any_id_survives_the_field_encoding(store, redis):
    odd = 'ws "quoted", with\\backslash and ,commas'
    await store.usage.record(answer(user_id="ü:ser|x"), Tally("acme", None, odd, None))
    day = keys.usage_bucket("acme", "d", bucket_of("d", AT))
    [(name, value)] = (await redis.hgetall(day)).items()
    assert json.loads(name) == ["ü:ser|x", odd, "", "", "gpt"] and value == b"120,30,36000,1"


async def test_a_users_own_fields_are_found_whatever_their_id_holds(store, redis):
    """HSCAN MATCH on the JSON prefix: glob characters in an id match only themselves."""
    tricky = ["a*", "a?", "a[b]", 'a"q', "a\\b", "a", "ab"]
    for i, user in enumerate(tricky):
        await store.usage.record(answer(f"m{i}", user_id=user), Tally("acme"))
    day = keys.usage_bucket("acme", "d", bucket_of("d", AT))
    for user in tricky:
        [fields] = await store.usage.read_user([day], user)
        assert [json.loads(name)[0] for name in fields] == [user], user


async def test_a_users_fields_of_a_large_bucket_come_back_whole(store, redis):
    day = keys.usage_bucket("acme", "d", bucket_of("d", AT))
    await redis.hset(
        day, mapping={json.dumps([f"u{i}", "", "", "", "m"]): "1,1,1,1" for i in range(30_000)}
    )
    await redis.hset(
        day, mapping={json.dumps(["me", "", "", f"k{i}", "m"]): "1,1,1,1" for i in range(700)}
    )
    [fields] = await store.usage.read_user([day], "me")
    assert len(fields) == 700


async def test_large_sums_stay_exact(store, redis):
    """Lua numbers are doubles: the script formats with %d, exact to 2^53."""
    big = answer(input_tokens=10**12, output_tokens=1, cost_nusd=4 * 10**15)
    await store.usage.record(big, Tally("acme"))
    await store.usage.record(answer("m2", input_tokens=10**12, cost_nusd=4 * 10**15), Tally("acme"))
    [value] = (await redis.hgetall(keys.usage_bucket("acme", "m", bucket_of("m", AT)))).values()
    assert value.decode() == f"{2 * 10**12},31,{8 * 10**15 + 0},2"


def test_bucket_walks_cross_month_and_year_ends():
    start = int(datetime(2025, 12, 31, 22, tzinfo=UTC).timestamp() * 1000)
    end = int(datetime(2026, 1, 1, 1, 30, tzinfo=UTC).timestamp() * 1000)
    assert list(buckets_between("h", start, end)) == [
        "2025123122",
        "2025123123",
        "2026010100",
        "2026010101",
    ]
    assert list(buckets_between("d", start, end)) == ["20251231", "20260101"]
    assert list(buckets_between("m", start, end)) == ["202512", "202601"]
    assert bucket_of("m", start) == "202512" and bucket_end("m", "202612").year == 2027
