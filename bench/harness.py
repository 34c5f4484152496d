"""The processes a benchmark runs: a bench Redis (gateway/storage/embedded.py, append-only off),
the fake upstream, and the gateway itself as `python -m gateway serve`, each pinned with
taskset; plus the readings taken from outside them (RSS, CPU time) and the test data the
gateway needs (an API key from `gateway keys create`, conversations and sessions made over
HTTP like any client would)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from bench.loadgen import Connection, call, open_many
from bench.upstream import raise_fd_limit
from gateway.storage.embedded import EmbeddedRedis, free_port

ORG = "bench"
WORKSPACE = "ws-bench"
ADMIN_TOKEN = "bench-admin-token-0123456789"
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent

# model id -> upstream model name (the fake upstream reads the stream's shape from it)
MODELS: dict[str, tuple[str, str]] = {
    "openai-50": ("openai", "bench/tokens=50"),
    "anthropic-50": ("anthropic", "bench/tokens=50"),
    "openai-paced": ("openai", "bench/tokens=200/pace=20"),
    "openai-idle": ("openai", "bench/tokens=1/first=3600000"),
    "openai-10": ("openai", "bench/tokens=10"),
    "openai-1000": ("openai", "bench/tokens=1000"),
}


_POLICY_PROBE = """
import json
try:
    from gateway.policy.defaults import default_policies
except ImportError:
    from gateway.policy.engine import default_policies
from gateway.settings import Settings
out = []
for p in default_policies():
    dumped = p.model_dump(exclude_none=True, mode="json") if hasattr(p, "model_dump") else dict(p)
    out.append(dumped)
print(json.dumps({"builtin": "default_policies" in Settings.model_fields, "policies": out}))
"""


def default_policies_toml(src: Path) -> tuple[str, str]:
    """The config lines that turn the measured tree's default policies on, and a note saying
    which. A tree with the `default_policies` setting gets `default_policies = true`; one with
    only a default_policies() function gets them as [[policies]] tables; one with neither
    (the hook for an older tree) gets none, and the note says so."""
    env = None
    cmd = [sys.executable, "-c", _POLICY_PROBE]
    if src != REPO:
        import site

        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), *site.getsitepackages()])}
        cmd.insert(1, "-S")
    probe = subprocess.run(
        cmd, capture_output=True, text=True, cwd=src, timeout=60, env=env, check=False
    )
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return (
            "",
            f"no policies configured: gateway.policy.engine.default_policies() unavailable ({why})",
        )
    import json

    found = json.loads(probe.stdout)
    ids = ", ".join(str(p.get("id")) for p in found["policies"]) or "none returned"
    if found["builtin"]:
        return "default_policies = true\n", f"default policies on (setting default_policies): {ids}"
    out = [
        "[[policies]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in p.items())
        for p in found["policies"]
    ]
    return "\n".join(out), f"default policies configured as [[policies]]: {ids}"


def toml_value(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def gateway_config(upstream_port: int, src: Path = REPO) -> tuple[str, str]:
    parts = []
    for mid, (provider, model) in MODELS.items():
        base = f"http://{HOST}:{upstream_port}" + ("/v1" if provider == "openai" else "")
        parts.append(
            f'[[models]]\nid = "{mid}"\nprovider = "{provider}"\nmodel = "{model}"\n'
            f'base_url = "{base}"\nmax_retries = 0\n'
        )
    policies, note = default_policies_toml(src)
    if not policies.startswith("[["):  # top-level keys go before the first table
        return policies + "\n" + "\n".join(parts), note
    return "\n".join(parts) + "\n" + policies, note


def has_taskset() -> bool:
    return shutil.which("taskset") is not None


def pinned(cmd: list[str], cpus: set[int] | None) -> list[str]:
    if not cpus or not has_taskset():
        return cmd
    return ["taskset", "-c", ",".join(str(c) for c in sorted(cpus)), *cmd]


def set_affinity(pid: int, cpus: set[int] | None) -> None:
    try:
        os.sched_setaffinity(pid, cpus or set(range(os.cpu_count() or 1)))
    except OSError:
        pass


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def machine_info() -> dict[str, Any]:
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in (
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "sse-starlette",
        "redis",
        "hiredis",
        "openai",
        "anthropic",
        "httpx2",
        "httpx",
        "pydantic",
    ):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:  # noqa: BLE001, S110 - a missing package is simply not listed
            pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "commit": commit,
        "taskset": has_taskset(),
    }


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    workers: int
    cpus: set[int] | None
    log: Path

    @property
    def pids(self) -> list[int]:
        """The processes that serve requests: the server itself, or uvicorn's workers."""
        if self.workers == 1:
            return [self.process.pid]
        return children(self.process.pid) or [self.process.pid]

    def rss(self) -> int:
        return sum(rss_bytes(p) for p in self.pids)

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)


@dataclass
class Env:
    """Redis + upstream for a whole run; gateways come and go per placement."""

    gateway_cpus: set[int] | None = field(default_factory=lambda: {0})
    harness_cpus: set[int] | None = field(default_factory=lambda: {1})
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cgw-bench-")))
    redis: EmbeddedRedis | None = None
    upstream: subprocess.Popen[bytes] | None = None
    upstream_port: int = 0
    gateway: Gateway | None = None
    api_key: str = ""
    policies_note: str = ""
    fd_limit: int = 0
    keep: bool = False  # leave the work folder (logs, config) in place at the end
    src: Path = field(default_factory=lambda: REPO)  # the tree whose gateway is measured
    _config_text: str = ""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Env:
        if (os.cpu_count() or 1) < 2:
            self.gateway_cpus = self.harness_cpus = None
        self.fd_limit = raise_fd_limit()  # inherited by every process started below
        set_affinity(os.getpid(), self.harness_cpus)  # the load generator
        self.redis = EmbeddedRedis(self.workdir / "redis", appendonly=False).start()
        set_affinity(self.redis.process.pid, self.harness_cpus)  # type: ignore[union-attr]
        self.upstream_port = free_port()
        self.upstream = start_upstream(
            self.upstream_port, self.harness_cpus, self.workdir / "upstream.log"
        )
        self.api_key = self._mint_key()
        return self

    def place(self, gateway_cpus: set[int] | None, harness_cpus: set[int] | None) -> None:
        """Move the harness's processes (this one, Redis, the upstream) to other cores."""
        self.gateway_cpus, self.harness_cpus = gateway_cpus, harness_cpus
        for pid in (os.getpid(), self.redis.process.pid, self.upstream.pid):  # type: ignore[union-attr]
            set_affinity(pid, harness_cpus)

    def stop(self) -> None:
        self.stop_gateway()
        if self.upstream is not None and self.upstream.poll() is None:
            self.upstream.terminate()
            try:
                self.upstream.wait(5)
            except subprocess.TimeoutExpired:
                self.upstream.kill()
        if self.redis is not None:
            self.redis.stop()
        if self.keep:
            print(f"bench: logs and config kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()  # what did start (Redis, the upstream) must not outlive a failed start
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def redis_url(self) -> str:
        return self.redis.url  # type: ignore[union-attr]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            {
                "GATEWAY_REDIS_URL": self.redis_url,
                "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
                "GATEWAY_DATA_DIR": str(self.workdir / "data"),
                "GATEWAY_LOG_LEVEL": os.environ.get("BENCH_GATEWAY_LOG_LEVEL", "warning"),
                "OPENAI_API_KEY": "sk-bench",
                "ANTHROPIC_API_KEY": "sk-ant-bench",
                "PYTHONPATH": os.pathsep.join(self.python_path()),
            }
        )
        return env

    def python_path(self) -> list[str]:
        """Another tree is imported with site-packages as plain paths (`python -S`), so the
        editable install's import hook cannot fill its gaps from this tree."""
        if self.src == REPO:
            return [str(self.src), *filter(None, [os.environ.get("PYTHONPATH")])]
        import site

        return [str(self.src), *site.getsitepackages()]

    def python(self) -> list[str]:
        return [sys.executable] if self.src == REPO else [sys.executable, "-S"]

    def _mint_key(self) -> str:
        out = subprocess.run(
            [
                *self.python(),
                "-m",
                "gateway",
                "keys",
                "create",
                "--org",
                ORG,
                "--user",
                "bench-user",
                "--role",
                "user",
                "--workspace",
                WORKSPACE,
                "--name",
                "Bench",
            ],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.src,
            check=False,
        )
        match = re.search(r"(cgw_\S+)", out.stdout)
        if out.returncode != 0 or not match:
            raise RuntimeError(f"`gateway keys create` failed: {out.stdout}{out.stderr}")
        return match.group(1)

    # -- the gateway -----------------------------------------------------------------------

    def config_path(self) -> Path:
        if not self._config_text:
            self._config_text, self.policies_note = gateway_config(self.upstream_port, self.src)
        text = self._config_text
        path = self.workdir / "bench_config.toml"
        path.write_text(text)
        return path

    def command(self, port: int, workers: int, cpus: set[int] | None) -> list[str]:
        cmd = [
            *self.python(),
            "-m",
            "gateway",
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--config",
            str(self.config_path()),
            "--workers",
            str(workers),
        ]
        return pinned(cmd, cpus)

    def start_gateway(
        self, *, workers: int = 1, cpus: set[int] | None = None, wrap: list[str] | None = None
    ) -> Gateway:
        """`python -m gateway serve`, optionally under a profiler (wrap: its command prefix,
        which must end in `-m`-style arguments taking `gateway serve ...`)."""
        self.stop_gateway()
        port = free_port()
        cmd = self.command(port, workers, cpus)
        if wrap:
            i = cmd.index("-m")
            cmd = cmd[: cmd.index(sys.executable)] + wrap + cmd[i + 1 :]  # keep "gateway serve ..."
        log = self.workdir / f"gateway-{port}.log"
        proc = subprocess.Popen(
            cmd,
            env=self.env(),
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True,
            cwd=self.src,
        )
        self.gateway = Gateway(proc, port, workers, cpus, log)
        wait_ready(port, proc, log, workers=workers)
        return self.gateway

    def stop_gateway(self, sig: int = signal.SIGTERM) -> None:
        gw, self.gateway = self.gateway, None
        if gw is None or gw.process.poll() is not None:
            return
        os.killpg(gw.process.pid, sig)  # our own session: the server and its workers
        try:
            gw.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(gw.process.pid, signal.SIGKILL)
            gw.process.wait()

    # -- test data -------------------------------------------------------------------------

    async def sessions(self, model: str, n: int, *, concurrency: int = 32) -> list[str]:
        """n fresh conversations, each with one chat session on `model`, made over HTTP."""
        gw = self.gateway
        assert gw is not None
        host = f"{HOST}:{gw.port}"
        conns = await open_many(HOST, gw.port, min(concurrency, n))
        out: list[str] = []
        todo = iter(range(n))

        async def worker(conn: Connection) -> None:
            for i in todo:
                status, conv = await call(
                    conn,
                    "POST",
                    f"/api/conversation/create?org_id={ORG}",
                    host=host,
                    token=self.api_key,
                    body={"title": f"bench {model} {i}", "workspace_id": WORKSPACE},
                )
                if status != 201:
                    raise RuntimeError(f"create conversation: HTTP {status}: {conv}")
                status, sess = await call(
                    conn,
                    "POST",
                    f"/api/conversation/create_session?org_id={ORG}",
                    host=host,
                    token=self.api_key,
                    body={"conversation_id": conv["id"], "model_id": model},
                )
                if status != 201:
                    raise RuntimeError(f"create session: HTTP {status}: {sess}")
                out.append(sess["id"])

        try:
            await asyncio.gather(*(worker(c) for c in conns))
        finally:
            for c in conns:
                c.close()
        return out

    def redis_client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    async def upstream_stats(self) -> dict[str, int]:
        conn = await Connection.open(HOST, self.upstream_port)
        try:
            _, stats = await call(conn, "GET", "/bench/stats", host=f"{HOST}:{self.upstream_port}")
            return stats
        finally:
            conn.close()


def start_upstream(port: int, cpus: set[int] | None, log: Path) -> subprocess.Popen[bytes]:
    """bench/upstream.py on `port`, pinned to `cpus`, its stderr in `log`: once it listens
    (one that never does is stopped before the error is raised)."""
    proc = subprocess.Popen(
        pinned([sys.executable, "-m", "bench.upstream", "--port", str(port)], cpus),
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115
        start_new_session=True,
        cwd=REPO,
    )
    try:
        wait_port(port, proc, log)
    except BaseException:
        proc.kill()
        proc.wait(5)
        raise
    return proc


@contextlib.contextmanager
def upstream_apart(name: str) -> Iterator[int]:
    """For a bench of client-side CPU: the fake upstream on core 1, this process on core 0;
    its port. Its log is /tmp/bench-<name>-<port>.log."""
    port = free_port()
    proc = start_upstream(port, {1}, Path("/tmp") / f"bench-{name}-{port}.log")
    try:
        set_affinity(0, {0})
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited at start: {tail(log)}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s: {tail(log)}")


def wait_ready(
    port: int, proc: subprocess.Popen[bytes], log: Path, *, workers: int, timeout: float = 60
) -> None:
    """/readyz answers 200 (with several workers: every worker has started)."""
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited at start: {tail(log)}")
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=2)
            c.request("GET", "/readyz")
            ok = c.getresponse().status == 200
            c.close()
            if ok and (workers == 1 or len(children(proc.pid)) >= workers):
                time.sleep(0.5 if workers > 1 else 0.0)  # let every worker enter its loop
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gateway not ready after {timeout}s: {tail(log)}")


def tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""
