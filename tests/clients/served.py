"""A gateway as its users run it: `python -m gateway serve` in a subprocess, on a port of
its own, with its own embedded Redis (GATEWAY_DATA_DIR) unless a Redis URL is given."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.storage.embedded import free_port


class ServedGateway:
    def __init__(self, folder: Path, config: str, env: dict[str, str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.config = folder / "gateway.toml"
        self.config.write_text(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "serve.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        self.env = {"GATEWAY_DATA_DIR": str(folder / "data"), **inherited, **env}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def redis_socket(self) -> Path:
        """The embedded Redis's socket (when no GATEWAY_REDIS_URL was given)."""
        return Path(self.env["GATEWAY_DATA_DIR"]) / "redis.sock"

    def launch(self) -> ServedGateway:
        """Starts the process; wait_ready() then waits for it (other work may go between)."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway",
                    "serve",
                    "--port",
                    str(self.port),
                    "--config",
                    str(self.config),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = 30) -> ServedGateway:
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the gateway did not become ready:\n{self.log.read_text()}")

    def start(self, timeout: float = 30) -> ServedGateway:
        return self.launch().wait_ready(timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
