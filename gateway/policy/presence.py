"""Whether a text can hold a match of any of many `re` patterns: one linear RE2 pass.

Our detectors' patterns run on `re` (they need look-behind), one search each. Asking first
"could any of them match here?" is far cheaper when all of them are answered together by
one automaton: each pattern is rewritten into a *superset* in RE2 syntax, and the rewrites
go into one `re2.Set`, whose single pass over the text says which of them match somewhere.
Where a superset finds nothing, its pattern finds nothing, so the caller may skip it.

The rewrite only ever widens: look-arounds and word boundaries are dropped (a constraint
less), except a one-character look-behind where a match begins, `(?<![A-Za-z0-9_-])sk-`,
which becomes the character before it, `(?:^|[^A-Za-z0-9_-])sk-`, the same presence (the
two-character form `x(?<![0-9]x)` that tests the first character too is the same look-behind
moved after it); without it a hold-back's tail would fire on every word that ends with its
first letter. Atomic groups and possessive or lazy repeats become plain ones, a long repeat
`{20,400}` becomes `{24,}`; each class is written out for ASCII exactly as `re` reads it,
and beyond ASCII it keeps its explicit ranges, or takes every non-ASCII character when it
holds a category (`\\w`, `\\d`...) or is negated, or when case is ignored (`re` folds `K`
into `k`, `ı` into `i`). For text known to be ASCII, classes are written for ASCII only.
A pattern meant for the lowered text (a case-folding detector's) can be written for the
text as it is: each character class then also takes the characters whose lowering it
matches (`str.lower`, one character for one: `K` and the KELVIN SIGN for `k`, `Σ` for `ς`
as well as `σ`), so one pass over the text answers without lowering it. Lowering that
lengthens a text (`İ`, see `lengthening`) moves every offset after it: such a text is not
read this way.

A Set reports no match at all when its automaton runs out of memory: each Set also holds
`\\z`, which matches every text at its end, so a pass that did not report it failed, and
the caller treats every pattern as present.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import re2  # type: ignore[import-untyped]

from gateway.policy.syntax import (
    DOTALL,
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
    raw: bool = False,
) -> str | None:
    """RE2 source that matches somewhere in every text where `pattern` matches somewhere.

    ascii_text: the texts searched are ASCII. lowered: `pattern` runs on the text lowered;
    for ASCII text, or with `raw`, the superset is then searched in the text as it is (one
    that lowering does not lengthen), otherwise in the text lowered. nonempty: only the
    pattern's non-empty matches count (a hold-back's tail, which matches empty at every
    text's end), and every match of the superset is non-empty. ahead=False: the pattern
    runs on a truncated text (an `endpos`), where an end anchor passes: `\\Z` is dropped
    too. None: the pattern cannot be rewritten."""
    try:
        tree = parse(pattern.pattern, pattern.flags)
        writer = _Superset(ascii_text=ascii_text, lowered=lowered, ahead=ahead, raw=raw)
        if nonempty:
            return writer.nonempty_seq(tree.seq, tree.flags, start=True)
        return writer.seq(tree.seq, tree.flags, start=True)
    except (Unsupported, RecursionError):
        return None


class _Superset:
    def __init__(self, *, ascii_text: bool, lowered: bool, ahead: bool, raw: bool) -> None:
        self.ascii_text = ascii_text
        # Without `raw`, other text than ASCII is searched lowered already.
        self.lowered = lowered and (ascii_text or raw)
        self.ahead = ahead

    def seq(self, seq: Seq, flags: int, *, start: bool = False) -> str:
        """`start`: nothing has been consumed before `seq` on the way to it, so a
        look-behind at its head reads what precedes the match."""
        out = []
        for node in _behind_first(seq) if start else seq:
            out.append(self.node(node, flags, start=start))
            start = start and width(node)[1] == 0
        return "".join(out)

    def node(self, node: Node, flags: int, *, start: bool = False) -> str:  # noqa: C901
        if isinstance(node, Char):
            return _char(node, flags, ascii_text=self.ascii_text, lowered=self.lowered)
        if isinstance(node, Anchor):
            # Only the end of the text stays (a hold-back's tail is nothing without it).
            return r"\z" if node.at == "\\Z" and self.ahead else ""
        if isinstance(node, Look):
            return self._before(node, flags) if start else ""
        if isinstance(node, Fail):
            return _NEVER
        if isinstance(node, Alt):
            return "(?:" + "|".join(self.seq(b, flags, start=start) for b in node.branches) + ")"
        if isinstance(node, Group):
            scoped = (flags | node.add) & ~node.remove
            return "(?:" + self.seq(node.seq, scoped, start=start) + ")"
        if isinstance(node, Atomic):
            return "(?:" + self.seq(node.seq, flags, start=start) + ")"
        if isinstance(node, Repeat):
            return self._repeat(self.seq(node.seq, flags), node.low, node.high)
        raise Unsupported(type(node).__name__)

    def _before(self, look: Look, flags: int) -> str:
        """A look-behind where a match begins: one character of it becomes the character
        before the match (or the text's start, for a negative one); others are dropped."""
        if not look.behind or len(look.seq) != 1 or not isinstance(look.seq[0], Char):
            return ""
        char = look.seq[0]
        if not look.negate:
            return self.node(char, flags)
        return "(?:^|" + self.node(_complement(char, flags), flags) + ")"

    @staticmethod
    def _repeat(inner: str, low: int, high: int | None) -> str:
        if high is not None and high <= CAP:
            return f"(?:{inner}){{{low},{high}}}"
        return f"(?:{inner}){{{min(low, CAP)},}}"

    # Non-empty matches only: a sequence's first non-empty element is written non-empty,
    # those before it as they are (they matched empty), those after it as they are.
    def nonempty_seq(self, seq: Seq, flags: int, *, start: bool = False) -> str:
        if start:
            seq = _behind_first(seq)
        branches = []
        for i, node in enumerate(seq):
            head = self.nonempty(node, flags, start=start and seq_width(seq[:i])[1] == 0)
            if head is not None:
                before = self.seq(seq[:i], flags, start=start)
                branches.append(before + head + self.seq(seq[i + 1 :], flags))
            if width(node)[0] > 0:
                break  # every match consumes this one: none starts empty past it
        return "(?:" + "|".join(branches) + ")" if branches else _NEVER

    def nonempty(self, node: Node, flags: int, *, start: bool = False) -> str | None:
        if isinstance(node, Char):
            return self.node(node, flags)
        if isinstance(node, (Anchor, Look, Fail)):
            return None
        if isinstance(node, Alt):
            heads = [self.nonempty_seq(b, flags, start=start) for b in node.branches]
            return "(?:" + "|".join(heads) + ")"
        if isinstance(node, Group):
            scoped = (flags | node.add) & ~node.remove
            return self.nonempty_seq(node.seq, scoped, start=start)
        if isinstance(node, Atomic):
            return self.nonempty_seq(node.seq, flags, start=start)
        if isinstance(node, Repeat):
            if node.high == 0:
                return None
            inner = self.seq(node.seq, flags)
            if seq_width(node.seq)[0] > 0:
                return self._repeat(inner, max(node.low, 1), node.high)
            # Copies that may be empty: one non-empty copy among any number of others.
            return f"(?:{inner})*{self.nonempty_seq(node.seq, flags)}(?:{inner})*"
        raise Unsupported(type(node).__name__)


def _behind_first(seq: Seq) -> Seq:
    """`x(?<!Cy)...` as `(?<!C)x...` when y takes every character x does: the look-behind
    then tests only what precedes x."""
    if len(seq) >= 2 and isinstance(seq[0], Char) and isinstance(seq[1], Look):
        first, look = seq[0], seq[1]
        if (
            look.behind
            and len(look.seq) == 2
            and all(isinstance(c, Char) for c in look.seq)
            and _covers(look.seq[1], first)  # type: ignore[arg-type]
        ):
            return (Look(look.seq[:1], behind=True, negate=look.negate), first, *seq[2:])
    return seq


def _covers(outer: Char, inner: Char) -> bool:
    """Whether `outer` takes every character `inner` does (conservatively: False if unsure)."""
    if outer == inner:
        return True
    if inner.kind == "literal":
        code = inner.code
    elif inner.kind == "class" and not inner.negate and len(inner.items) == 1:
        item = inner.items[0]
        if isinstance(item, str) or item[0] != item[1]:
            return False
        code = item[0]
    else:
        return False
    if code >= 128:
        return False
    return re.fullmatch(Writer("re").single(outer), chr(code)) is not None


def _complement(char: Char, flags: int) -> Char:
    """The characters `char` does not take, as a class."""
    if char.kind == "class":
        return Char("class", items=char.items, negate=not char.negate)
    if char.kind == "category":
        return Char("class", items=(char.category,), negate=True)
    if char.kind == "literal":
        return Char("class", items=((char.code, char.code),), negate=True)
    return Char("class", items=() if flags & DOTALL else ((10, 10),))  # `.`: all but \n


def _char(node: Char, flags: int, *, ascii_text: bool, lowered: bool) -> str:
    extra = () if ascii_text else _beyond_ascii(node, flags)
    return _class(
        Writer("re").single(node), flags, lowered, extra, raised=lowered and not ascii_text
    )


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
def _class(
    source: str,
    flags: int,
    lowered: bool,
    extra: tuple[tuple[int, int], ...],
    *,
    raised: bool = False,
) -> str:
    """An RE2 class: the ASCII characters `re` matches with `source` (in the character as
    lowered, when `lowered`), and the `extra` ranges; with `raised`, also every non-ASCII
    character that lowers to one of those (the class then reads text as it is, not lowered)."""
    compiled = re.compile(source, to_re_flags(flags))
    members = [
        code
        for code in range(128)
        if compiled.fullmatch(chr(code).lower() if lowered else chr(code)) is not None
    ]
    ranges = _ranges(members) + list(extra)
    if raised and _NON_ASCII not in extra:
        ranges += _ranges(sorted(_raised(members, extra)))
    return _klass(ranges)


def _raised(members: list[int], extra: tuple[tuple[int, int], ...]) -> set[int]:
    """The non-ASCII characters that lowering turns into one of `members` or into a
    character of the `extra` ranges."""
    into = _lowering()[0]
    found = {c for m in members for c in into.get(m, ()) if c >= 128}
    for low, cases in into.items():
        if any(a <= low <= b for a, b in extra):
            found.update(cases)
    return found


@lru_cache(maxsize=1)
def _lowering() -> tuple[dict[int, tuple[int, ...]], frozenset[str]]:
    """What `str.lower` does to single characters: for each character, the others that
    lower into it alone; and the characters that lower into more than one (`İ`). Every
    character is read, 256 at a time (about 60 ms, once per process)."""
    into: dict[int, list[int]] = {}
    longer: set[str] = set()
    codec = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"
    for first, end in ((0, 0xD800), (0xE000, sys.maxunicode + 1)):  # no surrogates
        chars = array("I", range(first, end)).tobytes().decode(codec)
        for i in range(0, len(chars), 256):
            block = chars[i : i + 256]
            low = block.lower()
            if low == block:
                continue  # nothing in it lowers (most blocks)
            if len(low) == len(block):
                pairs: Iterable[tuple[str, str]] = zip(block, low, strict=True)
            else:  # a character in it lowers into more than one: each on its own
                longer.update(c for c in block if len(c.lower()) != 1)
                pairs = ((c, c.lower()) for c in block if c not in longer)
            for char, lowered in pairs:
                if char != lowered:
                    into.setdefault(ord(lowered), []).append(ord(char))
    # Python lowers `Σ` at a word's end to `ς` (final sigma), elsewhere to `σ`.
    into.setdefault(ord("ς"), []).append(ord("Σ"))
    return {low: tuple(cases) for low, cases in into.items()}, frozenset(longer)


@lru_cache(maxsize=1)
def lengthening() -> Callable[[str], bool]:
    """The test of whether lowering a text makes it longer (every offset after such a
    character moves), for a caller to keep."""
    return contains_any(_lowering()[1])


def contains_any(chars: Iterable[str]) -> Callable[[str], bool]:
    """A test of whether a text holds one of `chars`. For one character (lowering's `İ`,
    the only one today) it is one `in`: a fraction of a generator over the set per call."""
    wanted = sorted(set(chars))
    if len(wanted) == 1:
        char = wanted[0]
        return lambda text: char in text
    if not wanted:
        return lambda text: False
    klass = re.compile("[" + "".join(re.escape(c) for c in wanted) + "]")
    return lambda text: klass.search(text) is not None


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
        # match(subject): the indices that match, `\z`'s too (an empty list or None: the
        # pass failed). The extension's own Set.Match where the wrapper keeps one: the
        # wrapper's frame and isinstance cost a tenth of a short text's pass, on every delta.
        bare = getattr(getattr(self._set, "_set", None), "Match", None)
        self.match: Callable[[bytes], list[int] | None] = bare or self._set.Match
        self.nothing = [self.size]  # what `match` says of a subject where no source matches

    def present(self, subject: bytes) -> list[int] | None:
        """The indices of the sources that match in `subject` (UTF-8), in no order; None
        when the pass failed (then any of them may)."""
        matched = self.match(subject)
        if not matched or self.size not in matched:
            return None
        matched.remove(self.size)
        return matched
