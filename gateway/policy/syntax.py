"""Regular expressions as a tree we own: parsed from `re` syntax, written back for `re` or RE2.

The hold-back (partial.py) and the fast path's triggers (triggers.py) rewrite patterns, so
they need a pattern's structure. The standard library keeps its parser private (and its tree
changes between versions: 3.13 writes `(?!)` as a new opcode), so we parse the part of the
syntax our detectors and operators use ourselves. A pattern is first checked by `re.compile`
(its errors are the ones users know); what parses there but not here (back-references,
conditionals, `\\N{...}`, scoped global flags) raises `Unsupported`.

Dialects: `re` (our own detectors) and `re2` (operators' patterns, run on a linear-time
engine: no look-around, no atomic groups or possessive repeats, `\\z` for the end of text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypeAlias

Dialect = Literal["re", "re2"]

IGNORECASE, MULTILINE, DOTALL, ASCII, VERBOSE = 1, 2, 4, 8, 16
_FLAG_OF = {"i": IGNORECASE, "m": MULTILINE, "s": DOTALL, "a": ASCII, "x": VERBOSE, "u": 0}
_FLAG_LETTERS = ((IGNORECASE, "i"), (MULTILINE, "m"), (DOTALL, "s"), (ASCII, "a"))
SCOPED_FLAGS = IGNORECASE | MULTILINE | DOTALL | ASCII


class Unsupported(ValueError):
    """The pattern uses a construct the tree does not represent (or the dialect lacks)."""


# A class item: a range of code points, or a category escape such as "\\d".
ClassItem: TypeAlias = tuple[int, int] | str


@dataclass(frozen=True, slots=True)
class Char:
    """Consumes one character: a literal, `.`, a category escape, or a class."""

    kind: Literal["literal", "any", "category", "class"]
    code: int = 0  # the literal's code point
    category: str = ""  # "\\d", "\\W", ...
    items: tuple[ClassItem, ...] = ()  # a class's members
    negate: bool = False  # a class's `^`


@dataclass(frozen=True, slots=True)
class Anchor:
    at: Literal["^", "$", "\\A", "\\Z", "\\b", "\\B"]


@dataclass(frozen=True, slots=True)
class Group:
    """`(...)`, `(?:...)` or `(?flags-flags:...)`: only its flags matter to a rewrite."""

    seq: Seq
    add: int = 0
    remove: int = 0


@dataclass(frozen=True, slots=True)
class Alt:
    branches: tuple[Seq, ...]


@dataclass(frozen=True, slots=True)
class Repeat:
    seq: Seq
    low: int
    high: int | None  # None: unbounded
    lazy: bool = False
    possessive: bool = False


@dataclass(frozen=True, slots=True)
class Look:
    """A look-ahead (`behind` False) or look-behind, positive or negative."""

    seq: Seq
    behind: bool
    negate: bool


@dataclass(frozen=True, slots=True)
class Atomic:
    seq: Seq


@dataclass(frozen=True, slots=True)
class Fail:
    """`(?!)`: never matches."""


Node: TypeAlias = Char | Anchor | Group | Alt | Repeat | Look | Atomic | Fail
Seq: TypeAlias = tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Pattern:
    seq: Seq
    flags: int  # global flags (IGNORECASE, ...), from the compiled pattern

    @property
    def width(self) -> tuple[int, int | None]:
        return seq_width(self.seq)


def parse(source: str, flags: int = 0) -> Pattern:
    """The tree of `source` (valid `re` syntax). Raises re.error or Unsupported."""
    compiled = re.compile(source, flags)
    own = _from_re_flags(compiled.flags)
    parser = _Parser(source, own)
    seq = parser.alternation()
    if parser.pos != len(source):
        raise Unsupported(f"unexpected {source[parser.pos]!r} at position {parser.pos}")
    return Pattern(seq, parser.global_flags)


def _from_re_flags(flags: int) -> int:
    out = 0
    for bit, own in (
        (re.IGNORECASE, IGNORECASE),
        (re.MULTILINE, MULTILINE),
        (re.DOTALL, DOTALL),
        (re.ASCII, ASCII),
        (re.VERBOSE, VERBOSE),
    ):
        if flags & bit:
            out |= own
    return out


def to_re_flags(flags: int) -> int:
    out = 0
    for own, bit in (
        (IGNORECASE, re.IGNORECASE),
        (MULTILINE, re.MULTILINE),
        (DOTALL, re.DOTALL),
        (ASCII, re.ASCII),
    ):
        if flags & own:
            out |= bit
    return out


_CATEGORY_ESCAPES = frozenset("dDsSwW")
_CONTROL = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
# `\\z` is Python 3.14's spelling of `\\Z` (earlier versions refuse it at compile time).
_ANCHOR_ESCAPES = {"A": "\\A", "Z": "\\Z", "z": "\\Z", "b": "\\b", "B": "\\B"}


class _Parser:
    def __init__(self, source: str, flags: int) -> None:
        self.src = source
        self.pos = 0
        self.global_flags = flags
        self.verbose = bool(flags & VERBOSE)

    def _peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.src[i] if i < len(self.src) else ""

    def _skip_verbose(self) -> None:
        while self.verbose and self.pos < len(self.src):
            ch = self.src[self.pos]
            if ch in " \t\n\r\f\v":
                self.pos += 1
            elif ch == "#":
                end = self.src.find("\n", self.pos)
                self.pos = len(self.src) if end < 0 else end + 1
            else:
                return

    def alternation(self) -> Seq:
        branches = [self.sequence()]
        while self._peek() == "|":
            self.pos += 1
            branches.append(self.sequence())
        if len(branches) == 1:
            return branches[0]
        return (Alt(tuple(branches)),)

    def sequence(self) -> Seq:
        items: list[Node] = []
        while True:
            self._skip_verbose()
            ch = self._peek()
            if ch in ("", "|", ")"):
                return tuple(items)
            atom = self.atom()
            if atom is None:
                continue
            self._skip_verbose()
            items.append(self.quantified(atom))

    def quantified(self, atom: Node) -> Node:
        ch = self._peek()
        low: int
        high: int | None
        if ch == "*":
            low, high = 0, None
        elif ch == "+":
            low, high = 1, None
        elif ch == "?":
            low, high = 0, 1
        elif ch == "{":
            bounds = re.match(r"\{(\d*)(?:(,)(\d*))?\}", self.src[self.pos :])
            if bounds is None or (not bounds.group(1) and not bounds.group(2)):
                return atom  # `{` taken literally, as `re` does
            low = int(bounds.group(1) or 0)
            if bounds.group(2):
                high = int(bounds.group(3)) if bounds.group(3) else None
            else:
                high = low
            self.pos += len(bounds.group()) - 1
        else:
            return atom
        self.pos += 1
        lazy = possessive = False
        if self._peek() == "?":
            lazy = True
            self.pos += 1
        elif self._peek() == "+":
            possessive = True
            self.pos += 1
        return Repeat(_as_seq(atom), low, high, lazy, possessive)

    def atom(self) -> Node | None:
        ch = self.src[self.pos]
        self.pos += 1
        if ch == ".":
            return Char("any")
        if ch == "^":
            return Anchor("^")
        if ch == "$":
            return Anchor("$")
        if ch == "[":
            return self.klass()
        if ch == "(":
            return self.group()
        if ch == "\\":
            return self.escape()
        return Char("literal", ord(ch))

    def group(self) -> Node | None:
        if self._peek() != "?":
            return Group(self._close(self.alternation()))
        self.pos += 1
        ch = self._peek()
        if ch == ":":
            self.pos += 1
            return Group(self._close(self.alternation()))
        if ch == "P" and self._peek(1) == "<":
            end = self.src.index(">", self.pos)
            self.pos = end + 1
            return Group(self._close(self.alternation()))
        if ch in ("=", "!"):
            self.pos += 1
            return Look(self._close(self.alternation()), behind=False, negate=ch == "!")
        if ch == "<" and self._peek(1) in ("=", "!"):
            negate = self._peek(1) == "!"
            self.pos += 2
            return Look(self._close(self.alternation()), behind=True, negate=negate)
        if ch == ">":
            self.pos += 1
            return Atomic(self._close(self.alternation()))
        if ch == "#":
            self.pos = self.src.index(")", self.pos) + 1
            return None
        flags = re.match(r"([aiLmsux]*)(?:-([imsx]*))?([:)])", self.src[self.pos :])
        if flags is None:
            raise Unsupported(f"the group at position {self.pos - 2} (a back-reference or test)")
        add = _flag_bits(flags.group(1))
        remove = _flag_bits(flags.group(2) or "")
        self.pos += len(flags.group())
        if flags.group(3) == ")":
            # Global flags: `re` accepts them only at the start, and compile() has them.
            return None
        return Group(self._close(self.alternation()), add & SCOPED_FLAGS, remove & SCOPED_FLAGS)

    def _close(self, seq: Seq) -> Seq:
        if self._peek() != ")":
            raise Unsupported(f"missing ) at position {self.pos}")
        self.pos += 1
        return seq

    def escape(self) -> Node:
        ch = self.src[self.pos]
        self.pos += 1
        if ch in _CATEGORY_ESCAPES:
            return Char("category", category="\\" + ch)
        if ch in _ANCHOR_ESCAPES:
            return Anchor(_ANCHOR_ESCAPES[ch])  # type: ignore[arg-type]
        if ch.isdigit() and ch != "0":
            octal = self.src[self.pos - 1 : self.pos + 2]
            if len(octal) == 3 and ch in "1234567" and all(c in "01234567" for c in octal):
                code = int(octal, 8)
                self.pos += 2
                return Char("literal", code)
            raise Unsupported("back-references")
        return Char("literal", self._escaped_code(ch))

    def _escaped_code(self, ch: str) -> int:
        """The code point of an escape whose first character (after `\\`) is `ch`."""
        if ch in _CONTROL:
            return _CONTROL[ch]
        if ch == "0":
            digits = re.match(r"[0-7]{0,2}", self.src[self.pos :])
            text = digits.group() if digits else ""
            self.pos += len(text)
            return int("0" + text, 8)
        if ch in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[ch]
            code = int(self.src[self.pos : self.pos + size], 16)
            self.pos += size
            return code
        if ch == "N":
            raise Unsupported("\\N{...} escapes")
        return ord(ch)

    def klass(self) -> Char:
        negate = False
        if self._peek() == "^":
            negate = True
            self.pos += 1
        items: list[ClassItem] = []
        first = True
        while True:
            ch = self.src[self.pos]
            if ch == "]" and not first:
                self.pos += 1
                return Char("class", items=tuple(items), negate=negate)
            first = False
            self.pos += 1
            low: int
            if ch == "\\":
                esc = self.src[self.pos]
                self.pos += 1
                if esc in _CATEGORY_ESCAPES:
                    items.append("\\" + esc)
                    continue
                low = 8 if esc == "b" else self._escaped_code(esc)
            else:
                low = ord(ch)
            if self._peek() == "-" and self._peek(1) not in ("]", ""):
                self.pos += 1
                ch2 = self.src[self.pos]
                self.pos += 1
                if ch2 == "\\":
                    esc = self.src[self.pos]
                    self.pos += 1
                    high = 8 if esc == "b" else self._escaped_code(esc)
                else:
                    high = ord(ch2)
                items.append((low, high))
            else:
                items.append((low, low))


def _flag_bits(letters: str) -> int:
    out = 0
    for letter in letters:
        if letter == "L":
            raise Unsupported("the locale flag (?L)")
        out |= _FLAG_OF[letter]
    return out


def _as_seq(node: Node) -> Seq:
    if isinstance(node, Group) and not node.add and not node.remove:
        return node.seq
    return (node,)


# Widths -----------------------------------------------------------------------------------


def seq_width(seq: Seq) -> tuple[int, int | None]:
    low = 0
    high: int | None = 0
    for node in seq:
        a, b = width(node)
        low += a
        high = None if high is None or b is None else high + b
    return low, high


def width(node: Node) -> tuple[int, int | None]:
    """The fewest and most characters a node consumes (None: no bound)."""
    if isinstance(node, Char):
        return 1, 1
    if isinstance(node, (Anchor, Look, Fail)):
        return 0, 0
    if isinstance(node, (Group, Atomic)):
        return seq_width(node.seq)
    if isinstance(node, Alt):
        widths = [seq_width(b) for b in node.branches]
        highs = [h for _, h in widths]
        return min(lo for lo, _ in widths), None if None in highs else max(h or 0 for h in highs)
    low, high = seq_width(node.seq)
    top = None if node.high is None or high is None else high * node.high
    return low * node.low, top


# Writing a tree back ----------------------------------------------------------------------


class Writer:
    """Writes nodes as source for one dialect; both compile to the same matches."""

    def __init__(self, dialect: Dialect = "re") -> None:
        self.dialect = dialect
        self.end = "\\Z" if dialect == "re" else "\\z"
        self.never = "(?!)" if dialect == "re" else "[^\\x00-\\x{10ffff}]"

    def char(self, code: int) -> str:
        ch = chr(code)
        if ch.isalnum() or ch == "_":
            return ch
        if 32 < code < 127:
            return "\\" + ch  # escaping ASCII punctuation is always allowed, in classes too
        if self.dialect == "re2":
            return f"\\x{{{code:x}}}"
        return f"\\U{code:08x}"

    def klass(self, node: Char) -> str:
        parts = []
        for item in node.items:
            if isinstance(item, str):
                parts.append(item)
            elif item[0] == item[1]:
                parts.append(self.char(item[0]))
            else:
                parts.append(f"{self.char(item[0])}-{self.char(item[1])}")
        return f"[{'^' if node.negate else ''}{''.join(parts)}]"

    def single(self, node: Char) -> str:
        if node.kind == "literal":
            return self.char(node.code)
        if node.kind == "any":
            return "."
        if node.kind == "category":
            return node.category
        return self.klass(node)

    def anchor(self, node: Anchor) -> str:
        return self.end if node.at == "\\Z" else node.at

    def flags(self, add: int, remove: int) -> str:
        if self.dialect == "re2" and (add | remove) & ASCII:
            raise Unsupported("the ASCII flag (RE2 classes are ASCII already)")
        on = "".join(letter for bit, letter in _FLAG_LETTERS if add & bit)
        off = "".join(letter for bit, letter in _FLAG_LETTERS if remove & bit)
        if not on and not off:
            return "(?:"
        return f"(?{on}-{off}:" if off else f"(?{on}:"

    def wrap(self, flags: int, source: str) -> str:
        letters = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
        if self.dialect == "re2" and "a" in letters:
            raise Unsupported("the ASCII flag (RE2 classes are ASCII already)")
        return f"(?{letters}:{source})" if letters and source else source

    def node(self, node: Node) -> str:
        """The node itself (possessive and atomic forms loosened unless `exact`)."""
        return self.exact(node, loose=True)

    def exact(self, node: Node, *, loose: bool = False) -> str:
        if isinstance(node, Char):
            return self.single(node)
        if isinstance(node, Anchor):
            return self.anchor(node)
        if isinstance(node, Fail):
            return self.never
        if isinstance(node, Alt):
            return "(?:" + "|".join(self.seq(b, loose=loose) for b in node.branches) + ")"
        if isinstance(node, Group):
            return self.flags(node.add, node.remove) + self.seq(node.seq, loose=loose) + ")"
        if isinstance(node, Repeat):
            if node.high is None:
                quant = f"{{{node.low},}}"
            else:
                quant = f"{{{node.low},{node.high}}}"
            if node.lazy:
                quant += "?"
            elif node.possessive and not loose:
                self._need_re("possessive repeats")
                quant += "+"
            return f"(?:{self.seq(node.seq, loose=loose)}){quant}"
        if isinstance(node, Atomic):
            if loose:
                return "(?:" + self.seq(node.seq, loose=loose) + ")"
            self._need_re("atomic groups")
            return "(?>" + self.seq(node.seq, loose=loose) + ")"
        self._need_re("look-ahead and look-behind")
        kind = ("<" if node.behind else "") + ("!" if node.negate else "=")
        return f"(?{kind}{self.seq(node.seq, loose=loose)})"

    def seq(self, seq: Seq, *, loose: bool = True) -> str:
        return "".join(self.exact(n, loose=loose) for n in seq)

    def _need_re(self, what: str) -> None:
        if self.dialect == "re2":
            raise Unsupported(what)

    def pattern(self, pattern: Pattern) -> str:
        """The whole pattern, exactly, with its global flags inline."""
        return self.wrap(pattern.flags & SCOPED_FLAGS, self.seq(pattern.seq, loose=False))


def literal_prefix(pattern: Pattern) -> str:
    """The literal text every match begins with ("" when there is none, or case is ignored)."""
    if pattern.flags & IGNORECASE:
        return ""
    out: list[str] = []
    for node in pattern.seq:
        if isinstance(node, Anchor) or (isinstance(node, Look) and node.behind):
            if out:
                break
            continue
        if not (isinstance(node, Char) and node.kind == "literal"):
            break
        out.append(chr(node.code))
    return "".join(out)
