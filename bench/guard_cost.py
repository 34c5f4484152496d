"""CPU of the default during-stage stream guard (`default_policies = true`: secrets-in-answer
and payment-cards) per 50-token answer of the fake upstream's words (bench/upstream.py WORDS,
one of them non-ASCII), and of the same words without the non-ASCII one. Best of 5 rounds of
100 answers. It imports only gateway.policy, so it also measures an older tree's:

    python -m bench.guard_cost
    git archive fc3155e gateway | tar -x -C /tmp/old && python -m bench.guard_cost --src /tmp/old
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from typing import Any

from bench.upstream import WORDS

TOKENS = 50


def default_policies() -> list[Any]:
    try:
        module = importlib.import_module("gateway.policy.defaults")
    except ImportError:  # trees before gateway/policy/defaults.py
        module = importlib.import_module("gateway.policy.engine")
    return list(module.default_policies())


def per_answer_ms(words: tuple[str, ...], rounds: int = 5, answers: int = 100) -> float:
    from gateway.policy import StreamGuard
    from gateway.policy.engine import compile_policy

    policies = [compile_policy(s) for s in default_policies() if "during" in s.stages]
    tokens = [words[i % len(words)] for i in range(TOKENS)]
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(answers):
            guard = StreamGuard(policies)
            for token in tokens:
                guard.feed(token)
            guard.finish()
        best = min(best, (time.process_time() - t0) / answers * 1000)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guard_cost", description=__doc__)
    parser.add_argument("--src", help="a folder holding another tree's gateway/ package")
    args = parser.parse_args(argv)
    if args.src:
        sys.path.insert(0, args.src)
    import gateway

    print(f"gateway from {gateway.__file__}")
    ascii_only = tuple(w for w in WORDS if w.isascii())
    for name, words in (("the bench's words", WORDS), ("the same, ASCII only", ascii_only)):
        print(f"{name}: {per_answer_ms(words):.3f} ms CPU per {TOKENS}-token answer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
