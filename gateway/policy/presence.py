"""Whether a text can hold a match of any of many `re` patterns: one linear RE2 pass.

Our detectors' patterns run on `re` (they need look-behind), one search each. Asking first
"could any of them match here?" is far cheaper when all of them are answered together by
one automaton: each pattern is rewritten into a *superset* in RE2 syntax, and the rewrites
go into one `re2.Set`, whose single pass over the text says which of them match somewhere.
Where a superset finds nothing, its pattern finds nothing, so the caller may skip it.

The rewrite only ever widens: look-arounds and word boundaries are dropped (a constraint
less), atomic groups and possessive or lazy repeats become plain ones, a long repeat
`{20,400}` becomes `{24,}`; each class is written out for ASCII exactly as `re` reads it,
and beyond ASCII it keeps its explicit ranges, or takes every non-ASCII character when it
holds a category (`\\w`, `\\d`...) or is negated, or when case is ignored (`re` folds `K`
into `k`, `ı` into `i`). For text known to be ASCII, classes are written for ASCII only,
and a pattern meant for the lowered text (a case-folding detector's) is written for the
text as it is, each character class taking the characters whose lowering it matches.

A Set reports no match at all when its automaton runs out of memory: each Set also holds
`\\z`, which matches every text at its end, so a pass that did not report it failed, and
the caller treats every pattern as present.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import re2  # type: ignore[import-untyped]

from gateway.policy.syntax import (
    IGNORECASE,
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
    seq_width,
    to_re_flags,
    width,
)

# Repeats longer than this are written `{CAP,}`: the same presence, a smaller automaton.
CAP = 24
# Memory for one Set's automaton; past it the pass fails, which the sentinel tells.
MAX_MEM = 16 << 20
_NEVER = r"[^\x00-\x{10ffff}]"
_NON_ASCII = (0x80, 0x10FFFF)


def superset(
    pattern: re.Pattern[str],
    *,
    ascii_text: bool,
    lowered: bool = False,
    nonempty: bool = False,
    ahead: bool = True,
) -> str | None:
    """RE2 source that matches somewhere in every text where `pattern` matches somewhere.

    ascii_text: the texts searched are ASCII. lowered: `pattern` runs on the text lowered;
    for ASCII text the superset is then searched in the text as it is, for other text in
    the text lowered. nonempty: only the pattern's non-empty matches count (a hold-back's
    tail, which matches empty at every text's end), and every match of the superset is
    non-empty. ahead=False: the pattern runs on a truncated text (an `endpos`), where an
    end anchor passes: `\\Z` is dropped too. None: the pattern cannot be rewritten."""
    try:
        tree = parse(pattern.pattern, pattern.flags)
        writer = _Superset(ascii_text=ascii_text, lowered=lowered, ahead=ahead)
        if nonempty:
            return writer.nonempty_seq(tree.seq, tree.flags)
        return writer.seq(tree.seq, tree.flags)
    except (Unsupported, RecursionError):
        return None


class _Superset:
    def __init__(self, *, ascii_text: bool, lowered: bool, ahead: bool) -> None:
        self.ascii_text = ascii_text
        self.lowered = lowered and ascii_text  # for other text the subject is lowered already
        self.ahead = ahead

    def seq(self, seq: Seq, flags: int) -> str:
        return "".join(self.node(node, flags) for node in seq)

    def node(self, node: Node, flags: int) -> str:  # noqa: C901 - one case per node type
        if isinstance(node, Char):
            return _char(node, flags, ascii_text=self.ascii_text, lowered=self.lowered)
        if isinstance(node, Anchor):
            # Only the end of the text stays (a hold-back's tail is nothing without it).
            return r"\z" if node.at == "\\Z" and self.ahead else ""
        if isinstance(node, Look):
            return ""
        if isinstance(node, Fail):
            return _NEVER
        if isinstance(node, Alt):
            return "(?:" + "|".join(self.seq(b, flags) for b in node.branches) + ")"
        if isinstance(node, Group):
            return "(?:" + self.seq(node.seq, (flags | node.add) & ~node.remove) + ")"
        if isinstance(node, Atomic):
            return "(?:" + self.seq(node.seq, flags) + ")"
        if isinstance(node, Repeat):
            return self._repeat(self.seq(node.seq, flags), node.low, node.high)
        raise Unsupported(type(node).__name__)

    @staticmethod
    def _repeat(inner: str, low: int, high: int | None) -> str:
        if high is not None and high <= CAP:
            return f"(?:{inner}){{{low},{high}}}"
        return f"(?:{inner}){{{min(low, CAP)},}}"

    # Non-empty matches only: a sequence's first non-empty element is written non-empty,
    # those before it as they are (they matched empty), those after it as they are.
    def nonempty_seq(self, seq: Seq, flags: int) -> str:
        branches = []
        for i, node in enumerate(seq):
            head = self.nonempty(node, flags)
            if head is not None:
                before = self.seq(seq[:i], flags)
                branches.append(before + head + self.seq(seq[i + 1 :], flags))
            if width(node)[0] > 0:
                break  # every match consumes this one: none starts empty past it
        return "(?:" + "|".join(branches) + ")" if branches else _NEVER

    def nonempty(self, node: Node, flags: int) -> str | None:
        if isinstance(node, Char):
            return self.node(node, flags)
        if isinstance(node, (Anchor, Look, Fail)):
            return None
        if isinstance(node, Alt):
            heads = [self.nonempty_seq(b, flags) for b in node.branches]
            return "(?:" + "|".join(heads) + ")"
        if isinstance(node, Group):
            return self.nonempty_seq(node.seq, (flags | node.add) & ~node.remove)
        if isinstance(node, Atomic):
            return self.nonempty_seq(node.seq, flags)
        if isinstance(node, Repeat):
            if node.high == 0:
                return None
            inner = self.seq(node.seq, flags)
            if seq_width(node.seq)[0] > 0:
                return self._repeat(inner, max(node.low, 1), node.high)
            # Copies that may be empty: one non-empty copy among any number of others.
            return f"(?:{inner})*{self.nonempty_seq(node.seq, flags)}(?:{inner})*"
        raise Unsupported(type(node).__name__)


def _char(node: Char, flags: int, *, ascii_text: bool, lowered: bool) -> str:
    extra = () if ascii_text else _beyond_ascii(node, flags)
    return _class(Writer("re").single(node), flags, lowered, extra)


def _beyond_ascii(node: Char, flags: int) -> tuple[tuple[int, int], ...]:
    """The non-ASCII characters a matcher may take: its explicit ones, or all of them."""
    if flags & IGNORECASE or node.kind in ("any", "category") or node.negate:
        return (_NON_ASCII,)
    if node.kind == "literal":
        return ((node.code, node.code),) if node.code >= 128 else ()
    ranges = []
    for item in node.items:
        if isinstance(item, str):
            return (_NON_ASCII,)
        if item[1] >= 128:
            ranges.append((max(item[0], 128), item[1]))
    return tuple(ranges)


@lru_cache(maxsize=4096)
def _class(source: str, flags: int, lowered: bool, extra: tuple[tuple[int, int], ...]) -> str:
    """An RE2 class: the ASCII characters `re` matches with `source` (in the character as
    lowered, when `lowered`), and the `extra` ranges."""
    compiled = re.compile(source, to_re_flags(flags))
    members = [
        code
        for code in range(128)
        if compiled.fullmatch(chr(code).lower() if lowered else chr(code)) is not None
    ]
    return _klass(_ranges(members) + list(extra))


def _ranges(codes: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for code in codes:
        if out and out[-1][1] == code - 1:
            out[-1] = (out[-1][0], code)
        else:
            out.append((code, code))
    return out


def _klass(ranges: list[tuple[int, int]]) -> str:
    parts = []
    for low, high in ranges:
        # Surrogates cannot be encoded, so never reach RE2 (which refuses them in a class).
        if low < 0xD800:
            parts.append(_code_range(low, min(high, 0xD7FF)))
        if high > 0xDFFF:
            parts.append(_code_range(max(low, 0xE000), high))
    return "[" + "".join(parts) + "]" if parts else _NEVER


def _code_range(low: int, high: int) -> str:
    if low == high:
        return _code(low)
    return f"{_code(low)}-{_code(high)}"


def _code(code: int) -> str:
    if code < 128 and chr(code).isalnum():
        return chr(code)
    return rf"\x{{{code:x}}}"


class PresenceSet:
    """RE2 sources searched together: `present(subject)` says which match somewhere."""

    def __init__(self, sources: Sequence[str]) -> None:
        options = re2.Options()
        options.max_mem = MAX_MEM
        options.log_errors = False
        self._set = re2.Set.SearchSet(options)
        for source in sources:
            self._set.Add(source)
        self.size = len(sources)
        # `\z` matches at the end of every text: a pass that reports it read it all. (A
        # pattern that matched everywhere would make the automaton record a match at every
        # character: three times slower.)
        self._set.Add(r"\z")
        self._set.Compile()

    def present(self, subject: bytes) -> list[int] | None:
        """The indices of the sources that match in `subject` (UTF-8), in no order; None
        when the pass failed (then any of them may)."""
        matched: list[int] = self._set.Match(subject)
        if not matched or self.size not in matched:
            return None
        matched.remove(self.size)
        return matched
