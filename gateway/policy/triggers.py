"""Where a detector could act: one regex that finds every place in a text where some detector
could match or hold text back, so that the during stage can release text without one.

Each detector names the regexes its `find` and `holdback` can only answer through (its
`triggers`). This module distributes each of them over the first character it consumes,
`x(?:rest)` for every way a match can begin, and joins them into one search that the regex
engine can skip through to the places where such a character occurs. The rest is re-emitted
exactly; only a look-ahead or anchor before the first character is dropped (a superset). So
when the joined regex finds nothing in a text, none of the regexes matches there, and no
detector finds or holds anything in it. A hold-back's tail counts only its non-empty
matches: the empty one at the end of the text holds nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from gateway.policy.syntax import (
    IGNORECASE,
    SCOPED_FLAGS,
    Alt,
    Anchor,
    Atomic,
    Char,
    Fail,
    Group,
    Look,
    Node,
    Repeat,
    Seq,
    Unsupported,
    Writer,
    parse,
)

# Anchors that read the character at or after their position.
_READ_AHEAD = {"\\b", "\\B", "$", "\\Z"}
# Ways to begin one regex may have before it is not worth a fast path (a pattern this
# tangled is rare: an operator's own, most likely).
_MAX_OPENINGS = 512
_MAX_STEPS = 20_000
# A first-character class up to this size becomes literals (in the Basic Multilingual Plane,
# where the regex engine tests a set of them with a bitmap).
_EXPAND = 32


class Span(Protocol):
    def start(self) -> int: ...

    def end(self) -> int: ...


class Searcher(Protocol):
    def search(self, text: str) -> Span | None: ...


@dataclass(frozen=True, slots=True)
class Trigger:
    """A regex whose matches, wherever they are, are where a detector may act.

    tail: the regex is a hold-back (`P\\Z|...`): only its non-empty matches count.
    ahead: False when the detector runs the regex on a truncated text (an `endpos`), where
    an anchor or look-ahead may pass that would fail on the whole text: they are dropped."""

    pattern: re.Pattern[str]
    tail: bool = False
    ahead: bool = True


@dataclass(frozen=True, slots=True)
class Triggers:
    """A detector's triggers: `raw` are searched in the text as given, `lowered` in its
    lower-case form (the detector's case-folding shapes run there; ASCII text only),
    `linear` as given, already compiled."""

    raw: tuple[Trigger, ...] = ()
    lowered: tuple[Trigger, ...] = ()
    # Compiled RE2 patterns searched as they are (operators' patterns: never run on `re`).
    linear: tuple[Searcher, ...] = ()


@lru_cache(maxsize=64)
def compile_triggers(triggers: tuple[Trigger, ...]) -> re.Pattern[str] | None:
    """One regex that matches somewhere in every text in which one of `triggers` matches
    (a non-empty match, for tails); None when a trigger cannot be distributed. Cached: a
    policy set rebuilt with the same detectors compiles nothing again."""
    # first character -> look-behinds moved after it -> what must follow
    groups: dict[str, dict[str, list[str]]] = {}
    for trigger in triggers:
        openings = _openings(trigger)
        if openings is None:
            return None
        for item, flags, behind, rest in openings:
            for first in _expand(item, flags):
                tails = groups.setdefault(first, {}).setdefault(behind, [])
                if rest not in tails:
                    tails.append(rest)
    if not groups:
        return re.compile("(?!)")
    branches = []
    for first, by_behind in groups.items():
        bodies = [behind + _group(rests) for behind, rests in by_behind.items()]
        branches.append(first + ("" if "" in bodies else _group(bodies)))
    # When every branch begins with a literal character, the regex engine skips at C speed
    # to the places where one of them occurs.
    return re.compile("|".join(branches))


def _group(alternatives: list[str]) -> str:
    if "" in alternatives:
        return ""  # what came before is a match already: the rest cannot matter
    if len(alternatives) == 1:
        return alternatives[0]
    return "(?:" + "|".join(alternatives) + ")"


# An opening: the first character consumed, with the flags in force there; the look-behinds
# moved after it; and what must follow it.
Opening = tuple[Char, int, str, str]


def _expand(first: Char, flags: int) -> list[str]:
    """A first character as the literal characters it stands for (a small class, and no
    case folding that could add others), or as itself."""
    codes: list[int] = []
    if first.kind == "literal":
        codes.append(first.code)
    elif first.kind == "class" and not first.negate:
        for item in first.items:
            if isinstance(item, str) or item[1] - item[0] >= _EXPAND:
                codes = []
                break
            codes.extend(range(item[0], item[1] + 1))
    write = Writer("re")
    # Ignoring case adds nothing to ASCII digits and punctuation; any letter, and any
    # character beyond ASCII, may have partners (KELVIN SIGN folds to k): kept whole.
    uncased = not flags & IGNORECASE or all(c < 128 and not chr(c).isalpha() for c in codes)
    if codes and len(codes) <= _EXPAND and max(codes) <= 0xFFFF and uncased:
        return [write.char(code) for code in dict.fromkeys(codes)]
    return [write.wrap(flags, write.single(first))]


class _Emitter(Writer):
    """Writes nodes exactly; with ahead=False, anchors and look-aheads become nothing."""

    def __init__(self, *, ahead: bool) -> None:
        super().__init__("re")
        self.ahead = ahead

    def exact(self, node: Node, *, loose: bool = False) -> str:
        # Exact where partial.py loosens: inside a negative look-around, a looser pattern
        # would make the whole stricter.
        if not self.ahead:
            if _reads_ahead(node):
                return ""
            if isinstance(node, Look) and node.negate and _reads_ahead_anywhere(node.seq):
                return ""  # a negative assertion can only be dropped whole
        return super().exact(node, loose=False)

    def rest(self, todo: tuple[tuple[Node, int], ...]) -> str:
        """Nodes with their flags, as one source that needs no global flags."""
        out = []
        run: list[str] = []
        flags: int | None = None
        for node, f in todo:
            f &= SCOPED_FLAGS
            if f != flags and run:
                out.append(self.wrap(flags or 0, "".join(run)))
                run = []
            flags = f
            run.append(self.exact(node))
        if run:
            out.append(self.wrap(flags or 0, "".join(run)))
        return "".join(out)


def _reads_ahead(node: Node) -> bool:
    if isinstance(node, Anchor):
        return node.at in _READ_AHEAD
    return isinstance(node, Look) and not node.behind


def _reads_ahead_anywhere(seq: Seq) -> bool:
    return any(
        _reads_ahead(node) or any(_reads_ahead_anywhere(inner) for inner in _inside(node))
        for node in seq
    )


def _inside(node: Node) -> list[Seq]:
    if isinstance(node, Alt):
        return list(node.branches)
    if isinstance(node, (Group, Repeat, Atomic, Look)):
        return [node.seq]
    return []


def _openings(trigger: Trigger) -> list[Opening] | None:  # noqa: C901, RUF100 - a case per node
    """(first character, its flags, look-behinds moved after it, what must follow) for
    every way a match can begin: walk the tree to each character consumed first."""
    pattern = trigger.pattern
    try:
        tree = parse(pattern.pattern, pattern.flags)
    except (re.error, Unsupported):
        return None
    emit = _Emitter(ahead=trigger.ahead)
    out: list[Opening] = []
    Todo = tuple[tuple[Node, int], ...]
    stack: list[tuple[Todo, tuple[str, ...]]] = [(_items(tree.seq, tree.flags), ())]
    steps = 0
    try:
        while stack:
            steps += 1
            if steps > _MAX_STEPS or len(out) > _MAX_OPENINGS:
                return None
            todo, behind = stack.pop()
            if not todo:
                if trigger.tail:
                    continue  # an empty match: for a tail, the one at the end, holding nothing
                return None  # matches without consuming anything: could be anywhere
            (node, f), rest = todo[0], todo[1:]
            if isinstance(node, Char):
                out.append((node, f & SCOPED_FLAGS, "".join(behind), emit.rest(rest)))
            elif isinstance(node, Group):
                inner = (f | node.add) & ~node.remove
                stack.append((_items(node.seq, inner) + rest, behind))
            elif isinstance(node, Atomic):
                stack.append((_items(node.seq, f) + rest, behind))
            elif isinstance(node, Alt):
                for branch in reversed(node.branches):
                    stack.append((_items(branch, f) + rest, behind))
            elif isinstance(node, Repeat):
                if node.high is None or node.high > 0:
                    again: Todo = ()
                    if node.high != 1:
                        left = None if node.high is None else node.high - 1
                        again = ((Repeat(node.seq, max(node.low - 1, 0), left,
                                         node.lazy, node.possessive), f),)  # fmt: skip
                    stack.append((_items(node.seq, f) + again + rest, behind))
                if node.low == 0:
                    stack.append((rest, behind))
            elif isinstance(node, Look) and node.behind:
                # A look-behind before the first character moves after it, reading one more:
                # `(?<!W)x` is `x(?<!W[\s\S])`.
                source = emit.exact(node)
                if source:
                    moved = source[:-1] + r"[\s\S])"
                    behind = (*behind, emit.wrap(f & SCOPED_FLAGS, moved))
                stack.append((rest, behind))
            elif isinstance(node, Fail):
                continue  # nothing begins here
            else:
                stack.append((rest, behind))  # dropped: passing it always is a superset
    except (Unsupported, RecursionError):
        return None
    return out


def _items(seq: Seq, flags: int) -> tuple[tuple[Node, int], ...]:
    return tuple((node, flags) for node in seq)
