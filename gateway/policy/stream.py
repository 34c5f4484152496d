"""The during stage: policies applied to an answer while it streams.

Text is released the moment no more text could make it part of a match; only a tail that
might still grow into one is held (a keyword's first letters, a trailing run of digits, a
`sk-` key still arriving). Whatever the chunking, no character of a match that is blocked
or redacted is ever released, and the released text, joined, is the answer with every
redact-action match replaced by `[REDACTED:label]` (or, when blocked, the part of it before
the blocking match). Limits: a match longer than its detector's hold-back bound (256
characters for an operator's pattern, 16 KiB for a PEM block) is decided on what was held.

Most deltas take a fast path: with nothing held, a delta whose text (with the context the
detectors read) matches none of the detectors' triggers is released as it came, without
running them. The triggers promise that the detectors would find nothing there and hold
nothing back (see triggers.py), so the two paths give the same steps.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from gateway.policy.decision import (
    CompiledPolicy,
    Found,
    Violation,
    apply,
    detector_groups,
    find_all,
)
from gateway.policy.detectors import Detector
from gateway.policy.masking import EXCERPT_CONTEXT
from gateway.policy.triggers import Searcher, Trigger, TriggerSet, compile_triggers

# Never hold more than this: a match still open after that many characters is decided on
# what has arrived (a PEM block is the longest thing any built-in detector waits for).
MAX_HOLD = 32768


# Not frozen, though never changed: a frozen dataclass's __init__ sets each field through
# object.__setattr__, and a guard makes a step per delta (3% of a stream's instructions).
@dataclass(slots=True)
class GuardStep:
    emit: str  # safe to send to the client now, already redacted
    violations: tuple[Violation, ...] = ()  # new since the previous step
    blocked: Violation | None = None  # set once: send error policy_blocked, then end


_NOTHING = GuardStep("")


class StreamGuard:
    """feed() each text delta, finish() at the end of the answer; send each step's `emit`.

    fast_path=False runs the detectors on every delta (the tests compare the two)."""

    def __init__(self, policies: Sequence[CompiledPolicy], *, fast_path: bool = True) -> None:
        self._groups = detector_groups(policies)
        self._detectors = tuple(d for d, _ in self._groups)
        self._lookbehind = max((d.lookbehind for d in self._detectors), default=0)
        quiet = _quiet_tests(self._detectors) if fast_path else None
        self._quiet = quiet.test if quiet is not None else None
        # Size limits, in characters of raw answer, reported once each.
        self._limits = [
            (p, p.length.char_budget)
            for p in policies
            if p.length is not None and p.length.char_budget is not None
        ]
        self._context = ""  # raw text released just before `_pending`, for left context
        self._sent = ""  # the end of what was released, as sent: the left side of excerpts
        self._pending = ""  # raw text received but not yet released
        self._offset = 0  # position of `_pending` in the whole answer
        self._received = 0
        self._finished = False
        self.blocked: Violation | None = None
        self.violations: list[Violation] = []

    @property
    def held(self) -> int:
        """Characters received but not released yet."""
        return len(self._pending)

    def feed(self, delta: str) -> GuardStep:
        step = self.step(delta)
        return GuardStep(step) if isinstance(step, str) else step

    def step(self, delta: str) -> str | GuardStep:
        """feed(), where a delta released whole as it came with nothing found (most of
        them) is the delta itself: no GuardStep made per token."""
        if self._finished:
            raise RuntimeError("StreamGuard.feed() after finish()")
        if self.blocked is not None:
            return GuardStep("", (), self.blocked)
        if not delta:
            return _NOTHING
        over: tuple[Violation, ...] = ()
        stop: Violation | None = None
        if self._limits:
            delta, over, stop = self._check_limits(delta)
        step: str | GuardStep
        if not self._detectors:
            step = delta
        elif self._quiet is not None and not self._pending:
            buf = self._context + delta
            if self._quiet(buf):
                step = self._release(buf, delta)
            else:
                step = self._advance(buf, len(self._context), final=len(buf) > MAX_HOLD)
        else:
            buf = self._context + self._pending + delta
            step = self._advance(buf, len(self._context), final=len(buf) > MAX_HOLD)
        if not (stop or over):
            return step
        if isinstance(step, str):
            step = GuardStep(step)
        if stop is not None and step.blocked is None:
            self.blocked = stop
            self._pending = ""  # what was held might be part of a match: it is dropped
            return GuardStep(step.emit, step.violations + over, stop)
        return GuardStep(step.emit, step.violations + over, step.blocked)

    def release_all(self, deltas: list[str]) -> bool:
        """Several deltas that came together (a TextRun), in one pass: True when all of
        them are released as they came, the guard moved past them. That is the fast path's
        promise for their concatenation (nothing held, and no trigger in it with the
        context): released at once, split where they came, they are the same text.
        False, with nothing changed, when each must take its own step()."""
        if self._limits or self.blocked is not None or self._finished:
            return False
        if not self._detectors:
            return True  # as step() does: each delta is released as it came
        if self._quiet is None or self._pending:
            return False
        joined = "".join(deltas)
        buf = self._context + joined
        if not self._quiet(buf):
            return False
        self._release(buf, joined)
        return True

    def finish(self) -> GuardStep:
        """The answer is complete: decide on what is still held and release it."""
        if self._finished or self.blocked is not None:
            self._finished = True
            return GuardStep("", (), self.blocked) if self.blocked else _NOTHING
        self._finished = True
        if not self._pending:
            return _NOTHING
        return self._advance(self._context + self._pending, len(self._context), final=True)

    def _advance(self, buf: str, base: int, *, final: bool) -> GuardStep:
        n = len(buf)
        cut = n
        if not final:
            for detector in self._detectors:
                hold = detector.holdback(buf)
                cut = min(cut, n - hold)
            if cut <= base:
                self._pending = buf[base:]
                return _NOTHING
        found = find_all(self._groups, buf, base)
        if found and not final:
            cut = _settled(found, cut, n)
        committed: Found = [f for f in found if f[0].end <= cut]
        if committed:
            emit, violations, block_at = apply(
                "during",
                buf,
                base,
                cut,
                committed,
                offset=self._offset,
                stop=True,
                before=self._sent,
            )
        else:
            emit, violations, block_at = buf[base:cut], [], None
        if block_at is not None:
            blocked = next(v for v in violations if v.action == "block")
            self.blocked = blocked
            self.violations.extend(violations)
            self._pending = ""
            return GuardStep(emit, tuple(violations), blocked)
        self._offset += cut - base
        self._context = buf[max(0, cut - self._lookbehind) : cut]
        self._pending = buf[cut:]
        if emit:
            self._sent = (self._sent + emit)[-EXCERPT_CONTEXT:]
        if violations:
            self.violations.extend(violations)
            return GuardStep(emit, tuple(violations))
        return GuardStep(emit) if emit else _NOTHING

    def _release(self, buf: str, delta: str) -> str:
        """What _advance concludes when no detector finds or holds anything in `buf`, the
        context and then `delta` (nothing held): all of `delta` goes, as it came."""
        self._offset += len(delta)
        self._context = buf[max(0, len(buf) - self._lookbehind) :]
        self._sent = (self._sent + delta)[-EXCERPT_CONTEXT:]
        return delta

    def _check_limits(self, delta: str) -> tuple[str, tuple[Violation, ...], Violation | None]:
        before = self._received
        self._received += len(delta)
        over: list[Violation] = []
        stop: Violation | None = None
        keep = len(delta)
        for entry in list(self._limits):
            policy, budget = entry
            if self._received <= budget:
                continue
            self._limits.remove(entry)
            kind = policy.spec.kind
            label = "max_output_tokens" if kind == "max_output_tokens" else "max_length"
            reason = policy.length.exceeded(self._received) if policy.length else None
            over.append(policy.violation("during", label, detail=reason or f"over {budget} chars"))
            if policy.spec.action == "block":
                keep = min(keep, max(0, budget - before))
                stop = stop or over[-1]
        self.violations.extend(over)
        return delta[:keep], tuple(over), stop


def _settled(found: Found, cut: int, n: int) -> int:
    """Move `cut` back before any match that crosses it or touches the end of the text: such
    a match may still grow, and none of its characters may be released early."""
    moved = True
    while moved:
        moved = False
        for m, _ in found:
            if m.start < cut and (m.end > cut or m.end == n):
                cut = m.start
                moved = True
    return cut


# Plain prose, cut after a word as most deltas are. A detector whose triggers fire on all of
# it (an email address's hold-back takes any word at the end) would make the fast path's
# test a cost on nearly every delta.
_PROSE = (
    "Here is the answer you asked for",
    "It returns a list of names, sorted by length",
    "Hello! How can I help you today",
)


class Quiet:
    """Tells a text in which a detector can find or hold nothing: none of its triggers
    matches it (triggers.py).

    helps: False when the test fails even on plain prose (the guard then does not ask)."""

    __slots__ = ("_linear", "_triggers", "helps", "test")

    def __init__(self, triggers: TriggerSet | None, linear: Sequence[Searcher] = ()) -> None:
        self._triggers = triggers
        self._linear = tuple(linear)
        self.helps = any(self(text) for text in _PROSE)
        # what a guard calls on each delta: the triggers' own test when there is nothing
        # else to ask (a frame less per delta)
        self.test: Callable[[str], bool] = (
            triggers.quiet if triggers is not None and not self._linear else self.__call__
        )

    def __call__(self, text: str) -> bool:
        if self._triggers is not None and not self._triggers.quiet(text):
            return False
        for linear in self._linear:
            # A tail may match empty at the very end, holding nothing: only that is quiet.
            m = linear.search(text)
            if m is not None and m.end() > m.start():
                return False
        return True


_QUIET: weakref.WeakKeyDictionary[Detector, Quiet | None] = weakref.WeakKeyDictionary()


def quiet_test(detector: Detector) -> Quiet | None:
    """The fast path's test for one detector (compiled on first use, then kept with the
    detector), or None when the detector makes no promise."""
    try:
        return _QUIET[detector]
    except KeyError:
        pass
    test = None
    triggers = getattr(detector, "triggers", None)
    if triggers is not None:
        compiled = None
        if triggers.raw or triggers.lowered:
            compiled = compile_triggers(triggers.raw, triggers.lowered)
        if compiled is not None or not (triggers.raw or triggers.lowered):
            test = Quiet(compiled, triggers.linear)
    _QUIET[detector] = test
    return test


def _quiet_tests(detectors: tuple[Detector, ...]) -> Quiet | None:
    """One test for all the detectors: the text is quiet for them all, or the slow path runs
    them all anyway. None when one of them makes no promise, or its test would not help."""
    for detector in detectors:
        test = quiet_test(detector)
        if test is None or not test.helps:
            return None
    return _union(detectors) if detectors else None


@lru_cache(maxsize=64)
def _union(detectors: tuple[Detector, ...]) -> Quiet | None:
    """The detectors' triggers in one RE2 Set pass (and their linear searchers after it),
    rather than a pass per detector: cached per set of detectors, as a guard is made per
    answer. One detector keeps its own test."""
    if len(detectors) == 1:
        return quiet_test(detectors[0])
    raw: list[Trigger] = []
    lowered: list[Trigger] = []
    linear: list[Searcher] = []
    for detector in detectors:
        triggers = detector.triggers
        assert triggers is not None  # quiet_test made a test of them
        raw += triggers.raw
        lowered += triggers.lowered
        linear += triggers.linear
    compiled = compile_triggers(tuple(raw), tuple(lowered)) if raw or lowered else None
    if compiled is None and (raw or lowered):
        return None  # each compiles alone, together they did not: the slow path, as safe
    test = Quiet(compiled, linear)
    return test if test.helps else None
