"""Operators' own regular expressions, run on RE2: time linear in the text, whatever the pattern.

An org admin's pattern runs on every prompt and streamed answer of their tenants, on the
event loop that serves every other tenant too. A backtracking engine (`re`) can take
exponential time on patterns that look harmless (`(a|aa)*b`, `(.*a){12}b`); RE2 compiles
to an automaton and never backtracks, so a match costs time proportional to the text times
the (bounded) size of the compiled program. The price is RE2's syntax: no look-around and no
back-references (refused when the policy is loaded, with the reason).

A pattern is parsed once (syntax.py), and both what runs and its hold-back (partial.py) are
written from that one tree, so they can never disagree about what the pattern means.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, cast

import re2  # type: ignore[import-untyped]

from gateway.policy.detectors import Match, resolve
from gateway.policy.partial import join_tails, tail_sources
from gateway.policy.syntax import SCOPED_FLAGS, Pattern, Unsupported, Writer, literal_prefix, parse
from gateway.policy.triggers import Triggers

MAX_PATTERN_CHARS = 1000
# RE2 program size (instructions) of a pattern or its hold-back: the matching cost per
# character grows with it when RE2 falls back from its DFA to its NFA.
MAX_PROGRAM_SIZE = 20_000
# Memory RE2 may use per compiled pattern (its DFA cache); past it, RE2 falls back to the
# NFA, still linear.
MAX_MEM = 4 << 20
# The text is searched in windows: one search never reads more than a window plus the
# longest match, so a pattern whose matches may be long costs linear time overall.
REGEX_WINDOW = 8192
REGEX_MAX_MATCH = 1024
# A pattern still being matched is withheld for at most this many characters.
REGEX_HOLD = 256


_ON_RE2 = "not supported by RE2, the linear-time engine policy patterns run on"


class PatternError(ValueError):
    """Why an operator's pattern is refused (shown to the operator as is)."""


class Re2Match(Protocol):
    def start(self, group: int = 0) -> int: ...

    def end(self, group: int = 0) -> int: ...


class Re2Regexp(Protocol):
    """What we use of a compiled RE2 pattern (the `re2` module ships no type hints)."""

    @property
    def programsize(self) -> int: ...

    def search(self, text: str, pos: int = ..., endpos: int = ...) -> Re2Match | None: ...

    def finditer(self, text: str, pos: int = ..., endpos: int = ...) -> Iterator[Re2Match]: ...


def _options() -> object:
    options = re2.Options()
    options.max_mem = MAX_MEM
    options.log_errors = False  # the error comes back to us; no line on stderr
    return cast(object, options)


_OPTIONS = _options()


def compile_re2(source: str) -> Re2Regexp:
    """Compile RE2 syntax; raises PatternError with RE2's reason."""
    try:
        return cast(Re2Regexp, re2.compile(source, _OPTIONS))
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise PatternError(f"RE2 refuses it: {reason}") from None


class OperatorPattern:
    """One pattern, checked and compiled: what runs, its hold-back, and the literal prefix
    every match starts with."""

    def __init__(self, source: str) -> None:
        if len(source) > MAX_PATTERN_CHARS:
            raise PatternError(f"a pattern has at most {MAX_PATTERN_CHARS} characters")
        try:
            tree = parse(source)
        except re.error as exc:
            raise PatternError(f"not a valid regular expression: {exc}") from None
        except Unsupported as exc:
            raise PatternError(f"{_ON_RE2}: {exc}") from None
        self.source = source
        self.tree: Pattern = tree
        try:
            self.canonical = Writer("re2").pattern(tree)
        except Unsupported as exc:
            raise PatternError(f"{_ON_RE2}: {exc}") from None
        self.regex = compile_re2(self.canonical)
        if self.regex.search("") is not None:
            raise PatternError("the pattern matches the empty string, so it would match everywhere")
        derived = tail_sources(tree, "re2")
        if derived is None:
            raise PatternError("cannot derive what to hold back while an answer streams")
        sources, lookahead, _, longest = derived
        self.tail_source = Writer("re2").wrap(tree.flags & SCOPED_FLAGS, join_tails(sources, "re2"))
        self.tail = compile_re2(self.tail_source)
        for compiled in (self.regex, self.tail):
            if compiled.programsize > MAX_PROGRAM_SIZE:
                raise PatternError(
                    f"the pattern is too large once compiled ({compiled.programsize} "
                    f"instructions, at most {MAX_PROGRAM_SIZE}); split it or bound its repeats"
                )
        self.reach = REGEX_HOLD if longest is None else min(REGEX_HOLD, longest + lookahead + 1)
        self.prefix = literal_prefix(tree)


def check_pattern(source: str) -> str:
    """`source` when it can run as a policy pattern; else PatternError saying why."""
    OperatorPattern(source)
    return source


class RegexDetector:
    """An operator's own pattern(s), compiled once on RE2, scanned in bounded windows."""

    lookbehind = 64

    def __init__(self, patterns: Sequence[str], *, label: str = "regex") -> None:
        self.label = label
        self.patterns = [OperatorPattern(p) for p in patterns]
        # Where any of them (or its hold-back) matches, the detector may act; elsewhere the
        # stream's fast path passes text on. Searched with RE2 too: never with `re`.
        union = "|".join(f"(?:{p.canonical})|(?:{p.tail_source})" for p in self.patterns)
        self.triggers: Triggers | None = Triggers(linear=(compile_re2(union),))

    def find(self, text: str, start: int = 0) -> list[Match]:
        found: list[Match] = []
        for pattern in self.patterns:
            if pattern.prefix and text.find(pattern.prefix, start) < 0:
                continue
            found.extend(self._scan(pattern.regex, text, start))
        return resolve(found)

    def _scan(self, regex: Re2Regexp, text: str, start: int) -> Iterable[Match]:
        n = len(text)
        pos = start
        while pos < n:
            stop = min(n, pos + REGEX_WINDOW)
            limit = min(n, stop + REGEX_MAX_MATCH)
            last = stop
            for m in regex.finditer(text, pos, limit):
                if m.start() >= stop:
                    break
                if m.end() > m.start():
                    yield Match(m.start(), m.end(), self.label)
                    last = max(last, m.end())
            pos = last

    def holdback(self, text: str) -> int:
        hold = 0
        n = len(text)
        for pattern in self.patterns:
            lo = max(0, n - pattern.reach)
            m = pattern.tail.search(text, lo)
            if m is not None:
                hold = max(hold, n - m.start())
        return hold
