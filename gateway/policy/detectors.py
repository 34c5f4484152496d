"""Detectors: pure functions from text to the spans a policy cares about.

Every detector answers two questions about a text, with no I/O and no state:
- `find(text, start)`: the matches that begin at or after `start` (sorted, non-overlapping);
  what lies before `start` is read only as left context (word boundaries, `password=`).
- `holdback(text)`: how many trailing characters more text could still turn into (part of)
  a match. The during stage releases everything before them at once; 0 for most prose.
- `triggers`: the regexes those two answers depend on (see triggers.py): in a text where
  none of them matches, `find` finds nothing and `holdback` is 0. None: no such promise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from gateway.policy.partial import join_tails, tail_sources
from gateway.policy.prefilter import Prefilter
from gateway.policy.triggers import Trigger, Triggers


@dataclass(frozen=True, slots=True)
class Match:
    start: int
    end: int
    label: str  # "card", "email", "openai_key", "keyword", ...


class Detector(Protocol):
    lookbehind: int  # characters of left context `find` may read before `start`
    triggers: Triggers | None

    def find(self, text: str, start: int = 0) -> list[Match]: ...

    def holdback(self, text: str) -> int: ...


Spans = Callable[[str, "re.Match[str]"], Iterable[tuple[int, int]]]
Check = Callable[[str, int, int], bool]


def lower_same_length(text: str) -> str | None:
    """`text.lower()` when it keeps every offset (always for ASCII), else None."""
    low = text.lower()
    return low if len(low) == len(text) else None


def last_space(text: str, lo: int) -> int:
    """Index of the last space, newline or tab at or after `lo`, or -1."""
    return max(text.rfind(" ", lo), text.rfind("\n", lo), text.rfind("\t", lo))


def has_any(text: str, needles: Sequence[str]) -> bool:
    for needle in needles:  # a plain loop: no generator to build on every token
        if needle in text:
            return True
    return False


def resolve(matches: list[Match]) -> list[Match]:
    """Sort, and merge matches that overlap into one (labelled after the earliest).

    Merging, not dropping, keeps the answer the same however a text is split: a match that
    was dropped could hide a different match that a scan starting elsewhere would find."""
    if len(matches) < 2:
        return matches
    matches.sort(key=lambda m: (m.start, -m.end))
    merged = [matches[0]]
    for m in matches[1:]:
        last = merged[-1]
        if m.start < last.end:
            if m.end > last.end:
                merged[-1] = Match(last.start, m.end, last.label)
        else:
            merged.append(m)
    return merged


class Shape:
    """One family of matches: a candidate pattern, a check, and what to withhold.

    pattern   the candidate regex (lower-case when `casefold`: it then runs on lowered text)
    check     (text, start, end) -> bool, for what a regex cannot say (Luhn, mod 97, entropy)
    spans     (text, match) -> spans, when one candidate may hold several matches (cards)
    group     the group whose span is reported (`password=` is context, the value is not)
    hints     substrings of which one must occur for the pattern to be worth running
    requires  more such substrings, tested first (one find each; for anchored shapes, whose
              hints are where matches start, a cheap test that rules most texts out)
    anchored  every match begins with one of the hints: try the pattern only where they occur
    back      how far before the reported span the pattern may start to match
    context   how far before a candidate `check` or `spans` read (context words)
    reach     the longest tail this shape ever withholds
    spaceless matches never contain whitespace, so a tail starts after the last space
    non_ascii matches contain only non-ASCII characters: skipped at once on ASCII text
    hold      False when the detector withholds this shape's tails by other means
    presence  a regex that matches somewhere in every text where the shape finds a match,
              tighter than the pattern itself (see prefilter.py): the detector skips the
              shape where it does not match
    """

    def __init__(
        self,
        label: str,
        pattern: str,
        *,
        check: Check | None = None,
        spans: Spans | None = None,
        group: int | str = 0,
        hints: Sequence[str] = (),
        requires: Sequence[str] = (),
        anchored: bool = False,
        back: int = 0,
        context: int = 0,
        reach: int = 64,
        spaceless: bool = False,
        casefold: bool = False,
        non_ascii: bool = False,
        hold: bool = True,
        presence: str | None = None,
    ) -> None:
        self.label = label
        self.pattern = re.compile(pattern)
        self.presence = re.compile(presence) if presence is not None else None
        self.check = check
        self.spans = spans
        self.group = group
        self.hints = tuple(hints)
        self.requires = tuple(requires)
        self.anchored = anchored and bool(hints)
        self.back = back
        self.context = context
        self.spaceless = spaceless
        self.casefold = casefold
        self.non_ascii = non_ascii
        self.tail: Tail | None = None
        if hold:
            self.tail = Tail.derive(
                self.pattern,
                reach=reach,
                spaceless=spaceless,
                casefold=casefold,
                non_ascii=non_ascii,
            )

    @cached_property
    def ci(self) -> re.Pattern[str]:
        """The pattern for text whose lowering would change its length (casefold shapes)."""
        return re.compile(self.pattern.pattern, re.IGNORECASE) if self.casefold else self.pattern

    def collect(self, text: str, low: str | None, start: int, out: list[Match]) -> None:
        """Append the matches beginning at `start` or later.

        `low` is the text lowered (see `lower_same_length`), needed by `casefold` shapes."""
        if self.casefold and low is not None:
            subject, pattern = low, self.pattern
        else:
            subject, pattern = text, self.ci
        exact = low is not None or not self.casefold  # substring tests are exact on `subject`
        if exact and self.requires and not has_any(subject, self.requires):
            return
        if self.hints and exact and not self.anchored and not has_any(subject, self.hints):
            return
        if self.non_ascii and subject.isascii():
            return
        label, spans, group = self.label, self.spans, self.group
        pos = max(0, start - self.back)
        if spans is not None and not self.anchored:
            self._spanned(text, subject, pattern, pos, start, out)
            return
        if self.anchored:
            candidates = self._anchored(text, subject, pattern, pos)
        elif self.check is None:
            candidates = pattern.finditer(subject, pos)
        else:
            candidates = self._checked(text, subject, pattern, pos)
        if spans is not None:
            for m in candidates:
                out.extend(Match(s, e, label) for s, e in spans(text, m) if s >= start)
            return
        for m in candidates:
            s, e = m.span(group)
            if s >= start and e > s:
                out.append(Match(s, e, label))

    def _checked(
        self, text: str, subject: str, pattern: re.Pattern[str], pos: int
    ) -> Iterator[re.Match[str]]:
        # A rejected candidate must not hide a match that starts inside it: the scan goes on
        # from the next character, so where a scan starts never changes what it finds.
        check, group, search = self.check, self.group, pattern.search
        while (m := search(subject, pos)) is not None:
            if check is None or check(text, *m.span(group)):
                yield m
                pos = m.end() if m.end() > pos else pos + 1
            else:
                pos = m.start() + 1

    def _spanned(
        self, text: str, subject: str, pattern: re.Pattern[str], pos: int, start: int,
        out: list[Match],
    ) -> None:  # fmt: skip
        # As in _checked: a candidate that holds no match must not hide one that starts
        # inside it, so the scan goes on from its next character.
        assert self.spans is not None
        spans, label, search = self.spans, self.label, pattern.search
        while (m := search(subject, pos)) is not None:
            last = -1
            for s, e in spans(text, m):
                if s >= start:
                    out.append(Match(s, e, label))
                last = max(last, e)
            pos = last if last > m.start() else m.start() + 1

    def _anchored(
        self, text: str, subject: str, pattern: re.Pattern[str], pos: int
    ) -> Iterator[re.Match[str]]:
        """Leftmost-first matches, tried only where an anchor occurs (str.find is fast).

        With `spans`, a candidate may hold no match (the spans say so later): candidates may
        then overlap, so that one never hides another, wherever the scan starts."""
        places = [i for a in self.hints for i in _occurrences(subject, a, pos)]
        if not places:
            return
        if len(places) > 1:
            places = sorted(set(places))
        check, group, free = self.check, self.group, pos
        overlap = self.spans is not None
        for i in places:
            if i < free:
                continue
            m = pattern.match(subject, i)
            if m is None or (check is not None and not check(text, *m.span(group))):
                continue
            if not overlap:
                free = m.end()
            yield m


def _occurrences(text: str, needle: str, pos: int) -> Iterator[int]:
    i = text.find(needle, pos)
    while i >= 0:
        yield i
        i = text.find(needle, i + 1)


class Tail:
    """The hold-back of one or more patterns: `P1\\Z|P2\\Z|...`, searched near the end.

    Compiled on first use; the case-insensitive twin (for the rare text whose lowering
    changes its length) only if it is ever needed."""

    def __init__(
        self,
        source: str,
        flags: int,
        *,
        reach: int,
        spaceless: bool = False,
        casefold: bool = False,
        non_ascii: bool = False,
    ) -> None:
        self.source = source
        self.flags = flags
        self.reach = reach
        self.spaceless = spaceless
        self.casefold = casefold
        self.non_ascii = non_ascii

    @classmethod
    def derive(cls, pattern: re.Pattern[str], *, reach: int, **options: bool) -> Tail:
        derived = tail_sources(pattern)
        if derived is None:
            raise ValueError(f"cannot derive the hold-back of {pattern.pattern!r}")
        sources, lookahead, flags, width = derived
        if width is not None:
            reach = min(reach, width + lookahead + 1)
        return cls(join_tails(sources), flags, reach=reach, **options)

    @classmethod
    def merge(cls, tails: Sequence[Tail]) -> Tail:
        """One search instead of several: tails that treat text alike become alternatives."""
        first = tails[0]
        if len(tails) == 1:
            return first
        return cls(
            "|".join(t.source for t in tails),
            first.flags,
            reach=max(t.reach for t in tails),
            spaceless=first.spaceless,
            casefold=first.casefold,
            non_ascii=first.non_ascii,
        )

    @cached_property
    def tail(self) -> re.Pattern[str]:
        return re.compile(self.source, self.flags)

    def prepare(self) -> Tail:
        """Compile now, at start, rather than on the first streamed token."""
        self.tail  # noqa: B018 - the property compiles and keeps the pattern
        return self

    @cached_property
    def tail_ci(self) -> re.Pattern[str]:
        return re.compile(self.source, self.flags | re.IGNORECASE) if self.casefold else self.tail

    def holdback(self, text: str, low: str | None) -> int:
        if self.casefold and low is not None:
            subject, tail = low, self.tail
        else:
            subject, tail = text, self.tail_ci
        if self.non_ascii and subject.isascii():
            return 0
        n = len(subject)
        lo = n - self.reach if n > self.reach else 0
        if self.spaceless:
            space = last_space(subject, lo)
            if space >= lo:
                lo = space + 1
        if lo >= n:
            return 0
        m = tail.search(subject, lo)
        return n - m.start() if m is not None else 0


class Hold:
    """A value still arriving after the words that make it one (`password is hun`): the
    pattern ends in `(?P<hold>...)\\Z`, and what that group matched is withheld. Only the
    value is ever a match, so the key words before it go to the client at once.

    casefold: the pattern is lower-case and runs on the lowered text (as Shape's).
    hints: substrings of which one must occur in the last `reach` characters."""

    def __init__(
        self,
        pattern: str,
        *,
        casefold: bool = False,
        hints: Sequence[str] = (),
        reach: int = 320,
    ) -> None:
        self.pattern = re.compile(pattern)
        self.casefold = casefold
        self.hints = tuple(hints)
        self.reach = reach

    @cached_property
    def ci(self) -> re.Pattern[str]:
        return re.compile(self.pattern.pattern, re.IGNORECASE) if self.casefold else self.pattern

    def holdback(self, text: str, low: str | None) -> int:
        if self.casefold and low is not None:
            subject, pattern = low, self.pattern
        else:
            subject, pattern = text, self.ci
        n = len(subject)
        lo = n - self.reach if n > self.reach else 0
        if self.hints and not any(subject.find(h, lo) >= 0 for h in self.hints):
            return 0
        m = pattern.search(subject, lo)
        return n - m.start("hold") if m is not None else 0


class ShapeDetector:
    """A detector made of shapes: pii, secrets, prompt injection."""

    def __init__(
        self,
        shapes: Sequence[Shape],
        *,
        holds: Sequence[Hold] = (),
        extra_holdback: Callable[[str], int] | None = None,
        extra_triggers: Sequence[Trigger] | None = None,
    ):
        """holds: values withheld by their key words (see Hold); extra_triggers: the
        regexes without a match of which extra_holdback is 0."""
        self.shapes = tuple(shapes)
        self._prefilter = Prefilter(self.shapes)
        self.holds = tuple(holds)
        self.lookbehind = max((max(s.back, s.context) for s in shapes), default=0) + 16
        self._casefold = any(s.casefold for s in shapes) or any(h.casefold for h in holds)
        self._extra = extra_holdback
        alike: dict[tuple[bool, bool, bool, int], list[Tail]] = {}
        for shape in shapes:
            t = shape.tail
            if t is not None:
                key = (t.spaceless, t.casefold, t.non_ascii, t.flags)
                alike.setdefault(key, []).append(t)
        self._tails = tuple(Tail.merge(group) for group in alike.values())
        for tail in self._tails:
            tail.prepare()
        # Case-folding shapes and tails run on the lowered text (always, for ASCII text).
        raw: list[Trigger] = []
        lowered: list[Trigger] = []
        for shape in shapes:
            (lowered if shape.casefold else raw).append(Trigger(shape.pattern))
        for tail in self._tails:
            (lowered if tail.casefold else raw).append(Trigger(tail.tail, tail=True))
        for hold in self.holds:
            (lowered if hold.casefold else raw).append(Trigger(hold.pattern, tail=True))
        self.triggers: Triggers | None = None
        if extra_holdback is None or extra_triggers is not None:
            self.triggers = Triggers(tuple(raw) + tuple(extra_triggers or ()), tuple(lowered))

    def find(self, text: str, start: int = 0) -> list[Match]:
        found: list[Match] = []
        low = lower_same_length(text) if self._casefold else None
        for shape in self._prefilter.select(text, low):
            shape.collect(text, low, start, found)
        return resolve(found)

    def holdback(self, text: str) -> int:
        hold = self._extra(text) if self._extra is not None else 0
        low = lower_same_length(text) if self._casefold else None
        for tail in self._tails:
            h = tail.holdback(text, low)
            hold = max(hold, h)
        for value in self.holds:
            h = value.holdback(text, low)
            hold = max(hold, h)
        return hold


class KeywordDetector:
    """Thousands of words or phrases in one pass: a trie compiled into a single regex.

    Case-insensitive, and word-boundary aware: a keyword that starts (ends) with a letter or
    digit does not match right after (before) another one, so `bluebird` is not found in
    `bluebirds`. Whitespace inside a phrase matches any run of whitespace.
    """

    lookbehind = 2

    def __init__(self, keywords: Iterable[str], *, label: str = "keyword") -> None:
        words = sorted({" ".join(k.lower().split()) for k in keywords} - {""})
        if not words:
            raise ValueError("keywords: at least one non-blank keyword is needed")
        source = _trie_source(words) + r"(?!(?<=\w)\w)"
        self.shape = Shape(label, source, casefold=True, reach=2 * max(map(len, words)) + 16)
        self._tail = self.shape.tail.prepare()  # type: ignore[union-attr]
        self.label = label
        self.triggers: Triggers | None = Triggers(
            lowered=(Trigger(self.shape.pattern), Trigger(self._tail.tail, tail=True))
        )
        # With many keywords the regex tries most letters; a set lookup of the text's words
        # first rules out most texts at once (when every keyword starts with a word).
        firsts = [_WORD.match(w) for w in words]
        self._firsts = (
            frozenset(m.group() for m in firsts if m) if len(words) >= 64 and all(firsts) else None
        )

    def find(self, text: str, start: int = 0) -> list[Match]:
        found: list[Match] = []
        low = lower_same_length(text)
        if (
            self._firsts is not None
            and low is not None
            and self._firsts.isdisjoint(_WORD.findall(low, start))
        ):
            return found
        self.shape.collect(text, low, start, found)
        return found

    def holdback(self, text: str) -> int:
        return self._tail.holdback(text, lower_same_length(text))


_END = ""
_WORD = re.compile(r"\w+")


_Trie = dict[str, "_Trie | bool"]


def _trie_source(words: Sequence[str]) -> str:
    root: _Trie = {}
    for word in words:
        node = root
        for ch in word:
            child = node.setdefault(ch, {})
            assert isinstance(child, dict)
            node = child
        node[_END] = True
    return "(?:" + _trie_node(root, first=True) + ")"


def _trie_node(node: _Trie, *, first: bool = False) -> str:
    alternatives = []
    for ch in sorted(k for k in node if k != _END):
        atom = r"\s+" if ch == " " else re.escape(ch)
        if first:
            # The start boundary, tested after the first character so that the regex engine
            # can still skip ahead to the characters that begin some keyword.
            atom += r"(?<!\w\w)"
        child = node[ch]
        assert isinstance(child, dict)
        alternatives.append(atom + _trie_node(child))
    if not alternatives:
        return ""
    body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
    if _END in node:
        return f"(?:{body})?"
    return body
