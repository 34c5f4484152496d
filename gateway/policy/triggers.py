"""Where a detector could act: one linear pass that tells whether, anywhere in a text, some
detector could match or hold text back, so that the during stage can release text without
running them.

Each detector names the regexes its `find` and `holdback` can only answer through (its
`triggers`). Their RE2 supersets (presence.py) are searched together, in one `re2.Set`
pass: where none of them matches, none of the regexes does, and no detector finds or holds
anything. A hold-back's tail counts only its non-empty matches (the empty one at the end
of a text holds nothing): its superset is written for those alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from gateway.policy.presence import PresenceSet, lengthening, superset
from gateway.policy.syntax import Unsupported, parse, seq_width


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
    lower-case form (the detector's case-folding shapes run there when lowering keeps the
    text's length), `linear` as given, already compiled."""

    raw: tuple[Trigger, ...] = ()
    lowered: tuple[Trigger, ...] = ()
    # Compiled RE2 patterns searched as they are (operators' patterns: never run on `re`).
    linear: tuple[Searcher, ...] = ()


class TriggerSet:
    """Triggers compiled into RE2 Sets: `fires(text)` is False only where none matches.

    Every text takes one pass, in the text as it is: the lowered triggers are written to
    read it unlowered (presence.py), for ASCII text and for other text apart. A text that
    lowering lengthens (when there are lowered triggers), or that holds a lone surrogate,
    always fires."""

    def __init__(self, raw: tuple[Trigger, ...], lowered: tuple[Trigger, ...]) -> None:
        self._ascii = PresenceSet(
            [_source(t, ascii_text=True) for t in raw]
            + [_source(t, ascii_text=True, lowered=True) for t in lowered]
        )
        self._other = PresenceSet(
            [_source(t, ascii_text=False) for t in raw]
            + [_source(t, ascii_text=False, lowered=True) for t in lowered]
        )
        self._lengthens = lengthening() if lowered else None
        # quiet() runs on every delta of a guarded stream: its parts at hand
        self._ascii_match, self._ascii_nothing = self._ascii.match, self._ascii.nothing
        self._other_match, self._other_nothing = self._other.match, self._other.nothing

    def quiet(self, text: str) -> bool:
        """No trigger matches in `text`: the pass read it all and found only its end."""
        if text.isascii():
            return self._ascii_match(text.encode()) == self._ascii_nothing
        if self._lengthens is not None and self._lengthens(text):
            return False  # the lowered triggers' offsets would move
        try:
            return self._other_match(text.encode()) == self._other_nothing
        except UnicodeEncodeError:
            return False  # a lone surrogate: RE2 reads UTF-8 only

    def fires(self, text: str) -> bool:
        return not self.quiet(text)


@lru_cache(maxsize=1024)
def _source(trigger: Trigger, *, ascii_text: bool, lowered: bool = False) -> str:
    source = superset(
        trigger.pattern,
        ascii_text=ascii_text,
        lowered=lowered,
        nonempty=trigger.tail,
        ahead=trigger.ahead,
        raw=True,
    )
    if source is None:
        raise Unsupported(f"no superset of {trigger.pattern.pattern!r}")
    return source


@lru_cache(maxsize=64)
def compile_triggers(
    raw: tuple[Trigger, ...], lowered: tuple[Trigger, ...] = ()
) -> TriggerSet | None:
    """The triggers as one test, or None when one of them cannot be rewritten or matches
    without consuming anything (it could be anywhere). Cached: a policy set rebuilt with
    the same detectors compiles nothing again."""
    for trigger in raw + lowered:
        if not trigger.tail and _may_be_empty(trigger.pattern):
            return None
    try:
        return TriggerSet(raw, lowered)
    except Unsupported:
        return None


def _may_be_empty(pattern: re.Pattern[str]) -> bool:
    try:
        return seq_width(parse(pattern.pattern, pattern.flags).seq)[0] == 0
    except (re.error, Unsupported):
        return True
