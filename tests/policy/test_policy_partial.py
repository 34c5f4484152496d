"""The hold-back derivation: a tail is held iff more text could make it part of a match."""

import itertools
import random
import re

import pytest

from gateway.policy.partial import required_prefix, tail_pattern

PATTERNS = [
    r"abc",
    r"a+b",
    r"\bfoo\b",
    r"(?i)ignore\s+(?:all\s+)?previous",
    r"ab|abcd",
    r"a.*b",
    r"foo(?=bar)",
    r"foo(?!bar)",
    r"\d{3}-\d{2}-\d{4}",
    r"(?<!\d)\d+(?:[ -]\d+)*",
    r"x(?:ab)*y",
    r"[a-c]{2,3}d?",
    r"(?:a|b)c",
    r"a{0,2}b",
    r"(?<![\w-])sk-[a-z0-9_-]{4,}",
    r"a\b",
    r"[0-9]+(?:\.[0-9]+)*(?![0-9]|\.[0-9])",
    r"ab$",
    r"(?i:A)b",
    r"a++b",
    r"(?>ab|a)c",
    r"s(?<!\ws)k",
]
ALPHABET = "abcdxyfor -0123skBAR.\n"


def could_grow_into_a_match(pattern: re.Pattern, text: str, q: int, rng: random.Random) -> bool:
    for k in range(5):
        tails = (
            itertools.product(ALPHABET, repeat=k)
            if k <= 2
            else (rng.choices(ALPHABET, k=k) for _ in range(40))
        )
        for extra in tails:
            m = pattern.match(text + "".join(extra), q)
            if m and m.end() >= len(text):
                return True
    return False


@pytest.mark.parametrize("source", PATTERNS)
def test_every_tail_that_could_grow_into_a_match_is_held(source):
    pattern = re.compile(source)
    derived = tail_pattern(pattern)
    assert derived is not None
    tail = derived[0]
    rng = random.Random(source)
    for _ in range(150):
        text = "".join(rng.choices(ALPHABET, k=rng.randint(1, 7)))
        for q in range(len(text)):
            if could_grow_into_a_match(pattern, text, q, rng):
                assert tail.match(text, q), (source, text, q)


@pytest.mark.parametrize(
    ("source", "text"),
    [
        (r"\bfoo\b", "a fox"),
        (r"(?<![\w-])sk-[a-z]{4,}", "generous"),  # a trailing 's' inside a word: no key start
        (r"\d{3}-\d{2}-\d{4}", "call 12-"),
        (r"\bACME-\d{4,}\b", "ACME-12345 and more"),  # complete, and followed by more text
        (r"foo(?!bar)", "foob x"),
        (r"[0-9]+(?![0-9]|\.[0-9])", "12.x"),
    ],
)
def test_text_that_cannot_grow_into_a_match_is_released(source, text):
    tail, _ = tail_pattern(re.compile(source))
    assert tail.search(text) is None


def test_a_look_ahead_past_the_end_keeps_a_complete_match_held():
    # "12." could still become "12.5", which the look-ahead refuses: "12" is undecided.
    tail, reach = tail_pattern(re.compile(r"[0-9]+(?![0-9]|\.[0-9])"))
    assert tail.search("it is 12.").start() == 6
    assert reach == 2


def test_back_references_are_not_derived():
    assert tail_pattern(re.compile(r"(a)\1")) is None


def test_required_prefix():
    assert required_prefix(re.compile(r"\bACME-\d+")) == "ACME-"
    assert required_prefix(re.compile(r"(?i)acme")) == ""
    assert required_prefix(re.compile(r"[ab]c")) == ""
