"""pii: each entity found where it is, and not where it only looks like one."""

import pytest

from gateway.policy.pii import iban_valid, luhn_valid, pii_detector


def found(text: str, entities: list[str] | None = None) -> list[tuple[str, str]]:
    detector = pii_detector(entities) if entities else pii_detector()
    return [(m.label, text[m.start : m.end]) for m in detector.find(text)]


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "3782 822463 10005",
        "5500 0000 0000 0004",
    ],
)
def test_card_numbers_in_their_usual_forms(card):
    assert found(f"pay with {card}, thanks", ["card"]) == [("card", card)]


def test_a_luhn_invalid_number_is_not_a_card():
    assert found("pay with 4111 1111 1111 1112, thanks", ["card"]) == []


def test_numbers_that_are_not_cards():
    text = "order 1700000000000 at 2024-01-15, ssn 123-45-6789 then 900-12-3456 123-00-4567"
    assert found(text, ["card"]) == []


def test_a_card_between_other_numbers():
    assert found("ref 1234 4111 1111 1111 1111 2025", ["card"]) == [("card", "4111 1111 1111 1111")]


def test_email():
    assert found("write to john.doe+x@mail.example.co.uk.", ["email"]) == [
        ("email", "john.doe+x@mail.example.co.uk")
    ]
    assert found("@mention and a@b and user@localhost", ["email"]) == []


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "(555) 123-4567",
        "555-123-4567",
        "+1-202-555-0143",
        "+14155552671",
        "555.123.4567",
    ],
)
def test_phone_formats(phone):
    assert found(f"call {phone} today", ["phone"]) == [("phone", phone)]


def test_not_phones():
    text = "in 2024 we sold 42 units on 2024-01-15 for 1234567 dollars, version 1.2.3"
    assert found(text, ["phone"]) == []


def test_iban_checksum():
    assert iban_valid("DE89370400440532013000")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE88370400440532013000")


def test_iban_printed_and_compact():
    assert found("IBAN DE89 3704 0044 0532 0130 00 OK", ["iban"]) == [
        ("iban", "DE89 3704 0044 0532 0130 00")
    ]
    assert found("iban GB82WEST12345698765432.", ["iban"]) == [("iban", "GB82WEST12345698765432")]


def test_an_iban_with_a_wrong_check_digit_is_not_an_iban():
    assert found("IBAN DE88 3704 0044 0532 0130 00", ["iban"]) == []


def test_ssn():
    assert found("ssn 123-45-6789.", ["ssn"]) == [("ssn", "123-45-6789")]
    for bad in ("000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000"):
        assert found(f"ssn {bad}", ["ssn"]) == [], bad


def test_ip_addresses():
    text = "hosts 192.168.1.1. and 2001:db8::ff00:42:8329, ::ffff:10.0.0.1 and ::1"
    assert found(text, ["ip"]) == [
        ("ipv4", "192.168.1.1"),
        ("ipv6", "2001:db8::ff00:42:8329"),
        ("ipv6", "::ffff:10.0.0.1"),
        ("ipv6", "::1"),
    ]


def test_not_ip_addresses():
    assert found("999.1.1.1 at 12:30:45, version 1.2.3, std::vector, a::b::c:", ["ip"]) == []


def test_only_the_entities_asked_for():
    text = "card 4111 1111 1111 1111 mail a.b@example.com"
    assert [label for label, _ in found(text, ["email"])] == ["email"]
    assert [label for label, _ in found(text)] == ["card", "email"]
