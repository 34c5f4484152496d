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

import _sre  # type: ignore[import-not-found]
import re
from dataclasses import dataclass
from functools import lru_cache
from re import _compiler  # type: ignore[attr-defined]
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as P  # type: ignore[attr-defined]

from gateway.policy.partial import UNBOUNDED, Unsupported, _Builder, _char

_SINGLE_CHAR = (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN, C.CATEGORY)
_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT)
_FLAG_LETTERS = (
    (C.SRE_FLAG_IGNORECASE, "i"),
    (C.SRE_FLAG_MULTILINE, "m"),
    (C.SRE_FLAG_DOTALL, "s"),
    (C.SRE_FLAG_ASCII, "a"),
)
_FLAGS = C.SRE_FLAG_IGNORECASE | C.SRE_FLAG_MULTILINE | C.SRE_FLAG_DOTALL | C.SRE_FLAG_ASCII
# Anchors that read the character at or after their position.
_READ_AHEAD = {C.AT_BOUNDARY, C.AT_NON_BOUNDARY, C.AT_END, C.AT_END_STRING}
# Ways to begin one regex may have before it is not worth a fast path (a pattern this
# tangled is rare: an operator's own, most likely).
_MAX_OPENINGS = 512
_MAX_STEPS = 20_000
# A first-character class up to this size becomes literals (in the Basic Multilingual Plane,
# where the regex engine tests a set of them with a bitmap).
_EXPAND = 32


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
    lower-case form (the detector's case-folding shapes run there; ASCII text only)."""

    raw: tuple[Trigger, ...] = ()
    lowered: tuple[Trigger, ...] = ()


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
        for item, behind, rest in openings:
            for first in _expand(item):
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


def _expand(item: tuple) -> list[str]:
    """A first character as the literal characters it stands for (a small class, no case
    folding), or as itself."""
    op, av, flags = item
    codes: list[int] = []
    if op is C.LITERAL:
        codes.append(av)
    elif op is C.IN:
        for o, a in av:
            if o is C.LITERAL:
                codes.append(a)
            elif o is C.RANGE and a[1] - a[0] < _EXPAND:
                codes.extend(range(a[0], a[1] + 1))
            else:
                codes = []
                break
    if codes and len(codes) <= _EXPAND and max(codes) <= 0xFFFF:
        # Case folding changes nothing for a character without case and without a folding
        # equivalent: the regex engine's own test and table, as it compiles the pattern.
        ascii_only = flags & C.SRE_FLAG_ASCII
        iscased = _sre.ascii_iscased if ascii_only else _sre.unicode_iscased
        extra = {} if ascii_only else _compiler._EXTRA_CASES
        if not flags & C.SRE_FLAG_IGNORECASE or not any(
            iscased(code) or code in extra for code in codes
        ):
            return [_char(code) for code in dict.fromkeys(codes)]
    return [_wrap(flags, _Builder().full(op, av))]


class _Emitter(_Builder):
    """Re-emits parsed items; with ahead=False, anchors and look-aheads become nothing."""

    def __init__(self, *, ahead: bool) -> None:
        super().__init__()
        self.ahead = ahead

    def full(self, op: object, av: object) -> str:
        # Exact where partial.py loosens: inside a negative look-around, a looser pattern
        # would make the whole stricter.
        if op is C.POSSESSIVE_REPEAT:
            return self.full(C.MAX_REPEAT, av) + "+"
        if op is C.ATOMIC_GROUP:
            return "(?>" + self.full_seq(list(av.data)) + ")"  # type: ignore[attr-defined]
        if not self.ahead:
            if _reads_ahead(op, av):
                return ""
            if op is C.ASSERT_NOT and _reads_ahead_anywhere(av[1]):  # type: ignore[index]
                return ""  # a negative assertion can only be dropped whole
        return super().full(op, av)

    def seq(self, todo: tuple) -> str:
        """Items with their flags, as one source that needs no global flags."""
        out = []
        run: list[str] = []
        flags = None
        for op, av, f in todo:
            f &= _FLAGS
            if f != flags and run:
                out.append(_wrap(flags or 0, "".join(run)))
                run = []
            flags = f
            run.append(self.full(op, av))
        if run:
            out.append(_wrap(flags or 0, "".join(run)))
        return "".join(out)


def _reads_ahead(op: object, av: object) -> bool:
    if op is C.AT:
        return av in _READ_AHEAD
    return op in (C.ASSERT, C.ASSERT_NOT) and av[0] == 1  # type: ignore[index]


def _reads_ahead_anywhere(sub: P.SubPattern) -> bool:
    return any(
        _reads_ahead(op, av) or any(_reads_ahead_anywhere(inner) for inner in _inside(op, av))
        for op, av in sub.data
    )


def _inside(op: object, av: object) -> list[P.SubPattern]:
    if op is C.BRANCH:
        return list(av[1])  # type: ignore[index]
    if op is C.SUBPATTERN:
        return [av[3]]  # type: ignore[index]
    if op in _REPEATS:
        return [av[2]]  # type: ignore[index]
    if op is C.ATOMIC_GROUP:
        return [av]  # type: ignore[list-item]
    if op in (C.ASSERT, C.ASSERT_NOT):
        return [av[1]]  # type: ignore[index]
    return []


def _wrap(flags: int, source: str) -> str:
    letters = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return f"(?{letters}:{source})" if letters and source else source


def _openings(trigger: Trigger) -> list[tuple[tuple, str, str]] | None:
    """(first character's parsed item, look-behinds moved after it, what must follow) for
    every way a match can begin: walk the parse tree to each character consumed first."""
    pattern = trigger.pattern
    try:
        parsed = P.parse(pattern.pattern, pattern.flags)
    except re.error:
        return None
    emit = _Emitter(ahead=trigger.ahead)
    flags = parsed.state.flags
    out: list[tuple[tuple, str, str]] = []
    stack: list[tuple[tuple, tuple[str, ...]]] = [(_items(parsed, flags), ())]
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
            (op, av, f), rest = todo[0], todo[1:]
            if op in _SINGLE_CHAR:
                out.append(((op, av, f & _FLAGS), "".join(behind), emit.seq(rest)))
            elif op is C.SUBPATTERN:
                _, add, remove, sub = av
                stack.append((_items(sub, (f | add) & ~remove) + rest, behind))
            elif op is C.ATOMIC_GROUP:
                stack.append((_items(av, f) + rest, behind))
            elif op is C.BRANCH:
                for alternative in reversed(av[1]):
                    stack.append((_items(alternative, f) + rest, behind))
            elif op in _REPEATS:
                low, high, sub = av
                if high > 0:
                    again: tuple = ()
                    if high != 1:
                        left = high if high >= UNBOUNDED else high - 1
                        again = ((op, (max(low - 1, 0), left, sub), f),)
                    stack.append((_items(sub, f) + again + rest, behind))
                if low == 0:
                    stack.append((rest, behind))
            elif op in (C.ASSERT, C.ASSERT_NOT) and av[0] == -1:
                # A look-behind before the first character moves after it, reading one more:
                # `(?<!W)x` is `x(?<!W[\s\S])`.
                source = emit.full(op, av)
                if source:
                    moved = source[:-1] + r"[\s\S])"
                    behind = (*behind, _wrap(f & _FLAGS, moved))
                stack.append((rest, behind))
            elif op is C.AT or op in (C.ASSERT, C.ASSERT_NOT):
                stack.append((rest, behind))  # dropped: passing it always is a superset
            else:
                return None  # a back-reference or a conditional
    except (Unsupported, RecursionError):
        return None
    return out


def _items(sub: P.SubPattern, flags: int) -> tuple:
    return tuple((op, av, flags) for op, av in sub.data)
