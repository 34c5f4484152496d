"""Which of a detector's shapes can match a text at all: one RE2 pass instead of one scan each.

A detector of two dozen shapes used to scan a text once per shape (a regex search or a few
substring finds each), most of them for nothing: on benign prose no shape matches, and on a
50-character prompt the calls cost more than the text. Here the shapes' patterns (or their
`presence`, where the check asks for more than the pattern) are searched together, as RE2
supersets (presence.py), and only the shapes found present run, their own code then
deciding exactly as before. So the prefilter never changes what a detector finds.

Each text takes one pass, in the text as it is, the case-folding shapes' supersets written
to read it unlowered (presence.py): one Set for ASCII text, one for other text. Text that
lowering would lengthen (`İ`) has every case-folding shape run, and text that cannot be
encoded (a lone surrogate) every shape.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from gateway.policy.presence import PresenceSet, superset


class Scanned(Protocol):
    """What the prefilter needs of a shape."""

    @property
    def pattern(self) -> re.Pattern[str]: ...

    @property
    def presence(self) -> re.Pattern[str] | None: ...

    @property
    def casefold(self) -> bool: ...


S = TypeVar("S", bound=Scanned)


class _Pass:
    """The supersets of some of the shapes (by index), searched in one subject."""

    def __init__(self, shapes: Sequence[Scanned], indices: Sequence[int], *, ascii_text: bool):
        sources = []
        self._tested: list[int] = []  # source index -> shape index
        always = []
        for i in indices:
            shape = shapes[i]
            source = superset(
                shape.presence or shape.pattern,
                ascii_text=ascii_text,
                lowered=shape.casefold,
                raw=True,
            )
            if source is None:
                always.append(i)  # no superset: it runs on every text
            else:
                sources.append(source)
                self._tested.append(i)
        self._set = PresenceSet(sources)
        self.indices = list(indices)
        self._always = always

    def hits(self, subject: bytes) -> list[int]:
        """The shapes (indices) that may match `subject`: all of them if the pass failed."""
        present = self._set.present(subject)
        if present is None:
            return list(self.indices)
        return [self._tested[i] for i in present] + self._always


class Prefilter(Generic[S]):
    """The shapes of a detector that may match a text, in their order, from one RE2 pass."""

    def __init__(self, shapes: Sequence[S]) -> None:
        self.shapes = tuple(shapes)
        every = range(len(self.shapes))
        self._ascii = _Pass(self.shapes, every, ascii_text=True)
        self._other = _Pass(self.shapes, every, ascii_text=False)
        self._folded = frozenset(i for i in every if self.shapes[i].casefold)
        self._picked: dict[tuple[int, ...], tuple[S, ...]] = {}

    def select(self, text: str, low: str | None) -> tuple[S, ...]:
        """The shapes that may find something in `text` (`low`: it lowered, None when
        lowering lengthens it), in the detector's order."""
        if text.isascii():
            return self._pick(self._ascii.hits(text.encode()))
        try:
            hits = self._other.hits(text.encode())
        except UnicodeEncodeError:
            return self.shapes  # a lone surrogate: RE2 reads UTF-8 only
        if low is None and self._folded:
            return self._pick(list(self._folded.union(hits)))  # offsets would move
        return self._pick(hits)

    def _pick(self, hits: list[int]) -> tuple[S, ...]:
        key = tuple(sorted(hits))
        picked = self._picked.get(key)
        if picked is None:
            picked = tuple(self.shapes[i] for i in key)
            if len(self._picked) < 4096:  # combinations are few; this only bounds them
                self._picked[key] = picked
        return picked
