"""The processes the side-by-side run starts: the bench's Redis, fake upstream and our gateway
(bench.harness.Env, with a JWT secret so the conversation route is called with a JWT), and each
peer as a subprocess pinned like our gateway, in its own session so it is stopped whole."""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import jwt

from bench.harness import HOST, ORG, WORKSPACE, Env, children, cpu_seconds, pinned, tail, wait_port
from bench.peers.cache import HERE, Cache
from gateway.storage.embedded import free_port

JWT_USER = "bench-user"  # the user `Env` mints its API key for: the same conversations


@dataclass
class PeerEnv(Env):
    """Env whose gateway also accepts HS256 JWTs signed with a secret of this run."""

    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def env(self) -> dict[str, str]:
        return {**super().env(), "GATEWAY_JWT_SECRET": self.jwt_secret}

    def jwt(self, ttl_s: int = 24 * 3600) -> str:
        claims = {
            "sub": JWT_USER,
            "org_id": ORG,
            "role": "user",
            "workspaces": [WORKSPACE],
            "exp": int(time.time()) + ttl_s,
        }
        return jwt.encode(claims, self.jwt_secret, algorithm="HS256")

    @property
    def upstream_url(self) -> str:
        return f"http://{HOST}:{self.upstream_port}"


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live descendants (a peer may fork workers)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_seconds(p)
        except OSError:
            continue
        todo += children(p)
    return total


@dataclass
class PeerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    command: list[str]

    def cpu(self) -> float:
        return tree_cpu(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the peer and its children
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def launch(
    cmd: list[str], env: PeerEnv, name: str, port: int, extra: dict[str, str], cwd: Path
) -> PeerProcess:
    log = env.workdir / f"{name}-{port}.log"
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEWAY_", "OPENAI_", "ANTHROPIC_", "LITELLM_"))
    }
    cmd = pinned(cmd, env.gateway_cpus)
    proc = subprocess.Popen(
        cmd,
        env={**base, **extra},
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=cwd,
    )
    return PeerProcess(proc, port, log, cmd)


def start_portkey(env: PeerEnv, cache: Cache) -> PeerProcess:
    """Portkey's Node server as its README starts it, headless (no UI, no log streaming to it)
    and NODE_ENV=production; the provider and the upstream's URL come per request in headers."""
    script = cache.portkey()
    port = free_port()
    peer = launch(
        ["node", str(script), f"--port={port}", "--headless"],
        env,
        "portkey",
        port,
        {"NODE_ENV": "production"},
        script.parent,
    )
    try:
        wait_port(port, peer.process, peer.log, timeout=60)
    except BaseException:
        peer.stop()
        raise
    return peer


def litellm_config(env: PeerEnv, master_key: str, tokens: int) -> Path:
    text = Template((HERE / "litellm" / "config.yaml").read_text()).substitute(
        upstream=env.upstream_url, master_key=master_key, tokens=tokens
    )
    path = env.workdir / "litellm-config.yaml"
    path.write_text(text)
    return path


def start_litellm(env: PeerEnv, cache: Cache, master_key: str, tokens: int) -> PeerProcess:
    """`litellm --config` with one uvicorn worker. LITELLM_LOG=ERROR turns off its per-request
    access log (our gateway runs at log level warning); the local model cost map saves a fetch
    from the internet at start that cannot succeed here."""
    command = cache.litellm()
    port = free_port()
    cfg = litellm_config(env, master_key, tokens)
    peer = launch(
        [
            str(command),
            "--config",
            str(cfg),
            "--host",
            HOST,
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env,
        "litellm",
        port,
        {"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        env.workdir,
    )
    try:
        wait_http(port, "/health/liveliness", peer, timeout=180)
    except BaseException:
        peer.stop()
        raise
    return peer


def wait_http(port: int, path: str, peer: PeerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.process.poll() is not None:
            raise RuntimeError(f"exited at start: {tail(peer.log)}")
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=2)
            c.request("GET", path)
            ok = c.getresponse().status == 200
            c.close()
            if ok:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"GET {path} not 200 after {timeout:.0f} s: {tail(peer.log)}")
