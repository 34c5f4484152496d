"""The front door: `python -m gateway serve` with nothing configured (embedded Redis, demo
model, admin token printed once), Ctrl-C, restart with the data intact; keys; bad config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx
import pytest
import redis

from gateway.storage import keys
from gateway.storage.embedded import free_port
from tests.support import bearer, parse_sse


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GATEWAY_") and k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    }
    return {**env, **extra}


def gateway(
    *args: str, cwd: Path | None = None, timeout: float = 30, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m gateway ARGS` to its end, in a clean environment plus `env`."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=clean_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stacks(proc: subprocess.Popen[str]) -> str:
    """What a gateway that did not stop was doing: its threads' stacks (SIGUSR1, see
    gateway/app.py), then it is killed; the tail of its output."""
    proc.send_signal(signal.SIGUSR1)
    time.sleep(1.0)
    proc.kill()
    out, err = proc.communicate()
    return ((out or "") + (err or ""))[-12000:]


class Serve:
    """`python -m gateway serve` in a subprocess, ready when this returns. Without data_dir
    the gateway keeps its data in `cwd`/.gateway; `state` is where it records itself
    (XDG_STATE_HOME), by default next to its data, never the user's real one."""

    def __init__(
        self,
        data_dir: Path | None,
        *args: str,
        cwd: Path | None = None,
        state: Path | None = None,
        **env: str,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if data_dir is not None:
            env["GATEWAY_DATA_DIR"] = str(data_dir)
        state = state or (data_dir.parent if data_dir else cwd or Path.cwd()) / "state"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), *args],
            env=clean_env(XDG_STATE_HOME=str(state), **env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        # a start, not a speed: the suite's other workers may hold both cores meanwhile
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("serve exited:\n" + "".join(self.lines))
            self.lines.append(line)
            if "listening on" in line:
                break
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("gateway never became ready")

    def admin_token(self) -> str | None:
        for i, line in enumerate(self.lines):
            if "admin token (printed once" in line:
                return self.lines[i + 1].strip()
        return None

    def interrupt(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("serve not exited within 20 s:\n" + stacks(self.proc)) from None
        self.lines.append(out)
        return out

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.interrupt()


def test_serve_with_nothing_configured_survives_a_restart(tmp_path):
    data = tmp_path / "data"
    first = Serve(data)
    try:
        token = first.admin_token()
        assert token and token.startswith("cgw_admin_")
        h = bearer(token)
        conv = httpx.post(
            f"{first.url}/api/conversation/create?org_id=acme", json={"title": "kept"}, headers=h
        ).json()
        session = httpx.post(
            f"{first.url}/api/conversation/create_session?org_id=acme",
            json={"conversation_id": conv["id"], "model_id": "demo"},
            headers=h,
        ).json()
        r = httpx.post(
            f"{first.url}/api/conversation/stream_chat?org_id=acme",
            json={"chat_session_id": session["id"], "message": "Tell me about Redis"},
            headers=h,
            timeout=30,
        )
        stream = parse_sse(r.content)
        assert stream.names[0] == "start" and stream.names[-1] == "end"
        assert stream.text.startswith("You asked: Tell me about Redis.")
    finally:
        out = first.interrupt()
    assert first.proc.returncode == 0, out
    assert "embedded Redis stopped" in out
    assert "Traceback" not in "".join(first.lines)
    pid = int((data / "redis.pid").read_text()) if (data / "redis.pid").exists() else None
    if pid is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    second = Serve(data)
    try:
        assert second.admin_token() is None  # printed once, at first start only
        assert any("the one printed at first start" in line for line in second.lines)
        h = bearer(token)  # the same token still works: its hash survived
        listed = httpx.get(f"{second.url}/api/conversation/list?org_id=acme", headers=h).json()
        assert [c["id"] for c in listed["conversations"]] == [conv["id"]]
        msgs = httpx.get(
            f"{second.url}/api/conversation/messages?org_id=acme&conversation_id={conv['id']}",
            headers=h,
        ).json()
        assert [m["role"] for m in msgs["messages"]] == ["user", "assistant"]
        assert msgs["messages"][1]["content"] == stream.text
    finally:
        second.interrupt()


def test_bad_config_stops_serve_with_one_line_naming_the_field(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[models]]\nid = "x"\nprovider = "openia"\n')
    r = gateway("serve", "--config", str(cfg), GATEWAY_DATA_DIR=str(tmp_path / "d"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("chat-gateway: config error: models[0].provider:")
    assert not (tmp_path / "d").exists()  # failed before starting anything


@pytest.mark.parametrize(
    "var, value, field",
    [
        ("GATEWAY_REDIS_URL", "http://nope", "redis_url"),
        ("GATEWAY_PING_INTERVAL", "soon", "ping_interval"),
    ],
)
def test_bad_environment_value_names_the_field(tmp_path, var, value, field):
    r = gateway("serve", **{var: value, "GATEWAY_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert f"config error: {field}:" in r.stderr


def test_keys_create_list_revoke(tmp_path, redis_url):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return gateway("keys", *args, GATEWAY_REDIS_URL=redis_url)

    created = run(
        "create",
        "--org",
        "org-k",
        "--user",
        "kim",
        "--role",
        "user",
        "--workspace",
        "ws-1",
        "--name",
        "Kim",
        "--email",
        "kim@example.com",
    )
    assert created.returncode == 0, created.stderr
    assert created.stderr == f"chat-gateway: Redis: {redis_url} (from GATEWAY_REDIS_URL)\n"
    key_id = created.stdout.split("key id: ")[1].split()[0]
    key = created.stdout.split("only its hash is kept): ")[1].strip()
    listed = run("list")
    assert key_id in listed.stdout and key not in listed.stdout  # never the key itself
    client = redis.Redis.from_url(redis_url)
    stored = b" ".join(client.dump(k) for k in client.keys(keys.API_KEYS + "*"))
    client.close()
    assert key.split("_", 2)[2] not in stored.decode("latin-1")  # only hashes are stored
    assert run("revoke", key_id).returncode == 0
    assert run("revoke", key_id).returncode == 1
    assert key_id not in run("list").stdout
