"""The cache folder the peers are installed into (`.bench-cache/` at the repository root, which
git ignores): Portkey's gateway with `npm ci` from the lockfile in bench/peers/portkey/,
LiteLLM's proxy and py-spy each into a venv of their own. An install is reused while the
manifests it was made from are unchanged (a stamp holds their hash)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from bench.harness import REPO

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = REPO / ".bench-cache"
PY_SPY = "py-spy==0.4.3"
INSTALL_TIMEOUT_S = 900


class Unavailable(RuntimeError):
    """A peer (or tool) that cannot be installed here: its row is skipped with this reason."""


def digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{what}: {exc}") from exc
    if done.returncode != 0:
        lines = [
            ln
            for ln in (done.stderr or done.stdout).splitlines()
            if ln.strip() and not ln.startswith("WARNING: Location")
        ]
        raise Unavailable(f"{what} failed: {' | '.join(lines[-3:])[:400]}")


class Cache:
    def __init__(self, root: Path = DEFAULT_ROOT, *, log: bool = True) -> None:
        self.root = root
        self.log = log

    def _say(self, text: str) -> None:
        if self.log:
            print(f"bench.peers: {text}", file=sys.stderr, flush=True)

    def _fresh(self, folder: Path, stamp: str) -> bool:
        return (folder / ".installed").is_file() and (folder / ".installed").read_text() == stamp

    def _done(self, folder: Path, stamp: str) -> None:
        (folder / ".installed").write_text(stamp)

    # -- Portkey ---------------------------------------------------------------------------

    def portkey(self) -> Path:
        """Portkey's start script, installed from bench/peers/portkey/ with `npm ci`."""
        folder = self.root / "portkey"
        script = folder / "node_modules/@portkey-ai/gateway/build/start-server.js"
        names = ("package.json", "package-lock.json")
        stamp = digest(*((HERE / "portkey" / n).read_bytes() for n in names))
        if self._fresh(folder, stamp) and script.is_file():
            return script
        if shutil.which("npm") is None or shutil.which("node") is None:
            raise Unavailable("node and npm are not installed")
        self._say(f"installing Portkey's gateway into {folder} (npm ci)")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name in names:
            shutil.copy(HERE / "portkey" / name, folder / name)
        run(["npm", "ci", "--no-audit", "--no-fund", "--omit=dev"], folder, "npm ci")
        if not script.is_file():
            raise Unavailable(f"npm ci left no {script.relative_to(folder)}")
        self._done(folder, stamp)
        return script

    # -- Python venvs ----------------------------------------------------------------------

    def _venv(self, name: str, stamp: str, pip_args: list[str], what: str) -> Path:
        folder = self.root / name
        python = folder / "bin" / "python"
        if self._fresh(folder, stamp) and python.is_file():
            return folder
        self._say(f"installing {what} into {folder} (its own venv)")
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "venv", str(folder)], self.root, f"venv for {what}")
        run([str(python), "-m", "pip", "install", "-q", *pip_args], HERE, f"pip install {what}")
        self._done(folder, stamp)
        return folder

    def litellm(self) -> Path:
        """The `litellm` command of a venv holding bench/peers/litellm/requirements.txt."""
        req, pins = HERE / "litellm" / "requirements.txt", HERE / "litellm" / "constraints.txt"
        folder = self._venv(
            "litellm",
            digest(req.read_bytes(), pins.read_bytes()),
            ["-r", str(req), "-c", str(pins)],
            "LiteLLM's proxy",
        )
        command = folder / "bin" / "litellm"
        if not command.is_file():
            raise Unavailable(f"the LiteLLM install has no {command}")
        return command

    def py_spy(self) -> str:
        """py-spy from PATH, else from a venv in the cache."""
        found = shutil.which("py-spy")
        if found:
            return found
        folder = self._venv("tools", digest(PY_SPY.encode()), [PY_SPY], PY_SPY)
        return str(folder / "bin" / "py-spy")
