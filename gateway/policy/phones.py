"""Phone numbers, national and international, validated by libphonenumber (`phonenumbers`).

A regex finds runs of digits with the separators people type (space, dot, dash, slash,
parentheses); libphonenumber decides whether a run is a number that can exist: the length,
the area or mobile prefix and the number plan of its country. Rules and why:

- International (`+44 20 7946 0958`, `0044 ...`, `+14155552671`): valid for the country it
  names, whatever `regions` says: the country code makes it unambiguous.
- National (`0117 496 0938`, `02 33 28 81 20`, `(17) 3965-8540`, `070-8998-4985`): read as
  a number of each configured region in turn (`regions`, default `DEFAULT_REGIONS`), and
  only of a region whose written form it can have: one with a trunk prefix (`0` in most of
  Europe and Japan) is tried only for runs that begin with it.
- A national run typed without any separator (`4155552671` in a log line or JSON) is a
  phone only after a phone word (`tel`, `Telefon`, `電話`...): bare digit runs are ids,
  amounts and timestamps far more often.
- After a word that names another kind of number (part number, SKU, order, IBAN, ISO 6709
  coordinates...), a run is not a phone, valid or not: "P/N 0117-496-0938" is a part.
- Shapes that are something else are refused first: dates (`2024-01-15`, `15.01.2024`),
  coordinates (`+40.7128-074.0060`), dotted quads, decimals and thousands (`1.234.567`),
  and the 3-2-4 grouping of a US SSN (`123-45-6789`), which no national plan prints.
- The left boundary is ASCII: a `+` or digit right after Japanese or Chinese text starts a
  number (`電話+81 3-1234-5678`), after a Latin letter, `#`, `$`, `.` or `/` it does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache

import phonenumbers

from gateway.policy.context import PHONE, SSN
from gateway.policy.detectors import Shape

DEFAULT_REGIONS: tuple[str, ...] = (
    "US", "CA", "GB", "IE", "DE", "AT", "CH", "FR", "BE", "ES", "IT", "NL", "PT", "BR",
    "MX", "JP", "AU", "IN",
)  # fmt: skip
# Region codes libphonenumber knows: what `regions` may name.
KNOWN_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)

_SEP = r"[ \u00a0./()\-]"
# A run of 7 to 18 digits, one to three separators between them; it may open with `+`,
# `(` or `00`. The left boundary is tested after the first character (the regex engine
# then skips quickly to the few characters that can start a run).
_INTL = r"\+(?<![0-9A-Za-z_+]\+)\(?[0-9](?:" + _SEP + r"{0,3}[0-9]){5,17}(?![0-9])"
_NATIONAL = (
    r"[(0-9](?<![0-9A-Za-z_+./#$€£¥%(\-][(0-9])(?<![0-9][ \u00a0./\-)][(0-9])"
    r"(?:(?<=\()[0-9]|(?<=[0-9]))"
    r"(?:" + _SEP + r"{0,3}[0-9]){5,17}(?![0-9])"
)
_DIGIT = re.compile(r"[0-9]")
_GROUP = re.compile(r"[0-9]+")
# Shapes of other things: dates and ISO 6709 coordinates at the start of a run, and runs
# that are wholly a dotted quad, a number with thousands dots, or a decimal.
_STARTS_OTHER = re.compile(
    r"\d{4}([-./])\d{1,2}\1\d{1,2}(?!\d)|\d{1,2}([-./])\d{1,2}\2\d{4}(?!\d)"
    r"|\d{1,3}\.\d{2,}[-+]\d{1,3}\.\d{2,}"
)
_SSN_SHAPE = re.compile(r"\d{3}([- ])\d{2}\1\d{4}")  # printed like a US SSN: 3-2-4
_IS_OTHER = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|\d{1,3}(?:\.\d{3})+|\d+\.\d{4,}")


def _national_prefix_needed(region: str) -> str:
    """The trunk prefix a national number of `region` is written with ("" if none)."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    prefix = meta.national_prefix if meta is not None else None
    if not prefix:
        return ""
    example = phonenumbers.example_number(region)
    if example is None:
        return ""
    shown = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
    return prefix if shown.lstrip("(").startswith(prefix) else ""


@lru_cache(maxsize=512)
def _prefixes(regions: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((r, _national_prefix_needed(r)) for r in regions)


@lru_cache(maxsize=8192)
def valid_phone(candidate: str, regions: tuple[str, ...]) -> bool:
    """Whether `candidate` (as written) is a valid number, international or of a region."""
    digits = "".join(_DIGIT.findall(candidate))
    if not 7 <= len(digits) <= 15:
        return False
    if candidate.startswith(("+", "00")):
        return _valid(("+" + digits[2:]) if candidate.startswith("00") else "+" + digits, None)
    for region, prefix in _prefixes(regions):
        if prefix and not digits.startswith(prefix):
            continue
        if _valid(candidate, region):
            return True
    return False


def _valid(text: str, region: str | None) -> bool:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return False
    if region is None:
        return phonenumbers.is_valid_number(number)
    return phonenumbers.is_valid_number_for_region(number, region)


class PhoneRule:
    """The check of both phone shapes, for one set of regions."""

    def __init__(self, regions: Sequence[str]) -> None:
        self.regions = tuple(dict.fromkeys(r.upper() for r in regions))

    def spans(self, text: str, m: re.Match[str]) -> Iterator[tuple[int, int]]:
        # A run may hold a number and more ("call 0117 496 0938 2024"): from the first
        # group, the longest run of whole groups that is a valid number.
        start, end = m.span()
        cue = PHONE.nearest(text, start)
        if cue is False or _STARTS_OTHER.match(text, start + (text[start] in "+(")):
            return
        if SSN.nearest(text, start) is True:
            return  # "social security number 785 68 9430": the SSN detector's
        groups = [g.span() for g in _GROUP.finditer(text, start, end)]
        for j in range(len(groups), 0, -1):
            stop = groups[j - 1][1]
            if self._phone(text, start, stop, cue):
                yield start, stop
                return

    def _phone(self, text: str, start: int, end: int, cue: bool | None) -> bool:
        value = text[start:end]
        if value.startswith("(") and ")" not in value:
            return False
        bare = value.lstrip("(+")
        if _STARTS_OTHER.match(bare) or _IS_OTHER.fullmatch(bare) or _SSN_SHAPE.fullmatch(bare):
            return False
        international = value.startswith(("+", "00"))
        if not international and cue is None and value.isdigit():
            return False  # a bare run of digits: a phone only after a phone word
        return valid_phone(value, self.regions)


def phone_shapes(regions: Sequence[str] = DEFAULT_REGIONS) -> list[Shape]:
    rule = PhoneRule(regions)
    return [
        Shape("phone", _INTL, spans=rule.spans, hints=("+",), context=48),
        Shape("phone", _NATIONAL, spans=rule.spans, context=48),
    ]
