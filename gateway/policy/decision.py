"""What a policy check concludes: violations, and the text rewritten by the matches.

Shared by the pre and post stages (engine.py) and the during stage (stream.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from gateway.policy.detectors import Detector, Match
from gateway.policy.limits import LengthLimit, ModelAllowlist
from gateway.policy.masking import excerpt
from gateway.policy.model import Action, Kind, PolicySpec, Stage

REDACTION = "[REDACTED:{label}]"


def redaction(label: str) -> str:
    """What the client and the store see in place of a redacted match."""
    return REDACTION.format(label=label)


@dataclass(frozen=True, slots=True)
class Violation:
    """One policy hit. `excerpt` is masked; start/end index the checked text (the whole
    answer for the during stage); they are None for checks on sizes and names."""

    policy_id: str
    policy_name: str
    stage: Stage
    action: Action
    kind: Kind
    label: str
    excerpt: str = ""
    start: int | None = None
    end: int | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of the pre or post stage.

    text: the input with every redact- or block-action match replaced by `[REDACTED:label]`
    (what the provider and the store may see); blocked: the first blocking violation."""

    text: str
    violations: tuple[Violation, ...] = ()
    blocked: Violation | None = None
    changed: bool = False


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    spec: PolicySpec
    detector: Detector | None = None
    length: LengthLimit | None = None
    allowlist: ModelAllowlist | None = None

    def violation(self, stage: Stage, label: str, **fields: Any) -> Violation:
        s = self.spec
        return Violation(s.id, s.name or s.id, stage, s.action, s.kind, label, **fields)


Found = list[tuple[Match, tuple[CompiledPolicy, ...]]]
DetectorGroups = tuple[tuple[Detector, tuple[CompiledPolicy, ...]], ...]


def detector_groups(policies: Sequence[CompiledPolicy]) -> DetectorGroups:
    """Each distinct detector with the policies that use it, so that it runs once."""
    by_detector: dict[int, tuple[Detector, list[CompiledPolicy]]] = {}
    for p in policies:
        if p.detector is not None:
            by_detector.setdefault(id(p.detector), (p.detector, []))[1].append(p)
    return tuple((d, tuple(owners)) for d, owners in by_detector.values())


def find_all(groups: DetectorGroups, text: str, start: int) -> Found:
    """Every match in `text` from `start`, sorted, with the policies it concerns."""
    found: Found = []
    for detector, owners in groups:
        for m in detector.find(text, start):
            found.append((m, owners))
    if len(found) > 1:
        found.sort(key=lambda f: (f[0].start, -f[0].end))
    return found


def apply(  # long: one pass over the sorted matches, whose group state every branch shares
    stage: Stage,
    text: str,
    lo: int,
    hi: int,
    found: Found,
    *,
    offset: int,
    stop: bool,
    before: str = "",
) -> tuple[str, list[Violation], int | None]:
    """Rewrite text[lo:hi] given the matches inside it (sorted by start).

    Overlapping matches form one group; a group with a block or redact action becomes one
    `[REDACTED:label]`, other groups stay as they are. Returns the text, the violations and,
    when a group blocks, its start. With `stop`, the text ends before the first blocking
    group and later groups are not looked at (the stream case). `offset` is added to the
    reported positions; excerpts do not read before `lo` and show `before` there instead."""
    pieces: list[str] = []
    violations: list[Violation] = []
    matches = [m for m, _ in found]
    pos = lo
    i = 0
    block_at: int | None = None
    while i < len(found):
        g_start = found[i][0].start
        g_end = found[i][0].end
        j = i + 1
        while j < len(found) and found[j][0].start < g_end:
            g_end = max(g_end, found[j][0].end)
            j += 1
        group = found[i:j]
        hides = None
        blocks = False
        for m, owners in group:
            shown = excerpt(text, m, matches, floor=lo, before=before)
            for p in owners:
                violations.append(
                    p.violation(
                        stage,
                        m.label,
                        excerpt=shown,
                        start=offset + m.start - lo,
                        end=offset + m.end - lo,
                    )
                )
                if p.spec.action in ("block", "redact"):
                    hides = hides or m.label
                blocks = blocks or p.spec.action == "block"
        if blocks and block_at is None:
            block_at = g_start
            if stop:
                pieces.append(text[pos:g_start])
                return "".join(pieces), violations, block_at
        if hides is not None:
            pieces.append(text[pos:g_start])
            pieces.append(redaction(hides))
            pos = g_end
        i = j
    pieces.append(text[pos:hi])
    return "".join(pieces), violations, block_at
