"""Personal data: payment cards, emails, phone numbers, IBANs, US SSNs, IP addresses.

A regex proposes candidates; arithmetic and structure decide, then context (the words just
before a candidate, see context.py) settles what arithmetic cannot. Rules and why:

- card: 13 to 19 digits, grouped as printed (4-4-4-4, 4-6-5, 4-6-4) with one kind of
  separator, Luhn-valid, and with the issuer prefix and length of a scheme in use (Visa,
  Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro, Mir): one random number in
  ten passes Luhn, far fewer also pass the scheme table. After an order, tracking, invoice
  or IMEI word it is that number, not a card. A bare digit run right after another long
  integer in a list (`..., 2880067194370816120, 4660046610375530309`), or opening an array
  (`[4660046610375530309, ...`), is a sequence of numbers (Fibonacci, ids), not a card,
  unless a card word says otherwise: code and JSON write card numbers as strings.
- iban: country code, the length the IBAN registry gives that country, and mod 97 == 1.
- ssn: `123-45-6789` with the SSA's rules (no area 000, 666 or 9xx, no group 00, no serial
  0000), unless an order or ticket word names it; `123456789` and `123 45 6789` only after
  an SSN word (`SSN`, "social security", "sécurité sociale"...): nine digits are too common.
- ip: IPv4 and IPv6 that `ipaddress` accepts. Not after a version or section word
  (`version 1.2.3.4`, "§ 1.2.3.4") or a version operator (`pkg==1.2.3.4`, `@1.2.3.4`);
  an IPv6 candidate needs a digit (`a::b` is C++) and is not a slice (`a[1::2]`).
- email, phone: emails.py, phones.py.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from gateway.policy.context import CARD, IP, SSN
from gateway.policy.detectors import Shape, ShapeDetector
from gateway.policy.emails import email_shapes
from gateway.policy.phones import DEFAULT_REGIONS, phone_shapes

ENTITIES = ("card", "email", "phone", "iban", "ssn", "ip")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# (lowest prefix, highest prefix, lengths): the schemes' published issuer ranges.
_SCHEMES: tuple[tuple[int, int, frozenset[int]], ...] = (
    (4, 4, frozenset({16, 19})),  # Visa (13-digit numbers are no longer issued)
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard 2-series
    (34, 34, frozenset({15})),  # American Express
    (37, 37, frozenset({15})),
    (6011, 6011, frozenset(range(16, 20))),  # Discover
    (644, 649, frozenset(range(16, 20))),
    (65, 65, frozenset(range(16, 20))),
    (300, 305, frozenset(range(14, 20))),  # Diners Club
    (36, 36, frozenset(range(14, 20))),
    (38, 39, frozenset(range(16, 20))),
    (3528, 3589, frozenset(range(16, 20))),  # JCB
    (62, 62, frozenset(range(16, 20))),  # UnionPay
    (50, 50, frozenset(range(12, 20))),  # Maestro
    (56, 58, frozenset(range(12, 20))),
    (639, 639, frozenset(range(12, 20))),
    (67, 67, frozenset(range(12, 20))),
    (2200, 2204, frozenset(range(16, 20))),  # Mir
)


def card_scheme_ok(digits: str) -> bool:
    n = len(digits)
    for low, high, lengths in _SCHEMES:
        size = len(str(low))
        if n in lengths and low <= int(digits[:size]) <= high:
            return True
    return False


# Lengths from the IBAN registry (SWIFT), by country.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """Country code, two check digits, the country's length, and mod 97 == 1."""
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    rotated = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rotated)
    return int(number) % 97 == 1


def _groups(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The runs of digits or capitals inside text[start:end], split at single separators."""
    return [m.span() for m in _GROUP.finditer(text, start, end)]


_GROUP = re.compile(r"[0-9A-Z]+")
_LIST_BEFORE = re.compile(r"(?:(?<![\w.])([0-9]{6,})[ \t]*[,;]|\[)[ \t]*\Z")


def _in_number_list(text: str, start: int) -> bool:
    """The bare number at `start` opens an array or follows another long integer in a list."""
    m = _LIST_BEFORE.search(text, max(0, start - 48), start)
    if m is None:
        return False
    before = m.group(1)
    if before is None:
        return True  # `[4052739537881, ...`: numbers in code are data, cards are strings
    return not (13 <= len(before) <= 19 and luhn_valid(before) and card_scheme_ok(before))


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
            if len(digits) >= 13 and luhn_valid(digits) and card_scheme_ok(digits):
                best = j
        if best is None:
            i += 1
            continue
        start, end = groups[i][0], groups[best][1]
        if _card_context_ok(text, start, bare=best == i):
            yield start, end
        i = best + 1


def _card_context_ok(text: str, start: int, *, bare: bool) -> bool:
    cue = CARD.nearest(text, start)
    if cue is not None:
        return cue
    return not (bare and _in_number_list(text, start))


def _iban_spans(text: str, m: re.Match[str]) -> Iterable[tuple[int, int]]:
    # Printed IBANs come in groups of four; the candidate may run into a following word.
    groups = _groups(text, *m.span())
    compact = ""
    ends = []
    for s, e in groups:
        compact += text[s:e]
        ends.append((len(compact), e))
    for length, end in reversed(ends):
        if end < len(text) and text[end].isascii() and text[end].isalnum():
            continue  # the candidate stopped inside a longer word
        if iban_valid(compact[:length]):
            yield groups[0][0], end
            return


def _ssn_rules(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ssn_dashed_ok(text: str, start: int, end: int) -> bool:
    digits = text[start:end].replace("-", "")
    return _ssn_rules(digits) and SSN.nearest(text, start) is not False


def _ssn_plain_ok(text: str, start: int, end: int) -> bool:
    value = text[start:end]
    if value.count(" ") not in (0, 2):
        return False
    return _ssn_rules(value.replace(" ", "")) and SSN.nearest(text, start) is True


# pip and npm pins (`==1.2.3.4`, `@1.2.3.4`), and user agents' `Product/1.2.3.4`.
_VERSION_OPERATOR = re.compile(r"(?:[=<>~!]=|[@^~]|[A-Za-z]/)\s*\Z")


def _ip_context_ok(text: str, start: int) -> bool:
    if _VERSION_OPERATOR.search(text, max(0, start - 4), start):
        return False
    return IP.nearest(text, start) is not False


def _ipv4_ok(text: str, start: int, end: int) -> bool:
    try:
        ipaddress.IPv4Address(text[start:end])
    except ValueError:
        return False
    return _ip_context_ok(text, start)


def _ipv6_ok(text: str, start: int, end: int) -> bool:
    value = text[start:end]
    if value.count(":") < 2 or not any(ch.isdigit() for ch in value):
        return False
    if (
        start >= 2
        and text[start - 1] == "["
        and (text[start - 2].isalnum() or text[start - 2] in "_)]")
    ):
        return False  # a slice, a[1::2]
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return _ip_context_ok(text, start)


# Each pattern begins with a character class and tests its left boundary right after it:
# the regex engine then skips quickly to the few places where a candidate can begin.
_CARD = r"[0-9](?<![0-9][0-9])(?:[ -]?[0-9]){12,}"
_IBAN = r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}(?: ?[A-Z0-9]){11,30}"
_SSN = r"[0-9](?<![\w-][0-9])[0-9]{2}-[0-9]{2}-[0-9]{4}(?![0-9]|-[0-9])"
_SSN_PLAIN = r"[0-9](?<![\w-][0-9])[0-9]{2} ?[0-9]{2} ?[0-9]{4}(?![0-9]|[ -][0-9])"
# Boundaries are ASCII: an address in Japanese prose touches letters `\w` counts.
_IPV4 = r"[0-9](?<![A-Za-z0-9_.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![0-9]|\.[0-9])"
_IPV6 = (
    r"[0-9A-Fa-f:](?<![A-Za-z0-9_:.][0-9A-Fa-f:])[0-9A-Fa-f]{0,3}(?::[0-9A-Fa-f]{0,4}){1,7}"
    r"(?:(?<=:)[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?![A-Za-z0-9_:]|\.[0-9])"
)

# Where an IPv6 candidate can pass _ipv6_ok (two colons, hex digits between): the pattern
# alone starts at every `e:`, which prose is full of.
_TWO_COLONS = r":[0-9A-Fa-f]{0,4}:"


def _shapes(entity: str, regions: Sequence[str]) -> list[Shape]:
    if entity == "card":
        return [Shape("card", _CARD, spans=_card_spans, reach=48, context=48)]
    if entity == "email":
        return email_shapes()
    if entity == "phone":
        return phone_shapes(regions)
    if entity == "iban":
        return [Shape("iban", _IBAN, spans=_iban_spans, reach=56)]
    if entity == "ssn":
        return [
            Shape("ssn", _SSN, check=_ssn_dashed_ok, hints=("-",), context=48),
            Shape("ssn", _SSN_PLAIN, check=_ssn_plain_ok, context=48),
        ]
    if entity == "ip":
        return [
            Shape("ipv4", _IPV4, check=_ipv4_ok, hints=(".",), context=48),
            Shape("ipv6", _IPV6, check=_ipv6_ok, hints=(":",), context=48, presence=_TWO_COLONS),
        ]
    raise ValueError(f"unknown pii entity {entity!r}")


def pii_detector(
    entities: Sequence[str] = ENTITIES, *, regions: Sequence[str] = DEFAULT_REGIONS
) -> ShapeDetector:
    order = [e for e in ENTITIES if e in entities]
    return ShapeDetector([shape for entity in order for shape in _shapes(entity, regions)])
