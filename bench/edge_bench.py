"""What the edge's checks cost on the hot path, each beside what it replaced, in CPU time of
this process (process_time: not disturbed by other processes; best of --rounds rounds).

    python bench/edge_bench.py [--rounds 5]      # about 30 seconds; prints four tables

1. the HTTP protocol: uvicorn's httptools protocol vs EdgeProtocol, per keep-alive request
   (a whole head in one read, a tiny ASGI app answering at once), and per new connection;
2. a JSON body read (count of values, parse, tree walk) before and after the bound, for
   the bodies clients send and for the shapes of the 90,000-key attack;
3. authentication: a cached API key and a JWT (HS256, RS256), before and after (the
   throttle's test, the JWT rules, the key loaded once instead of its PEM on every call);
4. the throttle alone: an address that never failed, and one that is throttled.
Figures only, no asserts: they depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jwt  # noqa: E402
import uvicorn  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402

from gateway.access.auth import Authenticator, digest  # noqa: E402
from gateway.access.jwts import JwtVerifier  # noqa: E402
from gateway.access.principal import Principal  # noqa: E402
from gateway.access.throttle import FailureThrottle  # noqa: E402
from gateway.api import inputs  # noqa: E402
from gateway.server import server_config  # noqa: E402
from gateway.settings import load_settings  # noqa: E402

SETTINGS = load_settings(env={"GATEWAY_REDIS_URL": "redis://127.0.0.1:1"})


def best_us(fn: Callable[[], object], n: int, rounds: int) -> float:
    for _ in range(min(n, 50)):
        fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t0) / n * 1e6)
    return best


# -- 1. the protocol -----------------------------------------------------------------------


class Transport:
    """Enough of an asyncio transport for a protocol to answer into."""

    def __init__(self) -> None:
        self.out = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: bytes) -> None:
        self.out += len(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None: ...
    def set_protocol(self, protocol: Any) -> None: ...


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


REQUEST = (
    b"POST /api/conversation/stream_chat?org_id=acme HTTP/1.1\r\nHost: gw\r\n"
    b"Authorization: Bearer cgw_0123456789ab_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\r\n"
    b"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: 2\r\n"
    b"User-Agent: bench\r\n\r\n{}"
)


async def protocol_costs(rounds: int) -> list[tuple[str, float, float]]:
    """Rounds alternate between the two protocols, so both see the same machine."""
    loop = asyncio.get_running_loop()
    quiet: dict[str, Any] = {"lifespan": "off", "access_log": False, "log_level": "warning"}
    plain = uvicorn.Config(app, http=HttpToolsProtocol, proxy_headers=False, **quiet)
    edge = server_config(app, SETTINGS, **quiet)
    for config in (plain, edge):
        config.load()

    def opened(config: uvicorn.Config, state: ServerState) -> Any:
        cls: Any = config.http_protocol_class
        proto = cls(config=config, server_state=state, app_state={}, _loop=loop)
        proto.connection_made(Transport())
        return proto

    async def requests(config: uvicorn.Config, n: int) -> float:
        proto = opened(config, ServerState())
        t0 = time.process_time()
        for _ in range(n):
            proto.data_received(REQUEST)
            await asyncio.sleep(0)  # the app's task answers
            await asyncio.sleep(0)
        return (time.process_time() - t0) / n * 1e6

    async def connections(config: uvicorn.Config, n: int) -> float:
        state = ServerState()
        t0 = time.process_time()
        for _ in range(n):
            proto = opened(config, state)
            proto.data_received(REQUEST)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            proto.connection_lost(None)
        return (time.process_time() - t0) / n * 1e6

    rows = []
    for name, measure in (
        ("per keep-alive request", requests),
        ("per new connection", connections),
    ):
        await measure(plain, 500)
        await measure(edge, 500)
        best = [float("inf"), float("inf")]
        for _ in range(rounds):
            for i, config in enumerate((plain, edge)):
                best[i] = min(best[i], await measure(config, 3000))
        rows.append((name, best[0], best[1]))
    return rows


# -- 2. JSON bodies ------------------------------------------------------------------------


def read_before(raw: bytearray) -> None:
    """main's read_json after the size check: decode, parse with the hooks, walk."""
    data = json.loads(
        raw.decode(),
        object_pairs_hook=inputs._object,
        parse_int=inputs._parse_int,
        parse_float=inputs._parse_float,
        parse_constant=inputs._parse_constant,
    )
    inputs._check_tree(data)


def read_after(raw: bytearray) -> None:
    try:
        inputs._count_values(raw)
    except inputs.PayloadTooLarge:
        return
    data = json.loads(
        raw.decode(),
        object_pairs_hook=inputs._object,
        parse_int=inputs._parse_int,
        parse_float=inputs._parse_float,
        parse_constant=inputs._parse_constant,
    )
    inputs._check_tree(data, strings=b"\\u" in raw or b"\x7f" in raw)


BODIES = {
    "stream_chat, 60-char message": {"chat_session_id": "9b8c7d6e-" * 4, "message": "x" * 60},
    "stream_chat, 200,000-char prompt": {"chat_session_id": "9b8c", "message": "word " * 40_000},
    "/v1 chat, 3,990 short messages": {
        "model": "gpt",
        "messages": [{"role": "user", "content": "hi there"}] * 3_990,
    },
    "prompt of CSV, 70k , and :": {"message": ('a,b,c,"d":{"e":[1,2]}, ' * 8_000)[:190_000]},
}
ATTACKS = {
    "attack: 90,000 keys (~1 MiB)": "{" + ",".join(f'"k{i}":1' for i in range(90_000)) + "}",
    "attack: 300,000 numbers": "[" + ",".join(["1"] * 300_000) + "]",
    "attack: 300,000 empty arrays": "[" + ",".join(["[]"] * 300_000) + "]",
}


def json_costs(rounds: int) -> list[tuple[str, float, float]]:
    rows = []
    for name, body in {**{k: json.dumps(v) for k, v in BODIES.items()}, **ATTACKS}.items():
        raw = bytearray(body.encode())
        n = max(3, min(20_000, 2_000_000 // len(raw)))

        def before(raw: bytearray = raw) -> None:
            try:
                read_before(raw)
            except Exception:  # noqa: BLE001 - a refusal is a result too
                pass

        rows.append(
            (
                f"{name} ({len(raw) // 1024} KiB)",
                best_us(before, n, rounds),
                best_us(lambda raw=raw: read_after(raw), n, rounds),
            )
        )
    return rows


# -- 3. authentication ---------------------------------------------------------------------


class Credentials:
    async def api_key(self, d: str) -> None:
        return None


class Store:
    credentials = Credentials()


async def auth_costs(rounds: int) -> list[tuple[str, float, float]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    secret = "bench-secret-of-at-least-thirty-two-bytes!"
    env = {"GATEWAY_REDIS_URL": "redis://127.0.0.1:1", "GATEWAY_JWT_SECRET": secret}
    settings = load_settings(env={**env, "GATEWAY_JWT_PUBLIC_KEY": pem})
    auth = Authenticator(settings, Store())  # type: ignore[arg-type]
    verifier = JwtVerifier(settings)
    claims = {
        "sub": "alice",
        "org_id": "acme",
        "role": "user",
        "workspaces": ["ws-1"],
        "exp": int(time.time()) + 3600,
    }
    hs = jwt.encode(claims, secret, algorithm="HS256")
    rs = jwt.encode(claims, private, algorithm="RS256")
    key = "cgw_0123456789ab_" + "k" * 43
    auth._hearing_revocations = True
    auth._keys[digest(key)] = (Principal("kim", "user", org_id="acme"), time.monotonic() + 3600)

    def as_main_did(token: str, key: object) -> None:
        """main's _from_jwt: the header read, then decode with the PEM string itself."""
        alg = str(jwt.get_unverified_header(token).get("alg"))
        jwt.decode(token, key, algorithms=[alg], options={"require": ["sub"]})

    rows = []
    for name, token, old in (("HS256", hs, secret), ("RS256", rs, pem)):
        rows.append(
            (
                f"JWT {name}: verify (main's decode vs JwtVerifier.claims)",
                best_us(lambda t=token, k=old: as_main_did(t, k), 2000, rounds),
                best_us(lambda t=token: verifier.claims(t), 2000, rounds),
            )
        )
    for name, token in (("HS256", hs), ("RS256", rs)):
        whole = await _async_us(lambda t=token: auth.principal_for(t, client="192.0.2.1"), rounds)
        rows.append((f"JWT {name}: the whole principal_for, after", 0.0, whole))
    before_key = await _async_us(lambda: auth.principal_for(key, client=None), rounds)
    after_key = await _async_us(lambda: auth.principal_for(key, client="192.0.2.1"), rounds)
    rows.append(("cached API key: no address vs with the throttle", before_key, after_key))
    return rows


async def _async_us(fn: Callable[[], Any], rounds: int, n: int = 2000) -> float:
    for _ in range(50):
        await fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n):
            await fn()
        best = min(best, (time.process_time() - t0) / n * 1e6)
    return best


def throttle_costs(rounds: int) -> list[tuple[str, float, float]]:
    quiet = FailureThrottle(30)
    busy = FailureThrottle(30)
    for i in range(5000):
        busy.failed(f"10.0.{i >> 8}.{i & 255}")
    for _ in range(40):
        busy.failed("192.0.2.1")
    return [
        (
            "retry_after, nobody failed lately",
            0.0,
            best_us(lambda: quiet.retry_after("192.0.2.9"), 200_000, rounds),
        ),
        (
            "retry_after, 5,000 addresses failed, this one not",
            0.0,
            best_us(lambda: busy.retry_after("192.0.2.9"), 200_000, rounds),
        ),
        (
            "retry_after, this one throttled",
            0.0,
            best_us(lambda: busy.retry_after("192.0.2.1"), 200_000, rounds),
        ),
    ]


def table(title: str, rows: list[tuple[str, float, float]], labels: tuple[str, str]) -> None:
    print(f"\n{title}")
    width = max(len(r[0]) for r in rows)
    print(f"  {'':{width}}  {labels[0]:>12}  {labels[1]:>12}  {'delta':>10}")
    for name, before, after in rows:
        b = f"{before:10.2f} us" if before else f"{'-':>13}"
        print(f"  {name:{width}}  {b}  {after:10.2f} us  {after - before:+9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    print(f"CPU per operation, best of {rounds} rounds (process time)")
    import uvloop

    labels = ("uvicorn", "EdgeProtocol")
    table("1. HTTP protocol, asyncio loop", asyncio.run(protocol_costs(rounds)), labels)
    table("1. HTTP protocol, uvloop (serve)", uvloop.run(protocol_costs(rounds)), labels)
    table("2. JSON body read", json_costs(rounds), ("before", "after"))
    table("3. authentication", asyncio.run(auth_costs(rounds)), ("before", "after"))
    table("4. the throttle", throttle_costs(rounds), ("", "after"))


if __name__ == "__main__":
    main()
