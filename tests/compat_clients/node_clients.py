"""The Node clients of tests/compat_clients/node (the official `openai` and
`@anthropic-ai/sdk` SDKs, the Vercel AI SDK with `@ai-sdk/openai` and `@ai-sdk/anthropic`),
pinned exactly in package.json and package-lock.json: `npm ci` from the lock file, only when
it changed since the last install (node_modules is kept, gitignored), then one script run
per call, which prints one JSON line of what it saw."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from tests.clients.node import require_node

FOLDER = Path(__file__).resolve().parent / "node"
_STAMP = FOLDER / "node_modules" / ".chat-gateway-lock-sha256"
_installing = threading.Lock()  # scripts run in threads (asyncio.to_thread)


def ensure_installed() -> None:
    """Skips the calling test without Node and npm; installs node_modules when missing."""
    require_node()
    with _installing:
        lock = hashlib.sha256((FOLDER / "package-lock.json").read_bytes()).hexdigest()
        if _STAMP.exists() and _STAMP.read_text() == lock:
            return
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=FOLDER,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "NO_COLOR": "1", "npm_config_update_notifier": "false"},
        )
        if done.returncode != 0:
            output = f"{done.stdout}\n{done.stderr}"
            raise AssertionError(f"npm ci failed ({done.returncode}):\n{output}")
        _STAMP.write_text(lock)


def run(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run `node <args>` in the folder; its last output line as JSON, or its output as the
    failure."""
    done = subprocess.run(
        ["node", *args],
        cwd=FOLDER,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env, "NO_COLOR": "1"},
    )
    if done.returncode != 0:
        raise AssertionError(f"node {' '.join(args)} failed:\n{done.stderr}{done.stdout}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scenario(name: str, *, gateway: str, key: str, model: str) -> dict[str, Any]:
    """One scenario of scenario.mjs on `model`."""
    return run(["scenario.mjs", name], {"GW": gateway, "KEY": key, "MODEL": model})
