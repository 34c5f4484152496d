"""Which trailing text could still grow into a regex match: the during stage's hold-back.

For a pattern X, `tail_pattern(X)` derives the pattern `P(X)\\Z`, where P(X) matches every
non-empty prefix of every match of X (complete ones included). Searched from a little
before the end of a text, its leftmost hit is the longest tail that more text could still
turn into a match; everything before that point can be released to the client.

The derivation walks the pattern's tree (syntax.py). It is exact for literals, classes,
groups, alternation, repetition and look-behind, and conservative elsewhere: a look-ahead
that needs characters not yet seen counts as passing, possessive and atomic forms are
loosened, and what the tree does not represent (back-references) gives up (`None`: the
caller then holds a bounded tail whatever it contains). The result is written for the
dialect the pattern runs on: `re` for our detectors, `re2` for operators' patterns.
"""

from __future__ import annotations

import re

from gateway.policy.syntax import (
    Alt,
    Anchor,
    Atomic,
    Char,
    Dialect,
    Group,
    Look,
    Node,
    Pattern,
    Repeat,
    Seq,
    Unsupported,
    Writer,
    literal_prefix,
    parse,
    seq_width,
    to_re_flags,
    width,
)

_ANYTHING = r"[\s\S]*"
# How far past its position an anchor reads: `\b` one character, `$` up to "\n" + end.
_AT_READS = {"\\b": 1, "\\B": 1, "$": 2, "\\Z": 1}


def max_width(pattern: re.Pattern[str]) -> int | None:
    """Longest possible match, or None when unbounded."""
    return parse(pattern.pattern, pattern.flags).width[1]


def tail_pattern(pattern: re.Pattern[str]) -> tuple[re.Pattern[str], int] | None:
    """`P(X)\\Z` and how far a look-ahead of X may peek past a match, or None."""
    derived = tail_sources(pattern)
    if derived is None:
        return None
    sources, lookahead, flags, _ = derived
    return re.compile(join_tails(sources), flags), lookahead


def tail_sources(
    pattern: re.Pattern[str] | Pattern, dialect: Dialect = "re"
) -> tuple[list[str], int, int, int | None] | None:
    """The alternatives of P(X), how far a look-ahead of X may peek past a match, the `re`
    flags to compile them with, and the longest match of X (None: unbounded).

    A leading alternation is spread into top-level alternatives: when each then begins with
    a literal character, the regex engine skips every position that cannot start a tail."""
    try:
        tree = pattern if isinstance(pattern, Pattern) else parse(pattern.pattern, pattern.flags)
        builder = Builder(dialect)
        sources = [builder.plus_seq(seq, 0) for seq in _spread(tree.seq)]
    except (Unsupported, RecursionError):
        return None
    return sources, builder.lookahead, to_re_flags(tree.flags), tree.width[1]


def join_tails(sources: list[str], dialect: Dialect = "re") -> str:
    end = Writer(dialect).end
    return "|".join(source + end for source in sources)


_SPREAD_LIMIT = 256


def _spread(seq: Seq) -> list[Seq]:
    """seq, or one sequence per alternative when it begins with an alternation."""
    out = [seq]
    while True:
        grown: list[Seq] = []
        for items in out:
            head = items[0] if items else None
            if isinstance(head, Alt):
                grown.extend(branch + items[1:] for branch in head.branches)
            elif isinstance(head, Group) and not head.add and not head.remove:
                grown.append(head.seq + items[1:])
            else:
                grown.append(items)
        if len(grown) > _SPREAD_LIMIT or grown == out:
            return out
        out = grown


def required_prefix(pattern: re.Pattern[str]) -> str:
    """The literal text every match begins with ("" when there is none, or case is ignored)."""
    return literal_prefix(parse(pattern.pattern, pattern.flags))


def _behind(node: Node) -> bool:
    return isinstance(node, Look) and node.behind


def _ahead_node(node: Node) -> bool:
    return isinstance(node, Look) and not node.behind


class Builder:
    """Derives prefix patterns, written for one dialect."""

    def __init__(self, dialect: Dialect = "re") -> None:
        self.write = Writer(dialect)
        self.never = self.write.never
        self.lookahead = 0  # widest look-ahead seen: how far past a match it may peek

    def full(self, node: Node) -> str:
        """The node itself, re-emitted (possessive and atomic forms loosened: a superset)."""
        return self.write.node(node)

    def full_seq(self, seq: Seq) -> str:
        return "".join(self.full(n) for n in seq)

    # Prefixes: what a match may look like when the text stops somewhere inside it. Only
    # non-empty ones (`plus`): an empty tail holds nothing back, and leaving it out lets the
    # regex engine reject most positions at their first character.
    def plus(self, node: Node) -> str:
        """Non-empty prefixes of one node (complete ones included)."""
        if isinstance(node, Char):
            return self.full(node)
        if isinstance(node, Alt):
            return "(?:" + "|".join(self.plus_seq(b, 0) for b in node.branches) + ")"
        if isinstance(node, Group):
            return self.write.flags(node.add, node.remove) + self.plus_seq(node.seq, 0) + ")"
        if isinstance(node, Repeat):
            if node.high == 0:
                return self.never
            if node.high == 1:
                return self.plus_seq(node.seq, 0)
            quant = "*" if node.high is None else f"{{0,{node.high - 1}}}"
            return f"(?:{self.full_seq(node.seq)}){quant}(?:{self.plus_seq(node.seq, 0)})"
        if isinstance(node, Atomic):
            return self.plus_seq(node.seq, 0)
        return self.never  # anchors, look-arounds, (?!): consume nothing

    def plus_seq(self, items: Seq, i: int) -> str:
        """Non-empty prefixes of items[i:]."""
        if i == len(items):
            return self.never
        node = items[i]
        if isinstance(node, Anchor) or _behind(node):
            # Some text follows, so an anchor or a look-behind here can be decided now.
            return self.full(node) + self.plus_seq(items, i + 1)
        if isinstance(node, Look):
            return self._ahead(node, self.plus_seq(items, i + 1))
        head = self.full(node) if isinstance(node, Char) else self.plus(node)
        window = self._ahead_only(items, i + 1)
        if window is not None:
            # Only look-aheads after it: its prefixes, then what they may still need to read.
            return head + window
        rest = self.star_seq(items, i + 1)
        if isinstance(node, Char):
            return head + rest
        return f"(?:{self.full(node)}{rest}|{head})"

    def star_seq(self, items: Seq, i: int) -> str:
        """Prefixes of items[i:], the empty one included."""
        if i == len(items):
            return ""
        node = items[i]
        if _behind(node):
            # A look-behind reads only what has arrived: decided now, even at the very end.
            return self.full(node) + self.star_seq(items, i + 1)
        window = self._ahead_only(items, i)
        if window is not None:
            return window
        if isinstance(node, Look):
            return self._ahead(node, self.star_seq(items, i + 1))
        return f"(?:{self.plus_seq(items, i)}|)"

    def _ahead(self, node: Look, then: str) -> str:
        """A look-ahead, decided once the text it reads has arrived; until then, whatever has
        arrived after it is held."""
        reads = self._width(node)
        if reads is None:
            return _ANYTHING
        if reads == 0:
            return self.full(node) + then
        enough = f"[\\s\\S]{{{reads}}}"
        return f"(?:(?={enough}){self.full(node)}{then}|(?!{enough}){_ANYTHING})"

    def _ahead_only(self, items: Seq, i: int) -> str | None:
        """When items[i:] only look ahead (anchors, look-aheads): the characters after a match
        that may still be needed to decide them; else None."""
        widest = 0
        for node in items[i:]:
            if not (isinstance(node, Anchor) or _ahead_node(node)):
                return None
            reads = self._width(node)
            if reads is None:
                return _ANYTHING
            widest = max(widest, reads)
        return f"[\\s\\S]{{0,{widest - 1}}}" if widest > 1 else ""

    def _width(self, node: Node) -> int | None:
        """How many characters after its position an anchor or look-ahead reads."""
        if isinstance(node, Anchor):
            reads: int | None = _AT_READS.get(node.at, 0)
        elif isinstance(node, Look):
            reads = seq_width(node.seq)[1]
        else:
            reads = width(node)[1]
        if reads is None:
            return None
        self.lookahead = max(self.lookahead, reads)
        return reads
