"""Resume tokens stand in for a bearer token on the resume routes, for one message only,
and only while its conversation exists: a soft-deleted conversation's answers are gone for
the token holder as they are for everyone else."""

from __future__ import annotations

from gateway.storage import keys
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, parse_sse


async def test_a_resume_token_stops_working_when_its_conversation_is_deleted(
    client, alice, upstream, redis
):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    upstream.script(Reply(chunks=["private ", "answer"]))
    start = (await client.chat(alice, session["id"], "hi")).events[0].json
    mid, token = start["message_id"], start["resume_token"]
    routes = [
        f"/api/conversation/stream?org_id={ORG}&message_id={mid}&resume_token={token}",
        f"/conversation/{conv['id']}/messages/{mid}/stream?resume_token={token}",
    ]
    for route in routes:  # valid while the conversation lives
        r = await client.http.get(route)
        assert r.status_code == 200 and parse_sse(r.content).text == "private answer"

    deleted = await client.http.delete(f"/conversation/{conv['id']}", headers=bearer(alice))
    assert deleted.status_code == 200

    for route in routes:
        r = await client.http.get(route)
        assert r.status_code == 404 and r.json()["code"] == "stream_not_found", r.text
        assert b"private" not in r.content
    # the log itself is still there (it expires on its own): only access was refused
    assert await redis.exists(keys.resume_log(conv["id"], mid)) == 1
    assert (await redis.hget(keys.conversation(conv["id"]), "deleted_at")) is not None
