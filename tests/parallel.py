"""The suite on pytest-xdist workers: how many, which tests share a worker, and which run alone.

- Workers: `-n auto` (pyproject's addopts) means WORKERS, or PYTEST_XDIST_AUTO_NUM_WORKERS;
  naming only single tests (`path::test`) runs them in this process, with no worker to start.
- Groups (`--dist loadgroup`): tests using a module's own module-scoped fixture, or a folder's
  own session fixture (tests/cluster's Redis Cluster), run on one worker, so that gateway,
  browser or cluster starts once; the modules that build the TypeScript client share one
  worker too, since `npm ci` and `npm run build` write one node_modules and one dist/.
- `@pytest.mark.serial`: a test whose assertions bound wall-clock time (a timeout observed, a
  deadline met) runs alone, with no other test on any worker: each test holds a shared lock,
  a serial one the exclusive lock, taken through a turnstile so it cannot be starved. Serial
  tests come first, in one group (or first in their folder's), and a worker keeps the lock
  from one serial test to the next: the others wait once, not once per serial test.
- Bytecode: PYTHONDONTWRITEBYTECODE is dropped for the workers and every `python -m gateway`
  the tests start, so each compiles the checkout (and pytest rewrites its plugins) once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# Most tests wait on sockets and subprocesses, not on the CPU: on 2 cores, 3 workers finished
# the suite soonest (see the ciperf report for -n 2 / 3 / 4).
WORKERS = 3
NPM_GROUP = "clients-typescript"  # tests.clients.node builds clients/typescript in place
SERIAL_GROUP = "serial"
LOCKS_OPTION = "chat_gateway_locks"  # workerinput key: the folder of this run's two lock files


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "serial: runs alone, no other test on any worker (it bounds wall-clock time)"
    )
    if _distributing(config) and not _worker(config):
        config.stash[_LOCKS] = Path(tempfile.mkdtemp(prefix="chat-gateway-tests-"))
        # inherited by the workers and the processes tests start: dozens of interpreters
        # that would each compile the checkout again
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        sys.dont_write_bytecode = False


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_LOCKS, None)
    if folder is not None and not _worker(config):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    chosen = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if chosen:
        return int(chosen)
    named = [arg for arg in config.args if not arg.startswith("-")]
    if named and all("::" in arg for arg in named):
        return 0
    return WORKERS


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput[LOCKS_OPTION] = str(node.config.stash[_LOCKS])


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _worker(config):
        return
    items.sort(key=lambda item: not _serial(item))  # stable: each module keeps its order
    for item in items:
        if item.get_closest_marker("xdist_group") or getattr(item, "module", None) is None:
            continue
        group = _group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[Any]:
    folder = getattr(item.config, "workerinput", {}).get(LOCKS_OPTION)
    if folder is None:  # one process: nothing runs beside this test anyway
        return (yield)
    if not _serial(item):
        with _shared(Path(folder)):
            return (yield)
    global _alone
    if _alone is None:
        _alone = _Exclusive(Path(folder))
    try:
        return (yield)
    finally:
        if nextitem is None or not _serial(nextitem):
            _alone.close()
            _alone = None


_LOCKS = pytest.StashKey[Path]()
_alone: _Exclusive | None = None  # this worker's hold on the machine, between serial tests


def _distributing(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", 0)) and config.option.dist != "no"


def _worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _serial(item: pytest.Item) -> bool:
    return item.get_closest_marker("serial") is not None


def _group(item: pytest.Item) -> str | None:
    if _builds_the_typescript_client(item.module):  # type: ignore[attr-defined]
        return NPM_GROUP
    group = _fixture_group(item)
    if group is None and _serial(item):
        return SERIAL_GROUP
    return group


def _builds_the_typescript_client(module: Any) -> bool:
    return any(
        getattr(v, "__module__", None) == "tests.clients.node" for v in vars(module).values()
    )


def _fixture_group(item: pytest.Item) -> str | None:
    """The module, or the folder below tests/, whose own wider-than-a-test fixture the item
    uses (tests/cluster's Redis Cluster, a module's browser): None for the suite-wide ones."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    module = item.nodeid.split("::", 1)[0]
    groups = set()
    for defs in info.name2fixturedefs.values():
        fixture = defs[-1] if defs else None
        if fixture is None or fixture.scope == "function":
            continue
        if fixture.scope in ("module", "class"):
            groups.add(module)
        elif fixture.baseid not in ("", "tests"):
            groups.add(fixture.baseid.split("::", 1)[0])
    return min(groups, key=len) if groups else None  # the widest: a folder before a module


# Two flock(2) files per run. A test takes the gate, then "run" shared, and lets the gate go;
# a serial test keeps the gate while it waits for "run" exclusively, so no test that arrives
# after it gets in first.


@contextmanager
def _shared(folder: Path) -> Iterator[None]:
    gate = _open(folder / "gate")
    run = _open(folder / "run")
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(run, fcntl.LOCK_SH)
        os.close(gate)
        gate = -1
        yield
    finally:
        for fd in (gate, run):
            if fd >= 0:
                os.close(fd)  # closing releases its lock


class _Exclusive:
    def __init__(self, folder: Path) -> None:
        self.fds = [_open(folder / "gate"), _open(folder / "run")]
        try:
            for fd in self.fds:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
