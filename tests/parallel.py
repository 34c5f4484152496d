"""The suite on pytest-xdist workers: how many, which tests share a worker, and which run alone.

- Workers: `-n auto` (pyproject's addopts) means WORKERS, or PYTEST_XDIST_AUTO_NUM_WORKERS;
  naming only single tests (`path::test`) runs them in this process, with no worker to start.
- Groups (`--dist loadgroup`): tests using a module's own module-scoped fixture, or a folder's
  own session fixture (tests/cluster's Redis Cluster), run on one worker, so that gateway,
  browser or cluster starts once; the modules that build the TypeScript client share one
  worker too, since `npm ci` and `npm run build` write one node_modules and one dist/.
- `@pytest.mark.serial`: a test whose assertions bound wall-clock time (a timeout observed, a
  deadline met) runs alone, with no other test on any worker: each test holds a shared lock,
  a serial one the exclusive lock, taken through a turnstile so it cannot be starved.
"""

from __future__ import annotations

import fcntl
import os
import shutil
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
LOCKS_OPTION = "chat_gateway_locks"  # workerinput key: the folder of this run's two lock files


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "serial: runs alone, no other test on any worker (it bounds wall-clock time)"
    )
    if _distributing(config) and not _worker(config):
        config.stash[_LOCKS] = Path(tempfile.mkdtemp(prefix="chat-gateway-tests-"))


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
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        module = getattr(item, "module", None)
        if module is None:
            continue
        group = NPM_GROUP if _builds_the_typescript_client(module) else _fixture_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[Any]:
    folder = getattr(item.config, "workerinput", {}).get(LOCKS_OPTION)
    if folder is None:  # one process: nothing runs beside this test anyway
        return (yield)
    with _turn(Path(folder), alone=item.get_closest_marker("serial") is not None):
        return (yield)


_LOCKS = pytest.StashKey[Path]()


def _distributing(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", 0)) and config.option.dist != "no"


def _worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


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


@contextmanager
def _turn(folder: Path, *, alone: bool) -> Iterator[None]:
    """Shared use of the machine, or all of it. Taking the gate first, even for a moment,
    lets a waiting serial test in before any test that arrives after it."""
    with _locked(folder / "gate", fcntl.LOCK_EX) as gate:
        with _locked(folder / "run", fcntl.LOCK_EX if alone else fcntl.LOCK_SH):
            if not alone:
                fcntl.flock(gate, fcntl.LOCK_UN)  # others may come in beside this one
            yield


@contextmanager
def _locked(path: Path, mode: int) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock
