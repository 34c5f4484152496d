"""The regex tree we own: what it parses, written back, matches what the source matched, on
every Python the project supports (3.13 changed the standard library's private tree)."""

import random
import re

import pytest
import re2

from gateway.policy.credentials import secrets_detector
from gateway.policy.injection import injection_detector
from gateway.policy.pii import pii_detector
from gateway.policy.syntax import Unsupported, Writer, parse

SOURCES = [
    r"abc",
    r"a+b*c?d{2}e{1,3}f{2,}",
    r"(?i)ab[c-f]",
    r"x(?i:Y)z|(?s:.)Q",
    r"[^a-y\d]z{2}",
    r"(?:ab|a)++c",
    r"(?>a|ab)c",
    r"\bas\b|\Bc0\Z",
    r"(?<![\w-])sk-(?!ant-)[A-Za-z0-9]{3,}",
    r"(?m)^q$",
    r"(?P<name>\d+)-(?:x|y)",
    r"[\]\-\\a]+",
    r"\x41\u00e9\U0001F600\t\n\0",
    r"a{,3}b",
    r"(?x) a  b # a comment",
    r"(?!)|zz",
    r"[.]\.",
]
ALPHABET = "abcdefxyzQY sk-ant012#:=\n\t]\\Aé😀_"


def random_strings(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12))) for _ in range(n)]


@pytest.mark.parametrize("source", SOURCES)
def test_written_back_it_matches_what_the_source_matches(source):
    original = re.compile(source)
    tree = parse(source)
    written = re.compile(Writer("re").pattern(tree))
    for text in random_strings(random.Random(source), 2000):
        a, b = original.search(text), written.search(text)
        assert (a and a.span()) == (b and b.span()), (source, text)


@pytest.mark.parametrize("source", [r"a+b*c?d{2}", r"(?i)ab[c-f]", r"\bas\b", r"[^a-y\d]z{2}"])
def test_written_for_re2_it_matches_what_re2_matches(source):
    original = re2.compile(source)
    written = re2.compile(Writer("re2").pattern(parse(source)))
    for text in random_strings(random.Random(source), 1000):
        a, b = original.search(text), written.search(text)
        assert (a and a.span()) == (b and b.span()), (source, text)


@pytest.mark.parametrize(
    ("source", "what"),
    [
        (r"(a)\1", "back-references"),
        (r"(?P<x>a)(?P=x)", "back-reference"),
        (r"(a)?(?(1)b|c)", "back-reference or test"),
        (r"\N{BULLET}", "\\N{...} escapes"),
    ],
)
def test_what_the_tree_does_not_hold_is_refused(source, what):
    with pytest.raises(Unsupported, match=re.escape(what)):
        parse(source)


@pytest.mark.parametrize("source", [r"a(?=b)", r"(?<!x)a", r"a++", r"(?>ab)"])
def test_re2_has_no_look_around_or_atomic_forms(source):
    with pytest.raises(Unsupported):
        Writer("re2").pattern(parse(source))


def test_every_built_in_pattern_parses():
    for detector in (pii_detector(), secrets_detector(), injection_detector()):
        for shape in detector.shapes:
            tree = parse(shape.pattern.pattern, shape.pattern.flags)
            assert re.compile(Writer("re").pattern(tree), shape.pattern.flags)


def test_widths():
    assert parse(r"ab{2,3}c?").width == (3, 5)
    assert parse(r"a|bcd").width == (1, 3)
    assert parse(r"a+").width == (1, None)
    assert parse(r"(?<=x)a\b").width == (1, 1)
