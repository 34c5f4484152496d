"""SdkCalls against the SDK's own post(): the same request on the wire, the same retries, the
same exceptions, with both SDKs, at the fake upstream."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from providers.anthropic import AnthropicProvider
from providers.base import ChatMessage, ChatRequest, ModelSpec, ProviderError
from providers.openai import OpenAIProvider
from tests.fake_upstream import FakeUpstream, Reply

Make = Callable[..., OpenAIProvider | AnthropicProvider]
BEARER = {"security": {"bearer_auth": True}}
# what the SDK's serializer and orjson might disagree on: non-ASCII, escapes, floats, nesting
BODY: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": 'héllo "wörld" \u2028 \n\t 😀 </script>'}],
    "stream": True,
    "temperature": 1e-07,  # json.dumps writes 1e-07, orjson 1e-7
    "top_p": 1.0,
    "max_tokens": 64,
}
# per API: the path, the post's options, the body (with a field the other API refuses)
PATHS = {
    # an integer past 64 bits: orjson refuses it, json.dumps writes it
    "openai": ("/chat/completions", BEARER, {**BODY, "stop": ["ü", "1e16"], "seed": 2**70}),
    "anthropic": ("/v1/messages", None, {**BODY, "stop_sequences": ["ü", "1e16"], "top_k": 2**70}),
}


@pytest.fixture
async def make(upstream: FakeUpstream) -> AsyncIterator[Make]:
    made: list[OpenAIProvider | AnthropicProvider] = []

    def make(
        kind: str, *, base_url: str | None = None, read_timeout: float = 5.0, **options: Any
    ) -> OpenAIProvider | AnthropicProvider:
        openai_kind = kind == "openai"
        spec = ModelSpec(
            id=kind,
            provider=kind,
            model="m",
            api_key="sk-test",
            base_url=base_url
            or (upstream.openai_base_url if openai_kind else upstream.anthropic_base_url),
            connect_timeout=2.0,
            read_timeout=read_timeout,
            options={"max_retries": 0, **options},
        )
        made.append(OpenAIProvider(spec) if openai_kind else AnthropicProvider(spec))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


async def sdk_post(provider: Any, path: str, body: Any, options: Any, stream: bool) -> Any:
    response = await provider._client.post(
        path, cast_to=httpx2.Response, body=body, options=options or {}, stream=stream
    )
    await response.aread()
    await response.aclose()
    return response


async def calls_post(provider: Any, path: str, body: Any, options: Any, stream: bool) -> Any:
    response = await provider._calls.post(path, body=body, options=options, stream=stream)
    await response.aread()
    await response.aclose()
    return response


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [True, False])
async def test_the_request_on_the_wire_is_the_sdks_byte_for_byte(make, upstream, kind, stream):
    provider = make(kind)
    path, options, body = PATHS[kind]

    for _ in range(2):  # the second SdkCalls post is built from the cached template
        await sdk_post(provider, path, body, options, stream)
        await calls_post(provider, path, body, options, stream)

    sdk, first, sdk_again, cached = upstream.requests
    assert sdk.raw_body == first.raw_body == cached.raw_body
    assert sdk.raw_headers == first.raw_headers == sdk_again.raw_headers == cached.raw_headers
    assert sdk.path == cached.path


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_body_the_sdk_cannot_write_fails_as_the_sdks_post_fails(make, upstream, kind):
    provider = make(kind)
    path, options, body = PATHS[kind]
    nan = {**body, "temperature": float("nan")}

    with pytest.raises(ValueError) as sdk:
        await sdk_post(provider, path, nan, options, True)
    with pytest.raises(ValueError) as ours:
        await calls_post(provider, path, nan, options, True)
    assert str(ours.value) == str(sdk.value) and upstream.requests == []


@pytest.mark.parametrize(
    ("kind", "path", "options", "body"),
    [
        ("openai", "/embeddings", BEARER, {"model": "m", "input": ["a", "b"]}),
        (
            "anthropic",
            "/v1/messages/count_tokens",
            None,
            {"model": "m", "messages": BODY["messages"]},
        ),
    ],
)
async def test_the_other_posts_are_the_sdks_too(make, upstream, kind, path, options, body):
    provider = make(kind)

    await sdk_post(provider, path, body, options, False)
    await calls_post(provider, path, body, options, False)

    sdk, ours = upstream.requests
    assert (sdk.raw_headers, sdk.raw_body) == (ours.raw_headers, ours.raw_body)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_retries_429_and_5xx_waiting_the_retry_after(make, upstream, kind):
    provider = make(kind, max_retries=2)
    path, options, body = PATHS[kind]
    upstream.script(Reply(status=429, retry_after=0.3), Reply(status=503), Reply(chunks=["ok"]))

    started = time.monotonic()
    response = await calls_post(provider, path, body, options, True)

    assert response.status_code == 200
    assert b"ok" in response.content
    counts = [r.headers["x-stainless-retry-count"] for r in upstream.requests]
    assert counts == ["0", "1", "2"]
    assert time.monotonic() - started >= 0.3  # the 429's Retry-After, not the SDK's 0.5 s backoff


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_out_of_retries_raises_the_sdks_status_error(make, upstream, kind):
    provider = make(kind, max_retries=1)
    path, options, body = PATHS[kind]
    failing = Reply(status=500, retry_after=0.01, error_message="upstream broke")

    upstream.script(failing, failing)
    with pytest.raises(Exception) as sdk:
        await sdk_post(provider, path, body, options, True)
    upstream.script(failing, failing)
    with pytest.raises(Exception) as ours:
        await calls_post(provider, path, body, options, True)

    assert type(ours.value) is type(sdk.value)
    assert isinstance(ours.value, (openai.InternalServerError, anthropic.InternalServerError))
    assert str(ours.value) == str(sdk.value)
    assert ours.value.body == sdk.value.body  # type: ignore[attr-defined]
    assert len(upstream.requests) == 4


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_refused_request_is_not_retried(make, upstream, kind):
    provider = make(kind, max_retries=2)
    path, options, body = PATHS[kind]
    upstream.script(Reply(status=400, error_message="bad field"))

    with pytest.raises((openai.BadRequestError, anthropic.BadRequestError)):
        await calls_post(provider, path, body, options, True)

    assert len(upstream.requests) == 1


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_timeout_is_the_sdks_timeout_error(make, upstream, kind):
    provider = make(kind, read_timeout=0.2)
    path, options, body = PATHS[kind]
    upstream.script(Reply(chunks=["late"], first_delay=1.0))

    with pytest.raises((openai.APITimeoutError, anthropic.APITimeoutError)):
        await calls_post(provider, path, body, options, False)  # the body is read inside send


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_connection_refused_is_the_sdks_connection_error(make, kind):
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = make(kind, base_url=f"http://127.0.0.1:{port}/v1")
    path, options, body = PATHS[kind]

    with pytest.raises((openai.APIConnectionError, anthropic.APIConnectionError)) as caught:
        await calls_post(provider, path, body, options, True)

    assert not isinstance(caught.value, (openai.APITimeoutError, anthropic.APITimeoutError))


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [401, 404, 429, 500])
async def test_the_adapters_map_a_status_as_before(make, upstream, kind, status):
    provider = make(kind)
    request = ChatRequest(model="m", messages=[ChatMessage(role="user", content="hi")])
    upstream.script(Reply(status=status, retry_after=3, error_message="no"))

    with pytest.raises(ProviderError) as caught:
        async for _ in provider.stream(request):
            pass
    path, options, body = PATHS[kind]
    upstream.script(Reply(status=status, retry_after=3, error_message="no"))
    with pytest.raises(Exception) as sdk:
        await sdk_post(provider, path, body, options, True)
    mapping = __import__(f"providers.{kind}", fromlist=["_"])
    expected = (
        mapping._status_error(sdk.value) if kind == "openai" else mapping._api_error(sdk.value)
    )

    assert (caught.value.kind, caught.value.message, caught.value.status) == (
        expected.kind,
        expected.message,
        expected.status,
    )
    assert caught.value.retry_after == expected.retry_after


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_new_key_is_sent_once_set(make, upstream, kind):
    provider = make(kind)
    path, options, body = PATHS[kind]

    await calls_post(provider, path, body, options, True)
    provider._client.api_key = "sk-rotated"
    await calls_post(provider, path, body, options, True)
    await sdk_post(provider, path, body, options, True)

    old, new, sdk = (
        r.headers.get("x-api-key") or r.headers["authorization"] for r in upstream.requests
    )
    assert "sk-test" in old
    assert new == sdk
    assert "sk-rotated" in new


def answering(raw: bytes) -> Any:
    """A RawServer answer: `raw` to every request, and the connection closed."""

    async def answer(reader: Any, writer: Any, n: int) -> bool:
        writer.write(raw)
        return False

    return answer


@pytest.mark.parametrize("post", [sdk_post, calls_post])
async def test_a_redirect_is_followed_as_the_sdks_client_follows_it(
    make, upstream, raw_server, post
):
    path, options, body = PATHS["openai"]
    target = upstream.openai_base_url + path
    redirect = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
    origin = await raw_server(answering(redirect % target.encode()))
    provider = make("openai", base_url=origin.url)

    response = await post(provider, path, body, options, True)

    assert origin.requests == 1
    assert response.status_code == 200
    assert str(response.url) == target
    (followed,) = upstream.requests
    assert followed.body == body


@pytest.mark.parametrize("post", [sdk_post, calls_post])
async def test_a_cookie_the_upstream_sets_is_kept_by_the_client(make, raw_server, post):
    path, options, body = PATHS["openai"]
    answer = b"HTTP/1.1 200 OK\r\nSet-Cookie: __cf_bm=abc; Path=/\r\nContent-Length: 2\r\n\r\n{}"
    provider = make("openai", base_url=(await raw_server(answering(answer))).url)

    response = await post(provider, path, body, options, False)

    assert response.status_code == 200
    assert provider._client._client.cookies.get("__cf_bm") == "abc"


async def test_the_http_clients_event_hooks_see_every_request(make, upstream):
    provider = make("openai")
    path, options, body = PATHS["openai"]
    seen: list[str] = []

    async def hook(request: httpx2.Request) -> None:
        seen.append(request.url.path)

    provider._client._client.event_hooks["request"].append(hook)
    await calls_post(provider, path, body, options, True)

    assert seen == ["/v1/chat/completions"]
    assert len(upstream.requests) == 1
