"""The rows of the side-by-side table: what each one starts (pinned to the gateway core) and the
request it is sent. Every row streams the same 50-token OpenAI-format answer from the same fake
upstream; only the conversation route answers in our own SSE events."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.harness import HOST, ORG, cpu_seconds
from bench.loadgen import GATEWAY, OPENAI, http_request
from bench.peers.cache import Cache
from bench.peers.servers import PeerEnv, PeerProcess, start_litellm, start_portkey
from bench.scenarios import PROMPT, SessionPool, Target, direct_target

TOKENS = 50  # content tokens per stream, unless --tokens says otherwise


def model_ids(tokens: int) -> tuple[str, str]:
    """Our gateway's model id for streams of `tokens` (provider openai) and the upstream
    model the fake upstream reads the stream's shape from."""
    return f"openai-{tokens}", f"bench/tokens={tokens}"


@dataclass
class Context:
    """What every row may use: the run's processes, the cache, and how much to prepare."""

    env: PeerEnv
    cache: Cache
    sessions: int = 2000  # conversations made for the conversation route
    turns: int = 5  # prompts per conversation before a client takes a fresh one
    commit: str = ""  # the measured tree's, for the rows' version column
    tokens: int = TOKENS  # every row's stream carries this many content tokens

    @property
    def model(self) -> str:
        return model_ids(self.tokens)[0]

    @property
    def upstream_model(self) -> str:
        return model_ids(self.tokens)[1]


@dataclass
class Running:
    """A started row: where its load goes, how its CPU time is read, how it is stopped."""

    target: Target
    cpu: Callable[[], float]
    stop: Callable[[], None]
    pid: int
    command: str
    version: str
    notes: list[str] = field(default_factory=list)
    pool: SessionPool | None = None  # the conversations a row prompts, if it does


@dataclass(frozen=True)
class Row:
    id: str
    label: str
    start: Callable[[Context], Awaitable[Running]]
    ours: bool = False
    peer: str = ""  # the cache install it needs, done before anything is measured


def openai_request(
    port: int, path: str, model: str, *, token: str | None, headers: dict[str, str] | None = None
) -> bytes:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return http_request(
        "POST",
        path,
        host=f"{HOST}:{port}",
        body=body,
        token=token,
        headers={"Accept": "text/event-stream", **(headers or {})},
    )


def fixed(name: str, port: int, raw: bytes) -> Target:
    return Target(name, port, OPENAI, lambda state: raw)


# -- direct ---------------------------------------------------------------------------------


async def start_direct(ctx: Context) -> Running:
    up = ctx.env.upstream
    assert up is not None
    return Running(
        direct_target(ctx.env, ctx.model),
        cpu=lambda: cpu_seconds(up.pid),
        stop=lambda: None,
        pid=up.pid,
        command="python -m bench.upstream (shares the harness core)",
        version="bench/upstream.py",
        notes=["CPU per stream: the fake upstream's own"],
    )


# -- us -------------------------------------------------------------------------------------


def _gateway_version(ctx: Context) -> str:
    return f"chat-gateway {version('chat-gateway')}" + (f" @ {ctx.commit}" if ctx.commit else "")


async def _our_gateway(ctx: Context) -> tuple[Any, str]:
    env = ctx.env
    gw = env.start_gateway(workers=1, cpus=env.gateway_cpus)
    return gw, " ".join(env.command(gw.port, 1, env.gateway_cpus))


async def start_conversation(ctx: Context) -> Running:
    """POST /api/conversation/stream_chat with a JWT: history read, the default policies, the
    turn recorded in Redis. Each client keeps a conversation for `turns` prompts."""
    env = ctx.env
    gw, command = await _our_gateway(ctx)
    # fresh conversations for every start: each measurement loads the same short histories
    pool = SessionPool(await env.sessions(ctx.model, ctx.sessions), ctx.turns)
    token, host = env.jwt(), f"{HOST}:{gw.port}"
    path = f"/api/conversation/stream_chat?org_id={ORG}"

    def make(state: dict[str, Any]) -> bytes:
        if state.get("left", 0) <= 0:
            state["sid"], state["left"] = pool.take(), pool.turns
        state["left"] -= 1
        return http_request(
            "POST",
            path,
            host=host,
            token=token,
            body={"chat_session_id": state["sid"], "message": PROMPT},
            headers={"Accept": "text/event-stream"},
        )

    notes = [
        (
            f"JWT (HS256) bearer; {ctx.turns} prompts per conversation, "
            f"{len(pool.ids)} conversations; {env.policies_note}"
        )
    ]
    return Running(
        Target("conversation", gw.port, GATEWAY, make),
        cpu=gw.cpu,
        stop=env.stop_gateway,
        pid=gw.process.pid,
        command=command,
        version=_gateway_version(ctx),
        notes=notes,
        pool=pool,
    )


async def start_openai_compat(ctx: Context) -> Running:
    """POST /v1/chat/completions with an API key: the default policies, usage counters per
    org, model, user and key; no conversation stored."""
    env = ctx.env
    gw, command = await _our_gateway(ctx)
    raw = openai_request(gw.port, "/v1/chat/completions", ctx.model, token=env.api_key)
    return Running(
        fixed("openai-compat", gw.port, raw),
        cpu=gw.cpu,
        stop=env.stop_gateway,
        pid=gw.process.pid,
        command=command,
        version=_gateway_version(ctx),
        notes=[f"API key bearer; {env.policies_note}"],
    )


# -- the peers ------------------------------------------------------------------------------


def _package_version(path: Path) -> str:
    try:
        return str(json.loads(path.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "?"


def node_version() -> str:
    return subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()


def _running(peer: PeerProcess, target: Target, version_text: str, notes: list[str]) -> Running:
    return Running(
        target,
        cpu=peer.cpu,
        stop=peer.stop,
        pid=peer.process.pid,
        command=" ".join(peer.command),
        version=version_text,
        notes=notes,
    )


async def start_portkey_row(ctx: Context) -> Running:
    env = ctx.env
    peer = start_portkey(env, ctx.cache)
    modules = ctx.cache.root / "portkey" / "node_modules"
    text = (
        f"@portkey-ai/gateway {_package_version(modules / '@portkey-ai/gateway/package.json')}"
        f", @hono/node-server {_package_version(modules / '@hono/node-server/package.json')}"
        f", node {node_version()}"
    )
    raw = openai_request(
        peer.port,
        "/v1/chat/completions",
        ctx.upstream_model,
        token="sk-bench",
        headers={"x-portkey-provider": "openai", "x-portkey-custom-host": f"{env.upstream_url}/v1"},
    )
    return _running(
        peer,
        fixed("portkey", peer.port, raw),
        text,
        [
            (
                "headers x-portkey-provider: openai, x-portkey-custom-host: the "
                "upstream; no policies, no storage"
            )
        ],
    )


async def start_litellm_row(ctx: Context) -> Running:
    env = ctx.env
    master_key = "sk-" + secrets.token_hex(32)
    peer = start_litellm(env, ctx.cache, master_key, ctx.tokens)
    site = sorted((ctx.cache.root / "litellm" / "lib").glob("python*/site-packages"))
    found = sorted(site[0].glob("litellm-*.dist-info")) if site else []
    text = found[0].name.removesuffix(".dist-info").replace("-", " ") if found else "litellm ?"
    raw = openai_request(peer.port, "/v1/chat/completions", "bench-openai", token=master_key)
    return _running(
        peer,
        fixed("litellm", peer.port, raw),
        text,
        [
            (
                f"config.yaml model_list: openai/{ctx.upstream_model} at api_base = the "
                "upstream; master key auth, no database"
            )
        ],
    )


ROWS: dict[str, Row] = {
    r.id: r
    for r in (
        Row("direct", "direct to the upstream (the harness's limit)", start_direct),
        Row(
            "conversation",
            "us, /api/conversation/stream_chat (recorded in Redis, default policies, JWT)",
            start_conversation,
            ours=True,
        ),
        Row(
            "openai-compat",
            "us, /v1/chat/completions (default policies, usage counters)",
            start_openai_compat,
            ours=True,
        ),
        Row(
            "portkey",
            "Portkey gateway 1.9.8 (Node; no policies, no storage)",
            start_portkey_row,
            peer="portkey",
        ),
        Row("litellm", "LiteLLM proxy (pip litellm[proxy])", start_litellm_row, peer="litellm"),
    )
}
