"""CI checks the code itself: `.ci/run`'s lint, type and test stages fail on a lint error, a
type error, or a failing test on either Python version. Each check runs on a copy of the
tree with one defect planted, and passes on the same copy without it. The copies start warm
where that changes no verdict (mypy's cache) and hold few tests besides the planted one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# where `.ci/run` keeps the Python 3.13 venv: it exports CI_VENV313 to the stages it runs
VENV313 = Path(os.environ.get("CI_VENV313") or ROOT / ".venv-py313")


def run_stage(tree: Path, stage: str) -> subprocess.CompletedProcess[str]:
    # one xdist worker: the planted test still goes through a worker and back, and no more
    # interpreters start than the one test needs
    env = {**os.environ, "CI_VENV313": str(VENV313), "PYTEST_XDIST_AUTO_NUM_WORKERS": "1"}
    env.pop("MYPY_CACHE_DIR", None)  # the copy's mypy writes its own cache, in the copy
    bin_dir = str(Path(sys.executable).parent)  # the ruff and mypy this suite runs with
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        ["bash", str(tree / ".ci" / "run"), stage],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The project's files (tracked and new, not ignored), copied."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    copy = tmp_path / "tree"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return copy


def keep_only(tree: Path, *kept: str) -> None:
    """Remove the copy's test modules but `kept`: a stage then runs the planted test and the
    files it names itself, with the suite's conftests and support modules still in place."""
    for path in (tree / "tests").rglob("test_*.py"):
        if path.relative_to(tree).as_posix() not in kept:
            path.unlink()


def test_a_lint_error_fails_the_lint_stage(tree: Path) -> None:
    path = tree / "gateway" / "backoff.py"
    path.write_text(path.read_text().replace("import asyncio\n", "import asyncio\nimport os\n"))
    failed = run_stage(tree, "lint")
    assert failed.returncode != 0
    # the planted error is the only one: the tree itself passes
    assert "F401" in failed.stdout and "Found 1 error" in failed.stdout


def test_a_badly_formatted_file_fails_the_lint_stage(tree: Path) -> None:
    path = tree / "gateway" / "backoff.py"
    path.write_text(path.read_text().replace("    first: float\n", "    first:float\n"))
    failed = run_stage(tree, "lint")
    assert failed.returncode != 0 and "1 file would be reformatted" in failed.stdout
    assert "gateway/backoff.py" in failed.stdout


def test_a_type_error_fails_the_type_stage(tree: Path) -> None:
    # the checkout's mypy cache, when there is one: the unchanged modules need no new look,
    # and mypy checks each cached module against its file's hash, so none can hide the error
    cache = Path(os.environ.get("MYPY_CACHE_DIR") or ROOT / ".mypy_cache")
    if cache.is_dir():
        shutil.copytree(cache, tree / ".mypy_cache")
    path = tree / "gateway" / "backoff.py"
    path.write_text(path.read_text() + '\n\ndef _planted() -> int:\n    return "not an int"\n')
    failed = run_stage(tree, "types")
    assert failed.returncode != 0
    # the planted error is the only one: the tree itself passes
    assert "backoff.py" in failed.stdout and "return-value" in failed.stdout
    assert "Found 1 error in 1 file" in failed.stdout


CANARY = "def test_planted_failure() -> None:\n    assert 1 + 1 == 3\n"


@pytest.mark.skipif(
    not (VENV313 / "bin" / "python").exists(), reason=".ci/run creates .venv-py313 first"
)
def test_a_failing_unit_test_fails_the_python_313_stage(tree: Path) -> None:
    """The stage names its folders and one file (tests/api/test_sse.py): those stay."""
    keep_only(tree, "tests/api/test_sse.py")
    (tree / "tests" / "policy" / "test_planted.py").write_text(CANARY)
    failed = run_stage(tree, "py313")
    assert failed.returncode != 0
    assert (
        "test_planted_failure" in failed.stdout
        and "3.13"
        in subprocess.run(
            [str(VENV313 / "bin" / "python"), "--version"], capture_output=True, text=True
        ).stdout
    )


def test_a_failing_test_fails_the_test_stage(tree: Path) -> None:
    """The 3.11 stage is `python -m pytest` with the project's own configuration; the copy
    keeps only the suite's support modules and one planted failure, so this stays quick."""
    for target in (tree / "tests").iterdir():
        if target.is_dir():
            shutil.rmtree(target)
        elif target.name.startswith("test_"):
            target.unlink()
    (tree / "tests" / "test_planted.py").write_text(CANARY)
    failed = run_stage(tree, "pytest")
    assert failed.returncode != 0 and "test_planted_failure" in failed.stdout
