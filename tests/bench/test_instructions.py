"""`python -m bench.instructions` reads the instruction count from the dump callgrind wrote
last, and says what it needs when valgrind is not there. (The counting run itself takes
minutes under valgrind: it is a benchmark, not a test.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench import instructions

# The head and tail of a real dump (callgrind 3.19), the counts cut short.
DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 3160
cmd:  python -m gateway serve --workers 1
part: {part}

events: Ir
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
0 168169093
totals: {total}
"""


def test_the_count_is_the_newest_dumps_total(tmp_path: Path) -> None:
    out = tmp_path / "callgrind-1.out"
    (tmp_path / "callgrind-1.out.1").write_text(DUMP.format(part=1, total=1000))
    newer = tmp_path / "callgrind-1.out.2"
    newer.write_text(DUMP.format(part=2, total=633858034))
    later = time.time() + 5
    os.utime(newer, (later, later))
    (tmp_path / "callgrind-2.out.1").write_text(DUMP.format(part=1, total=7))  # another run's
    dump = instructions.newest_dump(out)
    assert dump == newer
    assert instructions.counted(dump) == 633858034


def test_a_missing_or_unreadable_dump_is_an_error_not_a_zero(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no dump"):
        instructions.newest_dump(tmp_path / "callgrind-9.out")
    broken = tmp_path / "callgrind-9.out.1"
    broken.write_text("# callgrind format\nevents: Ir\n")  # cut before its totals
    with pytest.raises(RuntimeError, match="no instruction total"):
        instructions.counted(instructions.newest_dump(tmp_path / "callgrind-9.out"))


def test_without_valgrind_it_says_so_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no valgrind on it
    assert instructions.main(["--streams", "1"]) == 2
    assert "needs valgrind" in capsys.readouterr().err
