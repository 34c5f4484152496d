"""`serve` on a port another process holds: it ends at once, non-zero, with one line naming
the address, and it has started nothing (no embedded Redis, no admin token, no "listening on")."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_cli import Serve, gateway


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def processes_using(folder: Path) -> list[str]:
    """Command lines of live processes that name `folder` (an embedded Redis would)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.serial  # at once: within 10 s
def test_serve_on_a_busy_port_exits_at_once_with_one_line(tmp_path, busy_port, workers):
    data = tmp_path / "data"
    started = time.monotonic()
    r = gateway(
        "serve",
        "--port",
        str(busy_port),
        "--workers",
        workers,
        timeout=20,
        GATEWAY_DATA_DIR=str(data),
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    took = time.monotonic() - started
    assert r.returncode == 1, r.stdout + r.stderr
    assert took < 10
    assert r.stderr.splitlines() == [
        f"chat-gateway: cannot listen on 127.0.0.1:{busy_port}: address already in use"
    ]
    assert "listening on" not in r.stdout and "admin token" not in r.stdout
    assert not data.exists()  # no embedded Redis was started, so none is left running
    assert processes_using(data) == []


def test_serve_names_a_host_it_cannot_bind(tmp_path):
    r = gateway(
        "serve",
        "--host",
        "192.0.2.1",
        "--port",
        "8000",
        timeout=20,
        GATEWAY_DATA_DIR=str(tmp_path / "data"),
    )
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "chat-gateway: cannot listen on 192.0.2.1:8000: cannot assign requested address"
    ]
    assert not (tmp_path / "data").exists()


def test_a_busy_port_leaves_a_running_gateway_and_its_redis_alone(tmp_path):
    """The second `serve` on the first one's port and data must not touch either."""
    data = tmp_path / "data"
    with Serve(data) as first:
        r = gateway(
            "serve",
            "--port",
            str(first.port),
            timeout=20,
            GATEWAY_DATA_DIR=str(data),
            XDG_STATE_HOME=str(tmp_path / "state"),
        )
        assert r.returncode == 1
        assert "address already in use" in r.stderr
        assert first.proc.poll() is None
        redis_pid = int((data / "redis.pid").read_text())
        os.kill(redis_pid, 0)  # still running
        assert httpx.get(f"{first.url}/readyz").status_code == 200


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_with_two_workers_serves_on_its_port_and_stops_its_redis(tmp_path, stop):
    data, state = tmp_path / "data", tmp_path / "state"
    serve = Serve(data, "--workers", "2", state=state)
    try:
        assert httpx.get(f"{serve.url}/healthz").status_code == 200
        assert [line for line in serve.lines if "listening on" in line] == [
            f"chat-gateway: listening on {serve.url}\n"
        ]
        assert len(list(state.glob("chat-gateway/serve-*.json"))) == 1
        redis_pid = int((data / "redis.pid").read_text())
    finally:
        serve.proc.send_signal(stop)
        out, _ = serve.proc.communicate(timeout=30)
    assert serve.proc.returncode == 0, out
    assert "embedded Redis stopped" in out and "Traceback" not in out
    with pytest.raises(ProcessLookupError):
        os.kill(redis_pid, 0)
    assert processes_using(data) == []
    assert list(state.glob("chat-gateway/serve-*.json")) == []


def test_sigusr1_prints_every_threads_stack_and_the_gateway_goes_on(tmp_path):
    with Serve(tmp_path / "data") as serve:
        serve.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        assert httpx.get(f"{serve.url}/readyz").status_code == 200
        out = serve.interrupt()

    assert "Current thread 0x" in out  # faulthandler's dump: the main thread, at its frame
    assert 'File "' in out and "uvicorn" in out
    assert "embedded Redis stopped" in out  # and it still stopped cleanly afterwards
