"""@chat-gateway/client (clients/typescript) in Debian's Chromium: a page on another origin
loads the package's ESM build, streams a chat through a proxy that breaks the connection
mid-answer (the client resumes it, every token once), renders it, replays it with a native
EventSource on the stream's resume_token URL, stops a long answer, and meets a blocked
prompt as a BadRequestError. A screenshot goes to tests/browser/artifacts/."""

from __future__ import annotations

import asyncio
import mimetypes
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.browser.harness import ARTIFACTS, INSTALL_HINT
from tests.clients.node import ensure_built
from tests.gateway_fixtures import ORG
from tests.support import bearer, make_jwt

expect = pytest.importorskip("playwright.sync_api", reason=INSTALL_HINT).expect
ALICE = make_jwt("alice", ORG, "user", workspaces=["ws-1"], name="Alice")


def session_on(env: Any, model: str) -> tuple[str, str]:
    r = httpx.post(
        f"{env.gateway.url}/api/conversation/create?org_id={ORG}",
        json={"title": model},
        headers=bearer(ALICE),
    )
    conversation = r.json()["id"]
    r = httpx.post(
        f"{env.gateway.url}/api/conversation/create_session?org_id={ORG}",
        json={"conversation_id": conversation, "model_id": model},
        headers=bearer(ALICE),
    )
    assert r.status_code == 201, r.text
    return conversation, r.json()["id"]


def stored_messages(env: Any, conversation_id: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{env.gateway.url}/api/conversation/messages",
        params={"org_id": ORG, "conversation_id": conversation_id},
        headers=bearer(ALICE),
    )
    assert r.status_code == 200, r.text
    return r.json()["messages"]


def serve_build(page: Any, origin: str, dist: Path) -> None:
    """The page's origin answers /ts-client/* with the files of the ESM build."""

    def fulfil(route: Any) -> None:
        name = route.request.url.split("/ts-client/", 1)[1].split("?", 1)[0]
        file = (dist / name).resolve()
        if dist not in file.parents or not file.is_file():
            route.fulfill(status=404, body="not in the build")
            return
        route.fulfill(
            status=200,
            body=file.read_bytes(),
            content_type=mimetypes.guess_type(file.name)[0] or "text/javascript",
        )

    page.route(f"{origin}/ts-client/**", fulfil)


def let_go(page: Any, proxy: Any) -> None:
    """Closes the browser's keep-alive connections and waits until the proxy has let go of
    them: the module's proxy stops right after this test, and would otherwise stop its loop
    under connections still closing."""
    page.context.close()

    async def open_connections() -> int:
        return len(asyncio.all_tasks()) - 1  # all but this one

    deadline = time.monotonic() + 5
    while (
        asyncio.run_coroutine_threadsafe(open_connections(), proxy.loop).result(5)
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)


def test_the_typescript_client_streams_resumes_replays_and_stops_in_chromium(
    page: Any, env: Any
) -> None:
    dist = ensure_built().resolve()
    conversation, session = session_on(env, "paced")
    long_conversation, long_session = session_on(env, "long")
    serve_build(page, env.second_origin.url, dist)
    env.proxy.arm(after=3)  # the first stream's connection breaks after 3 content events
    query = urlencode(
        {"gw": env.proxy.url, "token": ALICE, "org": ORG, "session": session, "long": long_session}
    )

    page.goto(f"{env.second_origin.url}/ts_client.html?{query}")
    page.wait_for_function("window.result && window.result.done", timeout=30_000)
    result = page.evaluate("window.result")

    assert "error" not in result, result["error"]
    # the break happened and was resumed, with no token lost or doubled
    assert env.proxy.cuts == 1 and result["resumes"] == 1
    ids = result["ids"]
    assert len(ids) > 10 and ids == [f"{result['messageId']}:{i}" for i in range(1, len(ids) + 1)]
    assert result["events"][0] == "start" and result["events"][-1] == "end"
    assert result["finish"] == "stop"
    stored = next(m for m in stored_messages(env, conversation) if m["id"] == result["messageId"])
    assert stored["status"] == "complete"
    expect(page.locator("#answer")).to_have_text(stored["content"])  # what the page rendered
    expect(page.locator("#status")).to_have_text("done (resumed 1×)")
    # EventSource, with the resume_token in the URL, replays the same answer
    assert result["replayed"] == stored["content"]
    # stop() ended the long answer early, as cancelled, and that is what was stored
    assert result["stop"] == {
        "success": True,
        "message_id": result["stopped"]["messageId"],
        "stopping": True,
    }
    assert result["stopped"]["finish"] == "cancelled"
    long_answer = next(
        m for m in stored_messages(env, long_conversation) if m["role"] == "assistant"
    )
    assert (
        long_answer["status"] == "cancelled" and long_answer["content"] == result["stopped"]["text"]
    )
    assert 5 <= long_answer["output_tokens"] < 400
    # a blocked prompt is a BadRequestError before any stream
    assert result["blocked"] == {
        "name": "BadRequestError",
        "isBadRequest": True,
        "status": 400,
        "code": "policy_blocked",
    }
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ts-client.png"), full_page=True)
    let_go(page, env.proxy)
