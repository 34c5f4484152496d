"""`python -m bench.ttft` takes turns between the trees and summarises by medians; it
refuses rows it does not have. (The measuring run starts two gateways and streams for
minutes: it is a benchmark, not a test.)"""

from __future__ import annotations

import pytest

from bench import ttft


def test_the_trees_take_turns_so_neither_always_goes_first() -> None:
    assert list(ttft.turns(3)) == [(0, "A"), (0, "B"), (1, "B"), (1, "A"), (2, "A"), (2, "B")]


def test_percentiles_and_the_summary_are_medians_over_the_rounds() -> None:
    values = [float(v) for v in range(1, 101)]
    assert ttft.percentile(values, 0.5) == 51.0 and ttft.percentile(values, 0.99) == 100.0
    assert ttft.percentile([3.0], 0.99) == 3.0
    lines = ttft.summary(
        {
            ("B", "conversation"): [(1.2, 1.9), (1.0, 2.5), (1.1, 1.7)],
            ("A", "conversation"): [(1.5, 2.0), (1.4, 2.2), (1.9, 4.0)],
        }
    )
    assert lines == [
        "A conversation   TTFT p50 1.500 ms  p99 2.200 ms  (3 runs)",
        "B conversation   TTFT p50 1.100 ms  p99 1.900 ms  (3 runs)",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--src", ".", "--only", "portkey"],
        ["--src", ".", "--rounds", "0"],
        ["--src", ".", "--streams", "0"],
    ],
)
def test_rows_it_does_not_have_and_empty_runs_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ttft.main(argv)
    assert exc.value.code == 2
