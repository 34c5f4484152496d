"""Personal data: payment cards, emails, phone numbers, IBANs, US SSNs, IP addresses.

A regex proposes candidates; arithmetic decides (Luhn for cards, mod 97 for IBANs,
`ipaddress` for IPs), so a number that merely looks like a card is not one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from gateway.policy.detectors import Shape, ShapeDetector

ENTITIES = ("card", "email", "phone", "iban", "ssn", "ip")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """Country code, two check digits, 11 to 30 letters or digits, and mod 97 == 1."""
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    rotated = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rotated)
    return int(number) % 97 == 1


def _groups(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The runs of digits or capitals inside text[start:end], split at single separators."""
    return [m.span() for m in _GROUP.finditer(text, start, end)]


_GROUP = re.compile(r"[0-9A-Z]+")


def _card_spans(text: str, m: re.Match[str]) -> Iterable[tuple[int, int]]:
    # A run of digit groups may hold a card next to other numbers ("... 4111 1111 1111
    # 1111 2025"): from each group, the longest run of whole groups that is a valid card.
    # Printed cards group their digits by 4 to 6 (a last group of 3 for 19 digits), with
    # one kind of separator; SSNs, dates and phone numbers next to each other are not cards.
    groups = _groups(text, *m.span())
    i = 0
    while i < len(groups):
        best = None
        digits = ""
        for j in range(i, len(groups)):
            s, e = groups[j]
            if j > i and (
                e - s < 3
                or groups[j - 1][1] - groups[j - 1][0] < 4
                or text[s - 1] != text[groups[i][1]]
            ):
                break
            digits += text[s:e]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and digits[0] in "23456" and luhn_valid(digits):
                best = j
        if best is None:
            i += 1
            continue
        yield groups[i][0], groups[best][1]
        i = best + 1


def _iban_spans(text: str, m: re.Match[str]) -> Iterable[tuple[int, int]]:
    # Printed IBANs come in groups of four; the candidate may run into a following word.
    groups = _groups(text, *m.span())
    compact = ""
    ends = []
    for s, e in groups:
        compact += text[s:e]
        ends.append((len(compact), e))
    for length, end in reversed(ends):
        if end < len(text) and text[end].isalnum():
            continue  # the candidate stopped inside a longer word
        if iban_valid(compact[:length]):
            yield groups[0][0], end
            return


def _phone_ok(text: str, start: int, end: int) -> bool:
    digits = sum(ch.isdigit() for ch in text[start:end])
    return 8 <= digits <= 15


def _ssn_ok(text: str, start: int, end: int) -> bool:
    area, group, serial = text[start : start + 3], text[start + 4 : start + 6], text[end - 4 : end]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ipv4_ok(text: str, start: int, end: int) -> bool:
    try:
        ipaddress.IPv4Address(text[start:end])
    except ValueError:
        return False
    return True


def _ipv6_ok(text: str, start: int, end: int) -> bool:
    value = text[start:end]
    if value.count(":") < 2 or not any(ch not in ":" for ch in value):
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


# Each pattern begins with a character class and tests its left boundary right after it:
# the regex engine then skips quickly to the few places where a candidate can begin.
_CARD = r"[0-9](?<![0-9][0-9])(?:[ -]?[0-9]){12,}"
_EMAIL = (
    r"[A-Za-z0-9._%+-](?<![A-Za-z0-9._%+-][A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{0,63}"
    r"@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
_PHONE_INTL = r"\+(?<![\w+]\+)[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,4}+\)?){2,6}+(?![0-9])"
_PHONE_NANP = (
    r"[(0-9](?<![\w+.(-][(0-9])(?:(?<=\()[0-9]{3}\) ?|(?<=[0-9])[0-9]{2}[ .-])"
    r"[0-9]{3}[ .-][0-9]{4}(?![0-9]|[.-][0-9])"
)
_IBAN = r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}(?: ?[A-Z0-9]){11,30}"
_SSN = r"[0-9](?<![\w-][0-9])[0-9]{2}-[0-9]{2}-[0-9]{4}(?![0-9]|-[0-9])"
_IPV4 = r"[0-9](?<![\w.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![0-9]|\.[0-9])"
_IPV6 = (
    r"[0-9A-Fa-f:](?<![\w:.][0-9A-Fa-f:])[0-9A-Fa-f]{0,3}(?::[0-9A-Fa-f]{0,4}){1,7}"
    r"(?:(?<=:)[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?![\w:]|\.[0-9])"
)


def _shapes(entity: str) -> list[Shape]:
    if entity == "card":
        return [Shape("card", _CARD, spans=_card_spans, reach=48)]
    if entity == "email":
        return [Shape("email", _EMAIL, hints=("@",), spaceless=True, reach=400)]
    if entity == "phone":
        return [
            Shape("phone", _PHONE_INTL, check=_phone_ok, hints=("+",)),
            Shape("phone", _PHONE_NANP),
        ]
    if entity == "iban":
        return [Shape("iban", _IBAN, spans=_iban_spans, reach=56)]
    if entity == "ssn":
        return [Shape("ssn", _SSN, check=_ssn_ok, hints=("-",))]
    if entity == "ip":
        return [
            Shape("ipv4", _IPV4, check=_ipv4_ok, hints=(".",)),
            Shape("ipv6", _IPV6, check=_ipv6_ok, hints=(":",)),
        ]
    raise ValueError(f"unknown pii entity {entity!r}")


def pii_detector(entities: Sequence[str] = ENTITIES) -> ShapeDetector:
    order = [e for e in ENTITIES if e in entities]
    return ShapeDetector([shape for entity in order for shape in _shapes(entity)])
