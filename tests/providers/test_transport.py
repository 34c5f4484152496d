"""LeanTransport over real sockets: the adapters stream through it, keep-alive connections are
reused and let go when they must be, failures become the errors the SDKs and adapters map,
every body framing and TLS work.

The fake upstream speaks the providers' wire formats; a tiny asyncio server of the test's
own (RawServer) scripts what uvicorn will not do: close at chosen moments, never answer.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
import uvloop

import providers.anthropic
import providers.openai
from providers.anthropic import AnthropicProvider
from providers.base import (
    ChatMessage,
    ChatRequest,
    Finish,
    ModelSpec,
    Opened,
    ProviderError,
    ProviderEvent,
    TextDelta,
    Usage,
)
from providers.openai import OpenAIProvider
from providers.transport import LeanTransport, body_bytes, upstream_transport
from tests.fake_upstream import FakeUpstream, Reply
from tests.providers.conftest import flat
from tests.providers.raw_server import RawServer

# A complete OpenAI answer, "Hi there", as the upstream frames it.
OPENAI_SSE = (
    b'data: {"choices":[{"index":0,"delta":{"content":"Hi "},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"there"},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)
HI_THERE = [Opened(), TextDelta("Hi "), TextDelta("there"), Usage(2, 2), Finish("stop")]


def response(body: bytes, *headers: bytes, status: bytes = b"200 OK") -> bytes:
    """A whole HTTP/1.1 response with a Content-Length."""
    lines = [b"HTTP/1.1 " + status, b"content-type: text/event-stream", *headers]
    lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def answers_hi_there(reader, writer, n) -> bool:
    writer.write(response(OPENAI_SSE))
    return True


async def until_the_client_leaves(reader: asyncio.StreamReader) -> bool:
    """Read on to the client's end of the connection (a server that never answers)."""
    await reader.read()
    return False


# -- providers -----------------------------------------------------------------------------


@pytest.fixture
def transports(monkeypatch) -> list[httpx2.AsyncBaseTransport | None]:
    """What upstream_transport() gave each adapter made in the test."""
    made: list[httpx2.AsyncBaseTransport | None] = []

    def recording(options, *, limits):
        made.append(upstream_transport(options, limits=limits))
        return made[-1]

    monkeypatch.setattr(providers.openai, "upstream_transport", recording)
    monkeypatch.setattr(providers.anthropic, "upstream_transport", recording)
    return made


MakeProvider = Callable[..., OpenAIProvider | AnthropicProvider]


@pytest.fixture
async def make_provider() -> AsyncIterator[MakeProvider]:
    made: list[OpenAIProvider | AnthropicProvider] = []

    def make(
        kind: str, base_url: str, *, read_timeout: float = 5.0, **options
    ) -> OpenAIProvider | AnthropicProvider:
        spec = ModelSpec(
            id=kind,
            provider=kind,  # type: ignore[arg-type]
            model="test-model",
            base_url=base_url,
            api_key="sk-test",
            connect_timeout=2.0,
            read_timeout=read_timeout,
            options={"max_retries": 0, **options},
        )
        made.append(OpenAIProvider(spec) if kind == "openai" else AnthropicProvider(spec))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def ask(text: str = "hello there") -> ChatRequest:
    return ChatRequest(model="test-model", messages=[ChatMessage("user", text)])


async def collect(provider, request: ChatRequest | None = None) -> list[ProviderEvent]:
    return flat([event async for event in provider.stream(request or ask())])


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def base_url(upstream: FakeUpstream, kind: str) -> str:
    return upstream.openai_base_url if kind == "openai" else upstream.anthropic_base_url


# -- the adapters over LeanTransport -------------------------------------------------------


async def test_the_openai_adapter_streams_a_whole_answer(make_provider, upstream, transports):
    upstream.script(Reply(chunks=["Hel", "lo", " world"], input_tokens=11, output_tokens=3))

    events = await collect(make_provider("openai", upstream.openai_base_url))

    assert isinstance(transports[0], LeanTransport)
    assert events == [
        Opened(),
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" world"),
        Usage(11, 3),
        Finish("stop"),
    ]
    [sent] = upstream.requests
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body["messages"] == [{"role": "user", "content": "hello there"}]


async def test_the_anthropic_adapter_streams_a_whole_answer(make_provider, upstream, transports):
    upstream.script(Reply(chunks=["Hel", "lo", " world"], input_tokens=11, output_tokens=3))

    events = await collect(make_provider("anthropic", upstream.anthropic_base_url))

    assert isinstance(transports[0], LeanTransport)
    assert events == [
        Opened(),
        Usage(11, 1),
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" world"),
        Usage(11, 3),
        Finish("stop", native="end_turn"),
    ]
    [sent] = upstream.requests
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body["messages"] == [{"role": "user", "content": "hello there"}]


def test_both_adapters_stream_under_uvloop_as_in_production(upstream):
    async def both() -> list[str]:
        texts = []
        for kind in ("openai", "anthropic"):
            spec = ModelSpec(
                id=kind,
                provider=kind,
                model="m",
                base_url=base_url(upstream, kind),  # type: ignore[arg-type]
                api_key="sk-test",
                options={"max_retries": 0},
            )
            provider = OpenAIProvider(spec) if kind == "openai" else AnthropicProvider(spec)
            texts.append(text_of(await collect(provider, ask("under uvloop"))))
            await provider.aclose()
        return texts

    assert uvloop.run(both()) == ["Echo: under uvloop"] * 2


def test_the_sdk_transport_is_kept_for_proxies_and_on_request(monkeypatch):
    limits = httpx2.Limits(max_connections=10)
    for name in (
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)

    assert isinstance(upstream_transport({}, limits=limits), LeanTransport)
    assert upstream_transport({"transport": "httpx"}, limits=limits) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert upstream_transport({}, limits=limits) is None


async def test_the_sdk_transport_still_streams_when_asked_for(make_provider, upstream, transports):
    events = await collect(make_provider("openai", upstream.openai_base_url, transport="httpx"))

    assert transports == [None]
    assert text_of(events) == "Echo: hello there"


# -- the pool ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_finished_stream_leaves_its_connection_for_the_next(make_provider, upstream, kind):
    provider = make_provider(kind, base_url(upstream, kind))

    for text in ("one", "two", "three"):
        assert text_of(await collect(provider, ask(text))) == f"Echo: {text}"

    ports = {request.client_port for request in upstream.requests}
    assert len(ports) == 1  # one keep-alive connection carried all three


async def test_a_body_closed_early_takes_its_connection_with_it(make_provider, upstream):
    upstream.script(Reply(chunks=["tick "] * 100, delay=0.02))
    provider = make_provider("openai", upstream.openai_base_url)
    stream = provider.stream(ask())
    assert await anext(stream) == Opened()
    assert await anext(stream) == TextDelta("tick ")
    await stream.aclose()

    await collect(provider)

    first, second = upstream.requests
    assert first.client_port != second.client_port  # not pooled: a new connection
    upstream.wait_until(lambda: upstream.cancelled_streams == 1, timeout=1.0)


async def test_connection_close_from_the_server_is_honoured(raw_server):
    async def closes(reader, writer, n) -> bool:
        writer.write(response(b"bye", b"connection: close"))
        return False

    server = await raw_server(closes)
    async with httpx2.AsyncClient(transport=LeanTransport()) as client:
        for _ in range(2):
            assert (await client.get(server.url)).content == b"bye"

    assert server.connections == 2


async def test_a_full_pool_makes_the_next_request_wait_then_time_out(raw_server):
    release = asyncio.Event()

    async def holds(reader, writer, n) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b"a"))
        await release.wait()
        writer.write(chunk(b"b") + b"0\r\n\r\n")
        return True

    server = await raw_server(holds)
    transport = LeanTransport(limits=httpx2.Limits(max_connections=1))
    async with httpx2.AsyncClient(transport=transport) as client:
        async with client.stream("GET", server.url) as first:
            with pytest.raises(httpx2.PoolTimeout):
                await client.get(server.url, timeout=httpx2.Timeout(5, pool=0.2))
            waiting = asyncio.create_task(client.get(server.url))
            await asyncio.sleep(0.05)
            release.set()
            assert await first.aread() == b"ab"
        assert (await waiting).content == b"ab"  # took the first one's connection

    assert server.connections == 1


async def test_a_pooled_connection_closed_while_idle_is_replaced(
    raw_server, make_provider, transports
):
    async def answers_then_hangs_up(reader, writer, n) -> bool:
        writer.write(response(OPENAI_SSE))  # keep-alive, but the server closes right after
        return False

    server = await raw_server(answers_then_hangs_up)
    provider = make_provider("openai", server.url)

    assert await collect(provider) == HI_THERE
    await asyncio.sleep(0.05)  # the close arrives while the connection waits in the pool
    assert await collect(provider) == HI_THERE

    assert server.connections == 2


async def test_a_connection_found_dead_when_reused_is_retried_once_on_a_new_one(
    raw_server, make_provider
):
    async def hangs_up_on_the_second_request(reader, writer, n) -> bool:
        if n == 2:  # as if its idle timer had fired just as the request came in
            return False
        writer.write(response(OPENAI_SSE))
        return True

    server = await raw_server(hangs_up_on_the_second_request)
    provider = make_provider("openai", server.url)  # max_retries=0: no SDK retry

    assert await collect(provider) == HI_THERE
    assert await collect(provider) == HI_THERE

    assert (server.connections, server.requests) == (2, 3)


async def test_a_new_connection_closed_before_answering_is_not_retried(raw_server, make_provider):
    async def hangs_up(reader, writer, n) -> bool:
        return False

    server = await raw_server(hangs_up)

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider("openai", server.url))

    assert caught.value.kind == "connection"
    assert (server.connections, server.requests) == (1, 1)


async def test_idle_connections_expire(raw_server):
    server = await raw_server(answers_hi_there)
    transport = LeanTransport(limits=httpx2.Limits(keepalive_expiry=0.5))
    async with httpx2.AsyncClient(transport=transport) as client:
        await client.get(server.url)
        await client.get(server.url)
        await asyncio.sleep(0.6)
        await client.get(server.url)
        await asyncio.wait_for(server.client_closed.wait(), 1)  # closed, not just forgotten

    assert server.connections == 2


# -- failures ------------------------------------------------------------------------------


async def test_a_refused_connection_is_a_connection_error(make_provider):
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider("anthropic", f"http://127.0.0.1:{port}"))

    assert caught.value.kind == "connection"
    assert isinstance(caught.value.__cause__.__cause__, httpx2.ConnectError)


async def test_a_server_that_never_answers_is_a_timeout(raw_server, make_provider):
    async def never_answers(reader, writer, n) -> bool:
        return await until_the_client_leaves(reader)

    server = await raw_server(never_answers)

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider("openai", server.url, read_timeout=0.2))

    assert caught.value.kind == "timeout"
    await asyncio.wait_for(server.client_closed.wait(), 1)  # and the socket was let go


async def test_a_server_that_closes_mid_body_fails_the_stream(raw_server, make_provider):
    first = OPENAI_SSE.split(b"\n\n")[0] + b"\n\n"

    async def hangs_up_mid_body(reader, writer, n) -> bool:
        writer.write(response(OPENAI_SSE)[: -len(OPENAI_SSE)] + first)
        await writer.drain()
        return False

    server = await raw_server(hangs_up_mid_body)
    seen: list[ProviderEvent] = []

    with pytest.raises(ProviderError) as caught:
        async for event in make_provider("openai", server.url).stream(ask()):
            seen.append(event)

    assert seen == [Opened(), TextDelta("Hi ")]
    assert caught.value.kind == "connection"
    assert "RemoteProtocolError" in caught.value.message


async def test_a_malformed_response_is_a_protocol_error(raw_server):
    async def garbage(reader, writer, n) -> bool:
        writer.write(b"HTTP/1.1 OK 200\r\n\r\n")
        return True

    server = await raw_server(garbage)
    async with httpx2.AsyncClient(transport=LeanTransport()) as client:
        with pytest.raises(httpx2.RemoteProtocolError):
            await client.get(server.url)


async def test_cancelling_the_reader_of_a_body_closes_its_connection(raw_server):
    async def streams_then_waits(reader, writer, n) -> bool:
        if server.requests == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b"a"))
            return await until_the_client_leaves(reader)
        writer.write(response(b"fresh"))
        return True

    server = await raw_server(streams_then_waits)
    got_first = asyncio.Event()
    async with httpx2.AsyncClient(transport=LeanTransport()) as client:

        async def read_all() -> None:
            async with client.stream("GET", server.url) as streamed:
                async for _ in streamed.aiter_raw():
                    got_first.set()

        task = asyncio.create_task(read_all())
        await asyncio.wait_for(got_first.wait(), 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.client_closed.wait(), 1)

        assert (await client.get(server.url)).content == b"fresh"

    assert server.connections == 2


# -- bodies --------------------------------------------------------------------------------


async def test_a_chunked_body_streams_chunk_by_chunk(raw_server):
    next_chunk = asyncio.Event()

    async def two_chunks(reader, writer, n) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b"first "))
        await next_chunk.wait()
        writer.write(chunk(b"second") + b"0\r\n\r\n")
        return True

    server = await raw_server(two_chunks)
    async with httpx2.AsyncClient(transport=LeanTransport()) as client:
        async with client.stream("GET", server.url) as streamed:
            pieces = streamed.aiter_raw()
            assert await anext(pieces) == b"first "  # before the server sent the rest
            next_chunk.set()
            assert [piece async for piece in pieces] == [b"second"]
        assert streamed.http_version == "HTTP/1.1"


@pytest.mark.parametrize("framing", ["content-length", "until-close"])
async def test_bodies_framed_by_length_or_by_the_connection_end(raw_server, framing):
    body = b"x" * 100_000

    async def answers(reader, writer, n) -> bool:
        if framing == "content-length":
            writer.write(response(body))
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + body)
        return False

    server = await raw_server(answers)
    async with httpx2.AsyncClient(transport=LeanTransport()) as client:
        first = await client.get(server.url)
        second = await client.get(server.url)

    assert first.content == second.content == body
    assert server.connections == (1 if framing == "content-length" else 2)


async def test_a_gzip_body_is_decoded_by_httpx2(raw_server):
    text = b"data: compressed\n\n" * 100

    async def gzipped(reader, writer, n) -> bool:
        writer.write(response(gzip.compress(text), b"content-encoding: gzip"))
        return True

    server = await raw_server(gzipped)
    async with httpx2.AsyncClient(transport=LeanTransport()) as client:
        answer = await client.get(server.url)

    assert answer.headers["content-encoding"] == "gzip"
    assert answer.content == text


async def test_the_adapter_reads_a_gzip_event_stream_through_httpx2s_decoder(
    raw_server, make_provider
):
    async def gzipped(reader, writer, n) -> bool:
        writer.write(response(gzip.compress(OPENAI_SSE), b"content-encoding: gzip"))
        return True

    server = await raw_server(gzipped)

    assert await collect(make_provider("openai", server.url)) == HI_THERE


async def test_body_bytes_reads_our_body_directly_and_only_once(raw_server):
    async def two_chunks(reader, writer, n) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(chunk(b"first ") + chunk(b"second") + b"0\r\n\r\n")
        return True

    server = await raw_server(two_chunks)
    transport = LeanTransport()  # its response as the adapters get it (sdk_calls._send)
    streamed = await transport.handle_async_request(httpx2.Request("GET", server.url))
    pieces = body_bytes(streamed)
    assert pieces.ag_code.co_qualname == "_Body.__aiter__"  # type: ignore[attr-defined]
    assert b"".join([piece async for piece in pieces]) == b"first second"
    with pytest.raises(httpx2.StreamConsumed):
        body_bytes(streamed)
    await streamed.aclose()
    again = await transport.handle_async_request(httpx2.Request("GET", server.url))
    await again.aread()
    await transport.aclose()
    assert server.connections == 1  # the body read to its end gave its connection back


async def test_body_bytes_leaves_other_transports_bodies_to_httpx2(raw_server):
    async def plain(reader, writer, n) -> bool:
        writer.write(response(b"sdk transport"))
        return True

    server = await raw_server(plain)
    async with (
        httpx2.AsyncClient() as client,  # httpx2's own transport
        client.stream("GET", server.url) as streamed,
    ):
        pieces = body_bytes(streamed)
        assert pieces.ag_code.co_qualname == "Response.aiter_bytes"  # type: ignore[attr-defined]
        assert b"".join([piece async for piece in pieces]) == b"sdk transport"


async def test_a_slow_reader_holds_the_server_back(raw_server):
    body = b"y" * (32 * 1024 * 1024)
    unsent: list[int] = []

    async def big(reader, writer, n) -> bool:
        writer.write(response(body))
        await asyncio.sleep(0.3)  # the client reads one piece, then nothing for a while
        unsent.append(writer.transport.get_write_buffer_size())
        await writer.drain()
        return True

    server = await raw_server(big)
    client = httpx2.AsyncClient(transport=LeanTransport())
    async with client, client.stream("GET", server.url) as streamed:
        pieces = streamed.aiter_raw()
        received = len(await anext(pieces))
        await asyncio.sleep(0.5)
        received += sum([len(piece) async for piece in pieces])

    assert received == len(body)
    assert unsent[0] > 8 * 1024 * 1024  # reading paused: most of it waited on the server's side


async def test_an_upload_of_unknown_length_goes_out_chunked(raw_server):
    received: list[bytes] = []

    async def reads_chunks(reader, writer, n) -> bool:
        received.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(response(b"ok"))
        return True

    async def upload() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    server = await raw_server(reads_chunks)
    async with httpx2.AsyncClient(transport=LeanTransport()) as client:
        answer = await client.post(server.url, content=upload())

    assert answer.content == b"ok"
    assert received == [b"b\r\nhello world\r\n0\r\n\r\n"]


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    pytest.importorskip("cryptography", reason="the cryptography package makes the certificate")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chat-gateway test")])
    now = datetime.now(UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_server(raw_server, certificate) -> RawServer:
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(*certificate)
    server_tls.set_alpn_protocols(["h2", "http/1.1"])
    return await raw_server(answers_hi_there, server_tls)


async def test_https_with_a_trusted_certificate(tls_server, certificate):
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    url = f"https://127.0.0.1:{tls_server.port}/v1/chat/completions"
    async with httpx2.AsyncClient(transport=LeanTransport(ssl_context=trusting)) as client:
        first = await client.post(url, json={})
        second = await client.post(url, json={})

    assert first.content == second.content == OPENAI_SSE
    assert tls_server.connections == 1  # kept alive over TLS too
    assert tls_server.alpn == ["http/1.1"]


async def test_https_refuses_an_unknown_certificate(tls_server):
    async with httpx2.AsyncClient(transport=LeanTransport()) as client:
        with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://127.0.0.1:{tls_server.port}/")


async def test_the_adapter_trusts_what_httpx2_trusts(
    tls_server, certificate, make_provider, monkeypatch, transports
):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # httpx2's default context reads it

    events = await collect(make_provider("openai", f"https://localhost:{tls_server.port}/v1"))

    assert isinstance(transports[0], LeanTransport)
    assert events == HI_THERE
