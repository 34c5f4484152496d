"""bench.hotpath runs end to end on tiny counts and prints one row per check (no timing is
asserted: the figures are for people, on a quiet machine)."""

from __future__ import annotations

from bench import hotpath


def test_hotpath_prints_every_check(capsys) -> None:
    assert hotpath.main(["--n", "50", "--redis-n", "10", "--rounds", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line.split("  ")[0] for line in out[1:]]
    assert len(names) == len(hotpath.TOKENS) + 5
    assert any(n.startswith("direct turn's PING") for n in names)
    assert all(line.rstrip().endswith(("ns", "µs")) for line in out[1:])
