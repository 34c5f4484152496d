"""`python -m gateway` / `chat-gateway`: serve, keys create|list|revoke, config check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError
from redis.exceptions import RedisError

from gateway import __version__
from gateway.access import audit
from gateway.access.api_keys import ApiKeys, KeySpec
from gateway.access.auth import digest
from gateway.access.ids import Kind, first_problem
from gateway.access.principal import ROLES
from gateway.errors import GatewayError
from gateway.models.connections import open_vault
from gateway.models.provider_keys import rotate
from gateway.models.vault import VaultError
from gateway.settings import ConfigError, Settings, load_settings
from gateway.storage.embedded import (
    EmbeddedRedis,
    ServeRecord,
    announce,
    running_gateways,
    state_dir,
)
from gateway.storage.store import Store

T = TypeVar("T")


def _fail(message: str, code: int = 2) -> int:
    print(f"chat-gateway: {message}", file=sys.stderr)
    return code


def _warn(message: str) -> None:
    print(f"chat-gateway: warning: {message}", file=sys.stderr, flush=True)


def _shown(url: str) -> str:
    """A Redis URL fit to print: its password masked."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _http_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind_listeners(host: str, port: int, backlog: int = 2048) -> list[socket.socket]:
    """Bind and listen on every address `host` resolves to, as asyncio's create_server does,
    before anything else starts: a busy port then fails at once, and uvicorn (one worker or
    its multiprocess supervisor) serves on these sockets. listen() at once claims the port:
    Linux lets two SO_REUSEADDR sockets bind one port while neither listens."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[socket.socket] = []
    try:
        for family, type_, proto, _, address in dict.fromkeys(infos):
            if port == 0 and listeners:  # one port for every address
                address = (address[0], listeners[0].getsockname()[1], *address[2:])
            sock = socket.socket(family, type_, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(backlog)
            except OSError as exc:
                sock.close()
                # as asyncio does (bpo-30945): an address family the host has turned off
                if exc.errno == errno.EADDRNOTAVAIL and len(infos) > 1:
                    continue
                raise
            sock.set_inheritable(True)  # the multiprocess supervisor hands them to its workers
            listeners.append(sock)
        if not listeners:
            raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _running_here(data_dir: Path) -> ServeRecord | None:
    """The running `serve` whose embedded Redis keeps its data in `data_dir`."""
    for record in running_gateways(state_dir()):
        if Path(record.data_dir) == data_dir:
            return record
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(
            args.config, overrides={"host": args.host, "port": args.port, "workers": args.workers}
        )
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    try:
        listeners = bind_listeners(settings.host, settings.port)
    except OSError as exc:
        return _fail(f"cannot listen on {settings.host}:{settings.port}: {_reason(exc)}", 1)
    stack = contextlib.ExitStack()
    for sock in listeners:
        stack.callback(sock.close)
    try:
        return _serve(args, settings, listeners, stack)
    finally:
        stack.close()  # in reverse: the record, the embedded Redis, the sockets


def _serve(
    args: argparse.Namespace,
    settings: Settings,
    listeners: list[socket.socket],
    stack: contextlib.ExitStack,
) -> int:
    if args.config:
        os.environ["GATEWAY_CONFIG"] = str(Path(args.config).resolve())
    for line in settings.key_warnings():
        _warn(line)
    url = settings.redis_url
    if not url:
        embedded = EmbeddedRedis(settings.data_dir)
        if embedded.answers() or _running_here(embedded.data_dir):
            return _fail(f"another gateway's Redis is already running in {embedded.data_dir}")
        try:
            embedded.start()
        except RuntimeError as exc:
            return _fail(str(exc))
        stack.callback(_stop_embedded, embedded)
        url = os.environ["GATEWAY_REDIS_URL"] = embedded.url  # the workers read it
        print(f"chat-gateway: embedded Redis at {embedded.url} (data in {embedded.data_dir})")
        _record(stack, embedded, _http_address(listeners[0]))
    if not settings.admin_token and not _announce_admin_token(url, cluster=settings.redis_cluster):
        return 1
    models = ", ".join(f"{m.id} ({m.provider})" for m in settings.served_models)
    print(f"chat-gateway: models: {models}")
    print(f"chat-gateway: listening on {_http_address(listeners[0])}", flush=True)
    return _run_uvicorn(settings, listeners)


def _run_uvicorn(settings: Settings, listeners: list[socket.socket]) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from gateway.server import server_config

    config = server_config(
        "gateway.app:app_from_env",
        settings,
        factory=True,
        host=settings.host,
        port=listeners[0].getsockname()[1],
        workers=settings.workers,
        loop="uvloop",
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    # uvicorn drains on SIGINT/SIGTERM, then re-raises the signal to the handler it found:
    # ours turns that into a clean exit, so the embedded Redis is stopped too (the
    # multiprocess supervisor installs its own handlers and returns once its workers end)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_cleanly)
    try:
        if settings.workers > 1:
            Multiprocess(config, sockets=listeners).run()
            return 0
        server = uvicorn.Server(config)
        server.run(sockets=listeners)
    except KeyboardInterrupt:
        return 0
    return 0 if server.started else _fail("the gateway did not start (see above)", 3)


def _record(stack: contextlib.ExitStack, embedded: EmbeddedRedis, listen: str) -> None:
    """Tell `keys ...` run from other folders where this gateway's Redis is."""
    record = ServeRecord(
        pid=os.getpid(), redis_url=embedded.url, data_dir=str(embedded.data_dir), listen=listen
    )
    folder = state_dir()
    try:
        path = announce(record, folder)
    except OSError as exc:
        _warn(
            f"cannot record this gateway in {folder} ({_reason(exc)}): `keys` run from "
            f"another folder needs GATEWAY_DATA_DIR={embedded.data_dir}"
        )
        return
    stack.callback(_unlink, path)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _stop_embedded(embedded: EmbeddedRedis) -> None:
    embedded.stop()
    print("chat-gateway: embedded Redis stopped", flush=True)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _announce_admin_token(url: str, *, cluster: bool = False) -> bool:
    """Generate the admin token at first start, store only its hash, print it once."""
    token = "cgw_admin_" + secrets.token_urlsafe(32)
    try:
        created = asyncio.run(
            _with_store(
                url,
                lambda store: store.credentials.set_admin_token_digest(digest(token)),
                cluster=cluster,
            )
        )
    except RedisError as exc:
        _fail(f"cannot reach Redis at {url}: {exc}")
        return False
    if created:
        print("chat-gateway: admin token (printed once, only its hash is kept):")
        print(f"    {token}", flush=True)
    else:
        print(
            "chat-gateway: admin token: the one printed at first start (or set GATEWAY_ADMIN_TOKEN)"
        )
    return True


async def _with_store(
    url: str, action: Callable[[Store], Awaitable[T]], *, cluster: bool = False
) -> T:
    store = Store.connect(url, cluster=cluster)  # the workers' own factory
    try:
        return await action(store)
    finally:
        await store.aclose()


class NoRedis(Exception):
    """`keys` found no Redis it may use; str() says what to do. `empty`: nothing at all was
    found, so --create-data-dir would help."""

    def __init__(self, message: str, *, empty: bool = False) -> None:
        super().__init__(message)
        self.empty = empty


def locate_redis(
    settings: Settings, *, create: bool = False
) -> tuple[str, str, EmbeddedRedis | None]:
    """The Redis that `keys` should write to, why that one, and the embedded Redis to start
    for the command if it must. Never a new, empty embedded Redis unless `create`: a key
    minted there would be one the running gateway rejects."""
    if settings.redis_url:
        named = os.environ.get("GATEWAY_REDIS_URL")
        return (
            settings.redis_url,
            f"from {'GATEWAY_REDIS_URL' if named else 'the config file'}",
            None,
        )
    embedded = EmbeddedRedis(settings.data_dir)
    gateways = running_gateways(state_dir())
    for record in gateways:
        if Path(record.data_dir) == embedded.data_dir:
            return record.redis_url, _serving(record), None
    if embedded.answers():
        return embedded.url, f"the embedded Redis running in {embedded.data_dir}", None
    if "data_dir" not in settings.model_fields_set:  # no folder named: the running gateway's
        if len(gateways) == 1:
            return gateways[0].redis_url, _serving(gateways[0]), None
        if gateways:
            folders = ", ".join(g.data_dir for g in gateways)
            raise NoRedis(
                f"{len(gateways)} gateways are running (data in {folders}): "
                "set GATEWAY_DATA_DIR to the one you mean"
            )
    if embedded.has_data():
        return (
            embedded.url,
            f"started for this command on the data in {embedded.data_dir}",
            embedded,
        )
    if create:
        return embedded.url, f"a new embedded Redis in {embedded.data_dir}", embedded
    raise NoRedis(
        f"no running gateway found and no gateway data in {embedded.data_dir}: start "
        "`serve` first, or set GATEWAY_REDIS_URL or GATEWAY_DATA_DIR",
        empty=True,
    )


def _serving(record: ServeRecord) -> str:
    return f"the gateway serving {record.listen}, pid {record.pid}, data in {record.data_dir}"


def cmd_keys(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    creating = args.keys_cmd == "create"
    if creating:  # the ids a key would carry are refused now, not at its first use (401)
        ids: list[tuple[str, Kind, object]] = [
            ("--org", "org", args.org),
            ("--user", "user", args.user),
        ]
        ids += [("--workspace", "workspace", w) for w in args.workspace or []]
        problem = first_problem(ids)
        if problem is not None:
            return _fail(problem)
    try:
        url, why, to_start = locate_redis(settings, create=creating and args.create_data_dir)
    except NoRedis as exc:
        offer = creating and exc.empty
        hint = ", or pass --create-data-dir to start a new embedded Redis there" if offer else ""
        return _fail(f"{exc}{hint}", 1)
    print(f"chat-gateway: Redis: {_shown(url)} ({why})", file=sys.stderr, flush=True)
    if to_start is not None:
        try:
            to_start.start()
        except RuntimeError as exc:
            return _fail(str(exc), 1)
    try:
        return asyncio.run(
            _with_store(
                url, lambda store: _keys(args, store, settings), cluster=settings.redis_cluster
            )
        )
    except RedisError as exc:
        return _fail(f"cannot reach Redis at {_shown(url)}: {exc}", 1)
    finally:
        if to_start is not None:
            to_start.stop()


async def _keys(args: argparse.Namespace, store: Store, settings: Settings) -> int:
    """The admin API's own code (gateway/access/api_keys.py), as the operator: no role bound."""
    api_keys = ApiKeys(store)
    if args.keys_cmd == "rotate-kek":
        return await _rotate_kek(store, settings)
    if args.keys_cmd == "create":
        try:
            spec = KeySpec(
                org_id=args.org,
                user=args.user,
                role=args.role,
                workspaces=args.workspace or [],
                name=args.name,
                last_name=args.last_name,
                email=args.email,
            )
            record, key = await api_keys.create(spec, None, via="cli")
        except ValidationError as exc:
            return _fail(f"{'.'.join(map(str, exc.errors()[0]['loc']))}: {exc.errors()[0]['msg']}")
        except GatewayError as exc:
            return _fail(exc.message, 1)
        print(f"key id: {record['key_id']}")
        print(f"api key (printed once, only its hash is kept): {key}")
        return 0
    if args.keys_cmd == "list":
        for row in await api_keys.list(None):
            print(json.dumps(row))
        return 0
    found = await api_keys.get(args.key_id)
    if found is None or not await api_keys.revoke(found, None, via="cli"):
        return _fail(f"no key with id {args.key_id}", 1)
    print(f"revoked {args.key_id}")
    return 0


async def _rotate_kek(store: Store, settings: Settings) -> int:
    """Re-wrap every stored provider key with the first KEK of GATEWAY_ENCRYPTION_KEY (the
    others still open what they wrapped); gateways keep serving throughout."""
    if not settings.encryption_key:
        return _fail(
            "rotate-kek: set GATEWAY_ENCRYPTION_KEY (or encryption_key_file) to the new KEK, "
            'then the old one after it: GATEWAY_ENCRYPTION_KEY="<new>,<old>"'
        )
    try:
        vault = await open_vault(settings, store)
    except VaultError as exc:
        return _fail(f"rotate-kek: {exc}", 1)
    assert vault is not None
    totals, per_org = await rotate(store, vault)
    for org, count in per_org.items():
        event = audit.queued(
            org, audit.PROVIDER_KEYS_REWRAPPED, None, count=count, kek=vault.current, via="cli"
        )
        await store.events.append(*event)
    print(
        f"rotate-kek: {totals.rewrapped} keys re-wrapped with KEK {vault.current} in "
        f"{len(per_org)} of {totals.orgs} orgs; {totals.current} already were"
    )
    if totals.changed or totals.failed:
        return _fail(
            f"rotate-kek: {totals.changed} keys changed meanwhile and {totals.failed} did not "
            "open (see the log above): run it again once every gateway holds the new KEK",
            1,
        )
    print("rotate-kek: every provider key is under the new KEK; the old one may be removed")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    out = {
        "models": [m.model_dump(exclude_none=True) for m in settings.served_models],
        "repositories": [r.model_dump(exclude_none=True) for r in settings.repositories],
        "policies": list(settings.policies),
        "redis": _shown(settings.redis_url)
        if settings.redis_url
        else f"embedded ({settings.data_dir})",
        "jwt": {  # which keys are set, never the keys
            "hs256_secret": settings.jwt_secret is not None,
            "public_key": settings.jwt_public_key is not None,
            "audience": list(settings.jwt_audience),
            "issuer": settings.jwt_issuer,
            "require_exp": settings.jwt_require_exp,
        },
    }
    for line in settings.key_warnings():
        _warn(line)
    print(json.dumps(out, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chat-gateway", description=__doc__)
    parser.add_argument("--version", action="version", version=f"chat-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--config", default=None, help="TOML config file (or GATEWAY_CONFIG)")
    serve.add_argument("--workers", type=int, default=None)
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="API keys")
    keys.add_argument("--config", default=None)
    ksub = keys.add_subparsers(dest="keys_cmd", required=True)
    create = ksub.add_parser("create", help="mint a key (printed once)")
    create.add_argument("--org", required=True)
    create.add_argument("--user", required=True)
    create.add_argument("--role", required=True, choices=ROLES[1:])
    create.add_argument("--workspace", action="append", help="repeat for several")
    create.add_argument("--name")
    create.add_argument("--last-name", dest="last_name")
    create.add_argument("--email")
    create.add_argument(
        "--create-data-dir",
        action="store_true",
        help="when no running gateway and no gateway data are found, start a new embedded "
        "Redis in the data folder (GATEWAY_DATA_DIR, default ./.gateway) for this key",
    )
    ksub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = ksub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    ksub.add_parser(
        "rotate-kek",
        help="re-wrap every stored provider key with the first KEK of GATEWAY_ENCRYPTION_KEY",
    )
    keys.set_defaults(func=cmd_keys)

    config = sub.add_parser("config", help="configuration")
    csub = config.add_subparsers(dest="config_cmd", required=True)
    check = csub.add_parser("check", help="validate and print the resolved configuration")
    check.add_argument("--config", default=None)
    check.set_defaults(func=cmd_config_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
