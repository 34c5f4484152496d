"""`python -m gateway` / `chat-gateway`: serve, keys create|list|revoke, config check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from redis.exceptions import RedisError

from gateway import __version__
from gateway.access import audit
from gateway.access.auth import digest, new_api_key
from gateway.access.principal import ROLES
from gateway.storage.embedded import EmbeddedRedis
from gateway.settings import ConfigError, Settings, load_settings
from gateway.storage.records import now_ms
from gateway.storage.store import Store

T = TypeVar("T")


def _fail(message: str, code: int = 2) -> int:
    print(f"chat-gateway: {message}", file=sys.stderr)
    return code


def _embedded_socket(settings: Settings) -> EmbeddedRedis:
    return EmbeddedRedis(settings.data_dir)


@contextlib.contextmanager
def redis_url_for_cli(settings: Settings) -> Iterator[str]:
    """The configured Redis; else the embedded one a running `serve` owns; else start the
    embedded one just for this command."""
    if settings.redis_url:
        yield settings.redis_url
        return
    embedded = _embedded_socket(settings)
    if embedded._ping():
        yield embedded.url
        return
    with embedded:
        yield embedded.url


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        settings = load_settings(
            args.config, overrides={"host": args.host, "port": args.port, "workers": args.workers}
        )
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    if args.config:
        os.environ["GATEWAY_CONFIG"] = str(Path(args.config).resolve())
    embedded: EmbeddedRedis | None = None
    if not settings.redis_url:
        embedded = _embedded_socket(settings)
        if embedded._ping():
            return _fail(f"another gateway's Redis is already running in {embedded.data_dir}")
        try:
            embedded.start()
        except RuntimeError as exc:
            return _fail(str(exc))
        os.environ["GATEWAY_REDIS_URL"] = embedded.url  # the workers read it
        print(f"chat-gateway: embedded Redis at {embedded.url} (data in {embedded.data_dir})")
    try:
        url = settings.redis_url or (embedded.url if embedded else "")
        if not settings.admin_token and not _announce_admin_token(url, cluster=settings.redis_cluster):
            return 1
        models = ", ".join(f"{m.id} ({m.provider})" for m in settings.served_models)
        print(f"chat-gateway: models: {models}")
        print(f"chat-gateway: listening on http://{settings.host}:{settings.port}", flush=True)
        # uvicorn drains on SIGINT/SIGTERM, then re-raises the signal to the handler it found:
        # ours turns that into a clean exit, so the embedded Redis below is stopped too
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_cleanly)
        uvicorn.run(
            "gateway.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            http="httptools",
            log_level=settings.log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
    finally:
        if embedded is not None:
            embedded.stop()
            print("chat-gateway: embedded Redis stopped")
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _announce_admin_token(url: str, *, cluster: bool = False) -> bool:
    """Generate the admin token at first start, store only its hash, print it once."""
    token = "cgw_admin_" + secrets.token_urlsafe(32)
    try:
        created = asyncio.run(_with_store(
            url, lambda store: store.credentials.set_admin_token_digest(digest(token)), cluster=cluster))
    except RedisError as exc:
        _fail(f"cannot reach Redis at {url}: {exc}")
        return False
    if created:
        print("chat-gateway: admin token (printed once, only its hash is kept):")
        print(f"    {token}", flush=True)
    else:
        print("chat-gateway: admin token: the one printed at first start (or set GATEWAY_ADMIN_TOKEN)")
    return True


async def _with_store(url: str, action: Callable[[Store], Awaitable[T]], *, cluster: bool = False) -> T:
    store = Store.connect(url, cluster=cluster)  # the workers' own factory
    try:
        return await action(store)
    finally:
        await store.aclose()


def cmd_keys(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    with redis_url_for_cli(settings) as url:
        return asyncio.run(_with_store(url, lambda store: _keys(args, store), cluster=settings.redis_cluster))


async def _keys(args: argparse.Namespace, store: Store) -> int:
    if args.keys_cmd == "create":
        key_id, key = new_api_key()
        await store.credentials.save_api_key(digest(key), {
            "key_id": key_id, "org_id": args.org, "user_id": args.user, "role": args.role,
            "workspaces": args.workspace or [], "name": args.name, "family_name": args.last_name,
            "email": args.email, "created_at": now_ms(),
        })
        await _audit_key(store, audit.KEY_CREATED, args.org, key_id, args.user, args.role)
        print(f"key id: {key_id}")
        print(f"api key (printed once, only its hash is kept): {key}")
        return 0
    if args.keys_cmd == "list":
        for row in await store.credentials.api_keys():
            print(json.dumps(row))
        return 0
    record = await store.credentials.api_key_record(args.key_id)
    if not await store.credentials.revoke_api_key(args.key_id):
        return _fail(f"no key with id {args.key_id}", 1)
    if record is not None:
        await _audit_key(
            store, audit.KEY_REVOKED, record["org_id"], args.key_id, record["user_id"], record["role"]
        )
    print(f"revoked {args.key_id}")
    return 0


async def _audit_key(store: Store, type_: str, org: str, key_id: str, user: str, role: str) -> None:
    fields = audit.fields_of(type_, None, key_id=key_id, user_id=user, role=role, via="cli")
    await store.events.append(org, fields, audit.DEFAULT_MAXLEN)


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    out = {
        "models": [m.model_dump(exclude_none=True) for m in settings.served_models],
        "repositories": [r.model_dump(exclude_none=True) for r in settings.repositories],
        "policies": list(settings.policies),
        "redis": settings.redis_url or f"embedded ({settings.data_dir})",
    }
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
    ksub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = ksub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)

    config = sub.add_parser("config", help="configuration")
    csub = config.add_subparsers(dest="config_cmd", required=True)
    check = csub.add_parser("check", help="validate and print the resolved configuration")
    check.add_argument("--config", default=None)
    check.set_defaults(func=cmd_config_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
