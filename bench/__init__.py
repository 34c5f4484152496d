"""The benchmark: a fast fake upstream, a lean load generator and the scenarios that drive a
real `python -m gateway serve` with them. `python -m bench` runs every scenario."""
