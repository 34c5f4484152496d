"""The open internet at the gateway's edge, below HTTP, over raw sockets: a huge head, too many
headers, a head or a body sent a byte at a time, more connections than the gateway may hold.
Each is refused with a contract-shaped answer and its connection closed, and nothing of it
reaches the app or Redis; well-formed requests (pipelined, with big bodies) still pass."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.settings import load_settings
from gateway.storage import keys
from tests.gateway_fixtures import ORG
from tests.support import ADMIN_TOKEN
from tests.test_cli import Serve

MiB = 1 << 20


def address(base_url: object) -> tuple[str, int]:
    parts = urlsplit(str(base_url))
    return parts.hostname or "127.0.0.1", parts.port or 80


@contextlib.asynccontextmanager
async def connection(
    where: tuple[str, int],
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(*where)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def answer(reader: asyncio.StreamReader, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Status, JSON body and everything read until the gateway closed the connection."""
    raw = await asyncio.wait_for(reader.read(), timeout)  # read() ends only at EOF
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    first = json.JSONDecoder().raw_decode(body.decode())[0] if body.startswith(b"{") else {}
    return status, first, raw


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def push_huge_header(where: tuple[str, int], size: int) -> tuple[int, dict, int]:
    """One header of `size` bytes, a MiB per write, until the gateway answers or closes."""
    sent = 0
    async with connection(where) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: ")
        chunk = b"a" * MiB
        try:
            while sent < size:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            writer.write(b"\r\n\r\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the gateway closed on us: what it answered is what counts
        try:
            status, body, _ = await answer(reader)
        except (ConnectionError, OSError):
            status, body = 0, {}
    return status, body, sent


@pytest.mark.serial  # a refused head's answer is read for its 1 s linger
async def test_huge_headers_are_431_and_eight_of_32_mib_do_not_grow_memory(gateway_server):
    where = address(gateway_server.url)
    before = rss_bytes()
    results = await asyncio.gather(*(push_huge_header(where, 32 * MiB) for _ in range(8)))
    grown = rss_bytes() - before
    for status, body, _ in results:
        assert status == 431, results
        assert body["code"] == "headers_too_large" and body["success"] is False
        assert "32768 bytes" in body["message"]
    assert grown < 64 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"  # before: +318 MiB


async def test_a_head_just_under_the_limit_and_a_big_body_still_pass(client, redis):
    where = address(client.http.base_url)
    async with connection(where) as (reader, writer):
        filler = "a" * (30 * 1024)
        head = f"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Filler: {filler}\r\nConnection: close\r\n"
        writer.write(head.encode() + b"\r\n")
        status, body, _ = await answer(reader)
    assert (status, body) == (200, {"status": "ok"})

    # a 900 KiB body arrives in reads far bigger than the head limit: only the head counts,
    # and the app reads the whole body (its title is refused for its length, not cut)
    payload = json.dumps({"title": "t" * (900 * 1024)}).encode()
    async with connection(where) as (reader, writer):
        writer.write(
            f"POST /api/conversation/create?org_id={ORG} HTTP/1.1\r\nHost: gw\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        status, body, _ = await answer(reader)
    assert (status, body["code"]) == (400, "validation_error"), body
    assert body["message"].startswith("title:")
    assert await redis.keys(keys.CONVERSATION_KEYS) == []


async def test_pipelined_requests_in_one_write_are_all_answered(gateway_server):
    async with connection(address(gateway_server.url)) as (reader, writer):
        writer.write(
            b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n" * 3 + b"GET /healthz HTTP/1.1\r\n"
        )
        writer.write(b"Host: gw\r\nConnection: close\r\n\r\n")
        _, _, raw = await answer(reader)
    assert raw.count(b"HTTP/1.1 200 OK") == 4


@pytest.mark.parametrize("count, status", [(100, 200), (101, 431)])
async def test_a_request_with_too_many_headers_is_431(gateway_server, count, status):
    # Host and Connection count too: 98 (or 99) more make 100 (or 101)
    extra = "".join(f"X-H{i}: v\r\n" for i in range(count - 2))
    async with connection(address(gateway_server.url)) as (reader, writer):
        writer.write(
            f"GET /healthz HTTP/1.1\r\nHost: gw\r\n{extra}Connection: close\r\n\r\n".encode()
        )
        got, body, _ = await answer(reader)
    assert got == status
    if status == 431:
        assert body["code"] == "headers_too_large" and "100 headers" in body["message"]


async def drip(
    where: tuple[str, int], head: bytes, every: float, seconds: float
) -> tuple[int, dict, float]:
    """Send `head`, then one byte every `every` s for at most `seconds`: what the gateway
    answers and when it closed the connection (seconds after the first byte)."""
    started = time.monotonic()
    async with connection(where) as (reader, writer):
        writer.write(head)
        closed = asyncio.ensure_future(answer(reader, timeout=seconds + 10))
        while not closed.done() and time.monotonic() - started < seconds:
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(b"X")
            await asyncio.wait([closed], timeout=every)
        status, body, _ = await closed
    return status, body, time.monotonic() - started


@pytest.mark.serial  # timeouts of 1 to 4 s, observed
async def test_slowloris_heads_a_byte_at_a_time_are_closed_at_the_header_timeout(gateway_factory):
    """The issue's attack: 300 connections of one address sending a head byte by byte. 256
    may wait for their heads (http_max_pending_per_client), the rest are refused at once,
    and every one is closed at the header timeout; another address is served meanwhile."""
    async with gateway_factory(env={"GATEWAY_HTTP_HEADER_TIMEOUT": "1.5"}) as gw:
        where = address(gw.http.base_url)
        head = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: "
        attack = asyncio.gather(*(drip(where, head, 0.25, 8) for _ in range(300)))
        await asyncio.sleep(0.5)
        other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")  # another client address
        async with httpx.AsyncClient(base_url=gw.http.base_url, transport=other) as neighbour:
            assert (await neighbour.get("/healthz")).status_code == 200
        ended = await attack
        timed_out = [after for status, body, after in ended if status == 408]
        refused = [after for status, body, after in ended if status == 503]
        assert len(timed_out) + len(refused) == 300, [s for s, _, _ in ended]
        assert len(timed_out) >= 256 and len(refused) <= 44
        assert all(1.4 < after < 4.0 for after in timed_out), timed_out  # never the 8 s
        assert all(after < 1.4 for after in refused), refused  # before any timeout could
        assert all(
            body["code"] in ("request_timeout", "too_many_connections") for _, body, _ in ended
        )


@pytest.mark.serial  # timeouts of 1 to 4 s, observed
async def test_a_second_head_on_a_kept_alive_connection_is_timed_too(gateway_factory):
    async with gateway_factory(env={"GATEWAY_HTTP_HEADER_TIMEOUT": "1.5"}) as gw:
        async with connection(address(gw.http.base_url)) as (reader, writer):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            assert (await reader.readuntil(b'{"status":"ok"}')).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
            closed = asyncio.ensure_future(answer(reader))
            while not closed.done():  # a byte every 0.25 s: uvicorn's keep-alive timer is off
                await asyncio.wait([closed], timeout=0.25)
                with contextlib.suppress(ConnectionError, OSError):
                    writer.write(b"X")
            status, body, _ = await closed
        assert status == 408 and body["code"] == "request_timeout"
        assert time.monotonic() - started < 4


@pytest.mark.serial  # timeouts of 1 to 4 s, observed
async def test_a_connection_that_never_speaks_is_closed_at_the_header_timeout(gateway_factory):
    async with gateway_factory(env={"GATEWAY_HTTP_HEADER_TIMEOUT": "1"}) as gw:
        started = time.monotonic()
        async with connection(address(gw.http.base_url)) as (reader, _):
            status, body, _ = await answer(reader)
        assert status == 408 and body["code"] == "request_timeout"
        assert time.monotonic() - started < 4


@pytest.mark.serial  # timeouts of 1 to 4 s, observed
async def test_a_body_sent_a_byte_per_second_is_cut_at_the_body_timeout(gateway_factory, redis):
    async with gateway_factory(env={"GATEWAY_HTTP_BODY_TIMEOUT": "1.5"}) as gw:
        head = (
            f"POST /api/conversation/create?org_id={ORG} HTTP/1.1\r\nHost: gw\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
            "Content-Length: 400\r\n\r\n"
        ).encode()
        status, body, after = await drip(address(gw.http.base_url), head + b'{"title": "', 0.3, 8)
        assert status == 408 and body["code"] == "request_timeout"
        assert "body" in body["message"] and 1.4 < after < 4.0, after
        assert await redis.keys(keys.CONVERSATION_KEYS) == []  # nothing was created


async def test_connections_beyond_the_bound_are_refused_with_503(gateway_factory):
    async with gateway_factory(env={"GATEWAY_HTTP_MAX_CONNECTIONS": "12"}) as gw:
        where = address(gw.http.base_url)
        r = await gw.http.get("/healthz")  # httpx keeps this connection open: one of 12
        assert r.status_code == 200
        held = [await asyncio.open_connection(*where) for _ in range(11)]
        try:
            async with connection(where) as (reader, _):
                status, body, _ = await answer(reader)
            assert status == 503 and body["code"] == "too_many_connections"
            held.pop()[1].close()
            await asyncio.sleep(0.3)
            async with connection(where) as (reader, writer):  # room again
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
                assert (await answer(reader))[0] == 200
        finally:
            for _, writer in held:
                writer.close()


async def test_one_address_may_hold_only_so_many_unfinished_heads(gateway_factory):
    async with gateway_factory(env={"GATEWAY_HTTP_MAX_PENDING_PER_CLIENT": "5"}) as gw:
        where = address(gw.http.base_url)
        silent = [await asyncio.open_connection(*where) for _ in range(5)]
        try:
            async with connection(where) as (reader, _):
                status, body, _ = await answer(reader)
            assert status == 503 and body["code"] == "too_many_connections"
            # a connection whose head has arrived no longer counts, even while it stays open
            reader0, writer0 = silent[0]
            writer0.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            assert (await reader0.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            async with connection(where) as (reader, writer):
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
                assert (await answer(reader))[0] == 200
        finally:
            for _, writer in silent:
                writer.close()


def test_the_edge_defaults_are_the_documented_ones():
    s = load_settings(env={"GATEWAY_REDIS_URL": "redis://x"})
    assert (
        s.http_max_header_bytes,
        s.http_max_headers,
        s.http_header_timeout,
        s.http_body_timeout,
        s.http_max_connections,
        s.http_max_pending_per_client,
        s.trusted_proxies,
    ) == (32_768, 100, 10.0, 30.0, 10_000, 256, ())
    documented = (Path(__file__).parents[1] / "SECURITY.md").read_text()
    for line in (
        "| request line and headers, together | 32 KiB | `http_max_header_bytes`",
        "| headers in one request | 100 headers | `http_max_headers`",
        "its head | 10 s | `http_header_timeout`",
        "the body's last byte | 30 s | `http_body_timeout`",
        "| open connections | 10,000 per worker | `http_max_connections`",
        "first head | 256 per worker | `http_max_pending_per_client`",
    ):
        assert line in documented, line


def test_serve_refuses_a_huge_header_with_every_worker(tmp_path):
    """The real `serve` (uvloop, and the multiprocess supervisor with --workers 2)."""
    with Serve(tmp_path / "data", "--workers", "2", GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN) as gw:
        where = ("127.0.0.1", gw.port)
        for _ in range(4):  # connections land on either worker
            status, body, _ = asyncio.run(push_huge_header(where, 4 * MiB))
            assert status == 431 and body["code"] == "headers_too_large"
