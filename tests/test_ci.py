"""CI checks the code itself: `.ci/run`'s lint, type and test stages fail on a lint error, a
type error, or a failing test on either Python version. Each check runs on a copy of the
tree with one defect planted, and passes on the same copy without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV313 = ROOT / ".venv-py313"


def run_stage(tree: Path, stage: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI_VENV313": str(VENV313)}
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
