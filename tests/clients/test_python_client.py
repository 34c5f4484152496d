"""The typed async client: a stream, errors in the contract's shape, and a dropped
connection resumed through the resume route without losing or repeating a token."""

from __future__ import annotations

import httpx
import pytest

from chat_gateway_client import GatewayClient, GatewayError
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG


class CutFirstStream(httpx.AsyncBaseTransport):
    """A real transport whose first streamed POST loses its connection after `cut` bytes."""

    def __init__(self, cut: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.cut = cut
        self.done = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.done or request.method != "POST" or not request.url.path.endswith("stream_chat"):
            return response
        self.done = True
        cut, stream = self.cut, response.stream

        class Cut(httpx.AsyncByteStream):
            async def __aiter__(self):
                sent = 0
                async for chunk in stream:
                    if sent + len(chunk) >= cut:
                        yield chunk[: cut - sent]
                        raise httpx.RemoteProtocolError("connection lost (injected)")
                    sent += len(chunk)
                    yield chunk

            async def aclose(self) -> None:
                await stream.aclose()

        return httpx.Response(response.status_code, headers=response.headers, stream=Cut())

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_stream_chat_yields_typed_events(gateway_server, alice, upstream, redis):
    async with GatewayClient(gateway_server.url, alice, org_id=ORG) as gw:
        conv = await gw.create_conversation("typed")
        session = await gw.create_session(conv["id"], "gpt")
        upstream.script(Reply(chunks=["Hello", " there"], input_tokens=3, output_tokens=2))
        events = [e async for e in gw.stream_chat(session["id"], "hi")]
        assert [e.type for e in events] == ["start", "content", "content", "end"]
        assert "".join(e.delta for e in events) == "Hello there"
        assert events[-1].data["usage"] == {"input_tokens": 3, "output_tokens": 2}
        assert (await gw.messages(conv["id"]))["total"] == 2
        with pytest.raises(GatewayError) as err:
            await gw.create_session(conv["id"], "no-such-model")
        assert (err.value.status, err.value.code) == (404, "model_not_found")


async def test_a_dropped_connection_is_resumed_without_loss_or_repeats(
    gateway_server, alice, upstream, redis
):
    words = [f"w{chr(97 + i)} " for i in range(20)]
    upstream.script(Reply(chunks=words, delay=0.02))
    transport = CutFirstStream(cut=900)
    http = httpx.AsyncClient(
        base_url=gateway_server.url,
        transport=transport,
        headers={"Authorization": f"Bearer {alice}"},
        timeout=30,
    )
    async with GatewayClient(gateway_server.url, alice, org_id=ORG, http=http) as gw:
        conv = await gw.create_conversation("resumed")
        session = await gw.create_session(conv["id"], "gpt")
        events = [e async for e in gw.stream_chat(session["id"], "count")]
    assert transport.done
    assert [e.type for e in events].count("start") == 1 and events[-1].type == "end"
    contents = [e for e in events if e.type == "content"]
    assert "".join(e.delta for e in contents) == "".join(words)
    seqs = [int(e.id.split(":")[1]) for e in contents]
    assert seqs == list(range(1, len(seqs) + 1))
