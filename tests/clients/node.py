"""Node and npm for the TypeScript client (clients/typescript): `npm ci` only when the lock
file changed since the last install (node_modules is kept, gitignored), one build per
session, and every npm run's output kept for the failure message."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"
INSTALL_HINT = (
    "Node 18+ and npm not found: install nodejs and npm (e.g. apt-get install -y nodejs npm)"
)
_STAMP = (
    CLIENT / "node_modules" / ".chat-gateway-lock-sha256"
)  # the lock file node_modules was installed from
_built = False


class NpmFailed(AssertionError):
    pass


def require_node() -> None:
    """Skips the calling test, with the install hint, on a machine without Node 18+."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(INSTALL_HINT)
    version = subprocess.run(
        ["node", "--version"], check=False, capture_output=True, text=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.skip(f"Node {version} is too old: {INSTALL_HINT}")


def npm(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Runs npm in clients/typescript; its output (stdout and stderr, interleaved) is
    returned, or raised with the command when it fails."""
    run_env = {
        **os.environ,
        "NO_COLOR": "1",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        **(env or {}),
    }
    try:
        done = subprocess.run(
            ["npm", *args],
            check=False,
            cwd=CLIENT,
            env=run_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        partial = (
            exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output
        )
        raise NpmFailed(
            f"npm {' '.join(args)} took over {timeout:.0f} s:\n{partial or ''}"
        ) from None
    if done.returncode != 0:
        raise NpmFailed(f"npm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}")
    return done.stdout


def ensure_installed() -> None:
    lock = hashlib.sha256((CLIENT / "package-lock.json").read_bytes()).hexdigest()
    if _STAMP.exists() and _STAMP.read_text() == lock:
        return
    npm("ci", "--no-audit", "--no-fund")
    _STAMP.write_text(lock)


def ensure_built() -> Path:
    """node_modules up to date and dist/ built (once per session): dist/esm's folder."""
    global _built
    require_node()
    if not _built:
        ensure_installed()
        npm("run", "build")
        _built = True
    return CLIENT / "dist" / "esm"
