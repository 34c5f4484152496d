"""Which trailing text could still grow into a regex match: the during stage's hold-back.

For a pattern X, `tail_pattern(X)` derives the pattern `P(X)\\Z`, where P(X) matches every
non-empty prefix of every match of X (complete ones included). Searched from a little
before the end of a text, its leftmost hit is the longest tail that more text could still
turn into a match; everything before that point can be released to the client.

The derivation walks the parse tree of `re` (the private `re._parser`, stable since 3.11).
It is exact for literals, classes, groups, alternation, repetition and look-behind, and
conservative elsewhere: a look-ahead that needs characters not yet seen counts as passing,
possessive and atomic forms are loosened, and back-references give up (`None`: the caller
then holds a bounded tail whatever it contains).
"""

from __future__ import annotations

import re
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as P  # type: ignore[attr-defined]

UNBOUNDED = int(C.MAXREPEAT)

_CATEGORIES = {
    C.CATEGORY_DIGIT: r"\d",
    C.CATEGORY_NOT_DIGIT: r"\D",
    C.CATEGORY_SPACE: r"\s",
    C.CATEGORY_NOT_SPACE: r"\S",
    C.CATEGORY_WORD: r"\w",
    C.CATEGORY_NOT_WORD: r"\W",
}
_ANCHORS = {
    C.AT_BEGINNING: "^",
    C.AT_BEGINNING_STRING: r"\A",
    C.AT_BOUNDARY: r"\b",
    C.AT_NON_BOUNDARY: r"\B",
    C.AT_END: "$",
    C.AT_END_STRING: r"\Z",
}
_FLAG_LETTERS = (
    (C.SRE_FLAG_IGNORECASE, "i"),
    (C.SRE_FLAG_MULTILINE, "m"),
    (C.SRE_FLAG_DOTALL, "s"),
    (C.SRE_FLAG_ASCII, "a"),
)
_SINGLE_CHAR = (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN, C.CATEGORY)
_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT)
_NEVER = "(?!)"
_ANYTHING = r"[\s\S]*"
# How far past its position an anchor reads: `\b` one character, `$` up to "\n" + end.
_AT_READS = {C.AT_BOUNDARY: 1, C.AT_NON_BOUNDARY: 1, C.AT_END: 2, C.AT_END_STRING: 1}


class Unsupported(ValueError):
    """The pattern uses a construct whose prefixes we do not derive."""


def max_width(pattern: re.Pattern[str]) -> int | None:
    """Longest possible match, or None when unbounded."""
    high = P.parse(pattern.pattern, pattern.flags).getwidth()[1]
    return None if high >= UNBOUNDED else int(high)


def tail_pattern(pattern: re.Pattern[str]) -> tuple[re.Pattern[str], int] | None:
    """`P(X)\\Z` and how far a look-ahead of X may peek past a match, or None."""
    derived = tail_sources(pattern)
    if derived is None:
        return None
    sources, lookahead, flags, _ = derived
    return re.compile(join_tails(sources), flags), lookahead


def tail_sources(pattern: re.Pattern[str]) -> tuple[list[str], int, int, int | None] | None:
    """The alternatives of P(X), how far a look-ahead of X may peek past a match, the flags
    to compile them with, and the longest match of X (None: unbounded).

    A leading alternation is spread into top-level alternatives: when each then begins with
    a literal character, the regex engine skips every position that cannot start a tail."""
    parsed = P.parse(pattern.pattern, pattern.flags)
    builder = _Builder()
    try:
        sources = [builder.plus_seq(items, 0) for items in _spread(list(parsed.data))]
    except (Unsupported, RecursionError):
        return None
    flags = parsed.state.flags & ~(C.SRE_FLAG_VERBOSE | C.SRE_FLAG_DEBUG)
    high = parsed.getwidth()[1]
    return sources, builder.lookahead, flags, None if high >= UNBOUNDED else int(high)


def join_tails(sources: list[str]) -> str:
    return "|".join(source + r"\Z" for source in sources)


_SPREAD_LIMIT = 256


def _spread(items: list) -> list[list]:
    """items, or one list per alternative when they begin with an alternation."""
    out = [items]
    while True:
        grown = []
        for seq in out:
            if not seq:
                grown.append(seq)
                continue
            op, av = seq[0]
            if op is C.BRANCH:
                grown.extend(list(alt.data) + seq[1:] for alt in av[1])
            elif op is C.SUBPATTERN and not av[1] and not av[2]:
                grown.append(list(av[3].data) + seq[1:])
            else:
                grown.append(seq)
        if len(grown) > _SPREAD_LIMIT or grown == out:
            return out
        out = grown


def required_prefix(pattern: re.Pattern[str]) -> str:
    """The literal text every match begins with ("" when there is none, or case is ignored)."""
    if pattern.flags & re.IGNORECASE:
        return ""
    out = []
    for op, av in P.parse(pattern.pattern, pattern.flags).data:
        if op is C.AT or (op in (C.ASSERT, C.ASSERT_NOT) and av[0] == -1):
            if out:
                break
            continue
        if op is not C.LITERAL:
            break
        out.append(chr(av))
    return "".join(out)


def nested_unbounded_repeat(pattern: str, flags: int = 0) -> bool:
    """True for shapes like `(a+)+` or `(\\w*\\s?)*` that can backtrack exponentially."""

    def walk(items: list, inside: bool) -> bool:
        for op, av in items:
            if op in _REPEATS:
                unbounded = av[1] >= UNBOUNDED
                if (unbounded and inside) or walk(list(av[2].data), inside or unbounded):
                    return True
            elif op is C.BRANCH:
                if any(walk(list(sub.data), inside) for sub in av[1]):
                    return True
            elif op in _NESTING and walk(list(_inner(op, av).data), inside):
                return True
        return False

    return walk(list(P.parse(pattern, flags).data), False)


_NESTING = (C.SUBPATTERN, C.ASSERT, C.ASSERT_NOT, C.ATOMIC_GROUP)


def _inner(op: object, av: object) -> P.SubPattern:
    if op is C.SUBPATTERN:
        return av[3]  # type: ignore[index]
    if op is C.ATOMIC_GROUP:
        return av  # type: ignore[return-value]
    return av[1]  # type: ignore[index]


def _char(code: int) -> str:
    ch = chr(code)
    if ch.isalnum() or ch == "_":
        return ch
    if 32 < code < 127:
        return "\\" + ch  # escaping ASCII punctuation is always allowed, in classes too
    return f"\\U{code:08x}"


def _flags(add: int, remove: int) -> str:
    on = "".join(letter for bit, letter in _FLAG_LETTERS if add & bit)
    off = "".join(letter for bit, letter in _FLAG_LETTERS if remove & bit)
    if not on and not off:
        return "(?:"
    return f"(?{on}-{off}:" if off else f"(?{on}:"


def _behind(op: object, av: object) -> bool:
    return op in (C.ASSERT, C.ASSERT_NOT) and av[0] == -1  # type: ignore[index]


class _Builder:
    def __init__(self) -> None:
        self.lookahead = 0  # widest look-ahead seen: how far past a match it may peek

    # The pattern itself, re-emitted (possessive and atomic forms loosened: a superset).
    def full(self, op: object, av: object) -> str:
        if op is C.LITERAL:
            return _char(av)  # type: ignore[arg-type]
        if op is C.NOT_LITERAL:
            return f"[^{_char(av)}]"  # type: ignore[arg-type]
        if op is C.ANY:
            return "."
        if op is C.CATEGORY:
            return _CATEGORIES[av]
        if op is C.IN:
            return self._klass(av)  # type: ignore[arg-type]
        if op is C.AT:
            return _ANCHORS[av]
        if op is C.BRANCH:
            alternatives = av[1]  # type: ignore[index]
            return "(?:" + "|".join(self.full_seq(list(s.data)) for s in alternatives) + ")"
        if op is C.SUBPATTERN:
            _, add, remove, sub = av  # type: ignore[misc]
            return _flags(add, remove) + self.full_seq(list(sub.data)) + ")"
        if op in _REPEATS:
            low, high, sub = av  # type: ignore[misc]
            quant = f"{{{low},}}" if high >= UNBOUNDED else f"{{{low},{high}}}"
            lazy = "?" if op is C.MIN_REPEAT else ""
            return f"(?:{self.full_seq(list(sub.data))}){quant}{lazy}"
        if op is C.ATOMIC_GROUP:
            return "(?:" + self.full_seq(list(av.data)) + ")"  # type: ignore[attr-defined]
        if op in (C.ASSERT, C.ASSERT_NOT):
            direction, sub = av  # type: ignore[misc]
            kind = (
                ("=" if op is C.ASSERT else "!")
                if direction == 1
                else ("<=" if op is C.ASSERT else "<!")
            )
            return f"(?{kind}{self.full_seq(list(sub.data))})"
        raise Unsupported(str(op))

    def full_seq(self, items: list) -> str:
        return "".join(self.full(op, av) for op, av in items)

    def _klass(self, items: list) -> str:
        parts = []
        negate = ""
        for op, av in items:
            if op is C.NEGATE:
                negate = "^"
            elif op is C.LITERAL:
                parts.append(_char(av))
            elif op is C.RANGE:
                parts.append(f"{_char(av[0])}-{_char(av[1])}")
            elif op is C.CATEGORY:
                parts.append(_CATEGORIES[av])
            else:
                raise Unsupported(str(op))
        return f"[{negate}{''.join(parts)}]"

    # Prefixes: what a match may look like when the text stops somewhere inside it. Only
    # non-empty ones (`plus`): an empty tail holds nothing back, and leaving it out lets the
    # regex engine reject most positions at their first character.
    def plus(self, op: object, av: object) -> str:
        """Non-empty prefixes of one element (complete ones included)."""
        if op in _SINGLE_CHAR:
            return self.full(op, av)
        if op is C.BRANCH:
            alternatives = av[1]  # type: ignore[index]
            return "(?:" + "|".join(self.plus_seq(list(s.data), 0) for s in alternatives) + ")"
        if op is C.SUBPATTERN:
            _, add, remove, sub = av  # type: ignore[misc]
            return _flags(add, remove) + self.plus_seq(list(sub.data), 0) + ")"
        if op in _REPEATS:
            _, high, sub = av  # type: ignore[misc]
            if high == 0:
                return _NEVER
            items = list(sub.data)
            if high == 1:
                return self.plus_seq(items, 0)
            quant = "*" if high >= UNBOUNDED else f"{{0,{high - 1}}}"
            return f"(?:{self.full_seq(items)}){quant}(?:{self.plus_seq(items, 0)})"
        if op is C.ATOMIC_GROUP:
            return self.plus_seq(list(av.data), 0)  # type: ignore[attr-defined]
        if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
            return _NEVER
        raise Unsupported(str(op))

    def plus_seq(self, items: list, i: int) -> str:
        """Non-empty prefixes of items[i:]."""
        if i == len(items):
            return _NEVER
        op, av = items[i]
        if op is C.AT or _behind(op, av):
            # Some text follows, so an anchor or a look-behind here can be decided now.
            return self.full(op, av) + self.plus_seq(items, i + 1)
        if op in (C.ASSERT, C.ASSERT_NOT):
            return self._ahead(op, av, self.plus_seq(items, i + 1))
        head = self.full(op, av) if op in _SINGLE_CHAR else self.plus(op, av)
        window = self._ahead_only(items, i + 1)
        if window is not None:
            # Only look-aheads after it: its prefixes, then what they may still need to read.
            return head + window
        rest = self.star_seq(items, i + 1)
        if op in _SINGLE_CHAR:
            return head + rest
        return f"(?:{self.full(op, av)}{rest}|{head})"

    def star_seq(self, items: list, i: int) -> str:
        """Prefixes of items[i:], the empty one included."""
        if i == len(items):
            return ""
        op, av = items[i]
        if _behind(op, av):
            # A look-behind reads only what has arrived: decided now, even at the very end.
            return self.full(op, av) + self.star_seq(items, i + 1)
        window = self._ahead_only(items, i)
        if window is not None:
            return window
        if op in (C.ASSERT, C.ASSERT_NOT):
            return self._ahead(op, av, self.star_seq(items, i + 1))
        return f"(?:{self.plus_seq(items, i)}|)"

    def _ahead(self, op: object, av: object, then: str) -> str:
        """A look-ahead, decided once the text it reads has arrived; until then, whatever has
        arrived after it is held."""
        width = self._width(op, av)
        if width is None:
            return _ANYTHING
        if width == 0:
            return self.full(op, av) + then
        enough = f"[\\s\\S]{{{width}}}"
        return f"(?:(?={enough}){self.full(op, av)}{then}|(?!{enough}){_ANYTHING})"

    def _ahead_only(self, items: list, i: int) -> str | None:
        """When items[i:] only look ahead (anchors, look-aheads): the characters after a match
        that may still be needed to decide them; else None."""
        widest = 0
        for op, av in items[i:]:
            if op is not C.AT and not (op in (C.ASSERT, C.ASSERT_NOT) and not _behind(op, av)):
                return None
            width = self._width(op, av)
            if width is None:
                return _ANYTHING
            widest = max(widest, width)
        return f"[\\s\\S]{{0,{widest - 1}}}" if widest > 1 else ""

    def _width(self, op: object, av: object) -> int | None:
        """How many characters after its position an anchor or look-ahead reads."""
        if op is C.AT:
            width = _AT_READS.get(av, 0)
        else:
            high = av[1].getwidth()[1]  # type: ignore[index]
            if high >= UNBOUNDED:
                return None
            width = int(high)
        self.lookahead = max(self.lookahead, width)
        return width
