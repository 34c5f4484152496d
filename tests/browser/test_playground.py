"""The playground, the docs page and a page on another origin, in a real Chromium against a
real gateway: tokens stream in, policy and error events show, Stop stops, a broken
connection is resumed exactly where it broke, and a second origin streams through CORS
with fetch and with a native EventSource."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import httpx
import pytest

from tests.browser.harness import ARTIFACTS, INSTALL_HINT
from tests.gateway_fixtures import ORG
from tests.support import bearer, make_jwt

expect = pytest.importorskip("playwright.sync_api", reason=INSTALL_HINT).expect
ALICE = make_jwt("alice", ORG, "user", workspaces=["ws-1"], name="Alice")


def sign_in(page, base_url: str) -> None:
    page.goto(base_url + "/")
    page.get_by_label("Bearer token").fill(ALICE)
    page.get_by_label("Org id").fill(ORG)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#status")).to_have_text("Ready.")


def new_conversation(page, title: str, model: str) -> None:
    page.get_by_placeholder("Title").fill(title)
    page.get_by_role("button", name="New", exact=True).click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()
    page.get_by_label("Model").fill(model)
    page.get_by_role("button", name="New session").click()
    expect(page.locator("#session option")).to_have_count(1)
    expect(page.locator("#session option")).to_contain_text(model)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def send(page, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def stored_messages(env, conversation_id: str) -> list[dict]:
    r = httpx.get(
        f"{env.gateway.url}/api/conversation/messages",
        params={"org_id": ORG, "conversation_id": conversation_id},
        headers=bearer(ALICE),
    )
    assert r.status_code == 200, r.text
    return r.json()["messages"]


def current_conversation_id(page, env) -> str:
    title = page.locator("#chat-heading").text_content()
    r = httpx.get(
        f"{env.gateway.url}/api/conversation/list", params={"org_id": ORG}, headers=bearer(ALICE)
    )
    return next(c["id"] for c in r.json()["conversations"] if c["title"] == title)


def test_playground_streams_shows_policy_events_and_stops(page, env):
    sign_in(page, env.gateway.url)
    models = page.locator("#models option").evaluate_all("els => els.map(e => e.value)")
    assert {"demo", "paced", "long"} <= set(models)  # from GET /v1/models
    new_conversation(page, "Browser test", "paced")

    # a reply streams in; usage and the redacting policy's event come with `end`
    send(page, "bluebird status?")
    answer = page.locator("#transcript .message.assistant").last
    expect(answer).to_have_attribute("data-finish", "stop")
    expect(answer.locator(".who")).to_have_text("paced")
    expect(page.locator("#usage")).to_have_text(re.compile(r"^\d+ in · \d+ out$"))
    expect(page.locator("#finish")).to_have_text("stop")
    expect(page.locator("#events .event.policy")).to_contain_text("codename")
    shown = answer.locator(".text").text_content()
    assert shown.startswith("You asked:") and "bluebird" not in shown.lower()
    assert int(page.locator("#chunks").text_content()) > 10

    # a prompt the pre-policy blocks never streams: the error event says why
    send(page, "what is the launch code?")
    expect(page.locator("#events .event.error")).to_contain_text("policy_blocked")
    expect(page.locator("#status")).to_contain_text("policy_blocked")

    # Stop ends a long answer early, as `cancelled`
    page.get_by_label("Model").fill("long")
    page.get_by_role("button", name="New session").click()
    expect(page.locator("#session option")).to_have_count(2)
    send(page, "tell me a long story")
    expect(page.locator("#chunks")).to_have_text(re.compile(r"^([5-9]|\d\d+)$"))
    page.get_by_role("button", name="Stop").click()
    stopped = page.locator("#transcript .message.assistant").last
    expect(stopped).to_have_attribute("data-finish", "cancelled")
    expect(page.locator("#finish")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)

    # what the page showed is what the gateway stored
    messages = stored_messages(env, current_conversation_id(page, env))
    assistant = [m for m in messages if m["role"] == "assistant"]
    assert assistant[-1]["status"] == "cancelled"
    assert assistant[-1]["content"] == stopped.locator(".text").text_content()
    assert 5 <= assistant[-1]["output_tokens"] < 400
    assert assistant[0]["content"] == shown


def test_playground_resumes_a_broken_stream_exactly_where_it_broke(page, env):
    sign_in(page, env.proxy.url)  # the page, and its requests, through the breaking proxy
    new_conversation(page, "Resume test", "paced")
    env.proxy.arm(after=3)
    send(page, "count slowly")
    answer = page.locator("#transcript .message.assistant").last
    expect(answer).to_have_attribute("data-finish", "stop")
    assert env.proxy.cuts == 1
    expect(page.locator("#transcript")).to_have_attribute("data-reconnects", "1")
    expect(page.locator("#status")).to_have_text("Done (resumed 1×).")
    stored = stored_messages(env, current_conversation_id(page, env))[-1]
    assert stored["status"] == "complete"
    assert answer.locator(".text").text_content() == stored["content"]  # no gap, no repeat

    # picked from the list again, the conversation shows its stored history
    page.get_by_role("button", name="Refresh list").click()
    page.locator("#conversations").get_by_role("button", name="Resume test").first.click()
    expect(page.locator("#transcript .message")).to_have_count(2)
    expect(page.locator("#transcript .message.assistant .text")).to_have_text(stored["content"])


def test_a_page_on_another_origin_streams_with_fetch_and_eventsource(page, env):
    r = httpx.post(
        f"{env.gateway.url}/api/conversation/create?org_id={ORG}",
        json={"title": "cors"},
        headers=bearer(ALICE),
    )
    conversation = r.json()
    r = httpx.post(
        f"{env.gateway.url}/api/conversation/create_session?org_id={ORG}",
        json={"conversation_id": conversation["id"], "model_id": "paced"},
        headers=bearer(ALICE),
    )
    query = urlencode(
        {
            "gw": env.gateway.url,
            "es": env.proxy.url,
            "token": ALICE,
            "org": ORG,
            "session": r.json()["id"],
        }
    )
    env.proxy.arm(after=3)  # the EventSource's first connection breaks after 3 content events
    page.goto(f"{env.second_origin.url}/cross_origin.html?{query}")
    page.wait_for_function("window.result && window.result.done", timeout=20_000)
    result = page.evaluate("window.result")
    assert "error" not in result, result.get("error")

    fetched = result["fetch"]
    assert fetched["status"] == 200 and fetched["requestId"]
    assert fetched["events"][0] == "start" and fetched["events"][-1] == "end"
    assert (
        fetched["end"]["finish_reason"] == "stop" and fetched["end"]["usage"]["output_tokens"] > 0
    )
    ids = fetched["ids"]
    assert len(ids) > 10 and ids == [
        f"{fetched['start']['message_id']}:{i}" for i in range(1, len(ids) + 1)
    ]

    es = result["es"]
    assert env.proxy.cuts == 1 and es["drops"] >= 1 and es["opens"] >= 2  # broke, reconnected
    assert es["ids"] == ids  # each event once, in order, none lost at the break
    assert es["text"] == fetched["text"]
    assert es["end"]["finish_reason"] == "stop"

    assert result["resume"]["status"] == 200
    assert result["resume"]["ids"] == ids[3:]  # exactly after Last-Event-ID
    assert fetched["text"].endswith(result["resume"]["text"])
    assert stored_messages(env, conversation["id"])[-1]["content"] == fetched["text"]


def test_the_docs_page_renders_every_operation(page, env):
    page.goto(env.gateway.url + "/docs")
    expect(page.locator("#docs")).to_have_attribute("aria-busy", "false")
    document = httpx.get(env.gateway.url + "/openapi.json").json()
    operations = sum(len(item) for item in document["paths"].values())
    expect(page.locator("#docs section details")).to_have_count(
        operations + len(document["components"]["schemas"])
    )
    stream_chat = page.locator("details", has_text="/api/conversation/stream_chat").first
    stream_chat.locator("summary").click()
    expect(stream_chat).to_contain_text("text/event-stream")
    expect(stream_chat).to_contain_text("chat_session_id")  # the body's schema, resolved
    stream_chat.get_by_role("link", name="StreamChat", exact=True).click()
    expect(page.locator("#schema-StreamChat")).to_have_attribute("open", "")
    assert page.locator(".tag-undocumented").count() == 0
