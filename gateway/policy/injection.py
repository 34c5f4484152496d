"""Prompt injection: override phrasings, jailbreak personas, chat-template role markers,
and characters a reader cannot see (zero-width, bidi controls, Unicode tag characters).

Phrase lists catch the common, copy-pasted attacks; they are a tripwire worth logging, not
a proof of intent, which is why the default policy only logs them.
"""

from __future__ import annotations

from gateway.policy.detectors import Shape, ShapeDetector


def _words(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


def _first(*words: str) -> str:
    """Words that open a phrase, each at a word start. The boundary is tested after the first
    letter, not before it, so that the regex engine can skip to the letters that matter."""
    return "(?:" + "|".join(w[0] + r"(?<!\w\w)" + w[1:] for w in words) + ")"


_VERBS = ("ignore", "disregard", "forget", "override", "bypass", "skip")
_VERB = _first(*_VERBS)
_WHICH = _words(
    "previous",
    "prior",
    "above",
    "earlier",
    "preceding",
    "foregoing",
    "initial",
    "original",
    "system",
    "developer",
    "safety",
    "hidden",
)
_WHAT = _words(
    r"instructions?",
    r"prompts?",
    "rules",
    r"directions?",
    "guidelines",
    r"messages?",
    "context",
    "constraints",
    "programming",
    "guardrails",
    "directives",
)
_OVERRIDE = (
    rf"{_VERB}\s+(?:(?:(?:all|any|every)\s+(?:of\s+)?)?(?:(?:the|your|my|these|those|this)\s+)?"
    rf"(?:{_WHICH}\s+){{1,2}}"
    rf"|(?:all|any|every)\s+(?:of\s+)?(?:(?:the|your|my)\s+)?){_WHAT}\b"
)
_NO_RULES = (
    r"\s+(?:that\s+)?you\s+(?:are|have)\s+(?:no|not\s+bound\s+by\s+any)\s+"
    r"(?:restrictions|rules|limits|limitations|guidelines|filters)\b"
)
_JAILBREAK = "|".join(
    [
        _first("you") + r"\s+are\s+now\s+(?:(?:an?|the|in)\s+)?"
        r"(?:dan|unfiltered|uncensored|unrestricted|jailbroken|evil|developer\s+mode)\b",
        _first("do") + r"\s+anything\s+now\b",
        _first("dan") + r"\s+mode\b",
        _first("jailbreak") + r"(?:ed)?\s+mode\b",
        _first("enable", "activate", "enter") + r"\s+developer\s+mode\b",
        _first("developer") + r"\s+mode\s+(?:enabled|on|activated)\b",
        _first("pretend", "imagine") + _NO_RULES,
        _first("act") + r"\s+as\s+if" + _NO_RULES,
    ]
)
_LEAKED = (
    r"(?:your|the)\s+(?:(?:full|entire|initial|original|hidden|secret)\s+)?"
    r"(?:system\s+(?:prompt|message)|(?:initial|hidden)\s+instructions)\b"
)
_LEAK = (
    _first("reveal", "print", "show", "repeat", "output", "display")
    + r"\s+(?:me\s+)?"
    + _LEAKED
    + "|"
    + _first("tell")
    + r"\s+me\s+"
    + _LEAKED
)
_ROLE_MARKER = (
    r"<\|(?:im_start|im_end|system|user|assistant|endoftext)\|>"
    r"|\[/?inst\]|<</?sys>>"
    r"|(?m:^[ \t]*#{2,}[ \t]*(?:system|instruction|assistant)s?\b)"
)
# Zero-width and joiner characters, bidi embeddings and isolates, the word joiner family,
# the byte-order mark, and the tag block that can smuggle invisible ASCII.
_INVISIBLE = "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]+"
_TAGS = "[\U000e0000-\U000e007f]+"


def injection_detector() -> ShapeDetector:
    return ShapeDetector(
        [
            # Hints: words every phrase of the family contains; most prose has none of them.
            Shape(
                "override_instructions",
                _OVERRIDE,
                casefold=True,
                reach=160,
                hints=("ignore", "disregard", "forget", "override", "bypass", "skip"),
            ),
            Shape(
                "jailbreak",
                _JAILBREAK,
                casefold=True,
                reach=120,
                hints=("now", "dan", "jailbreak", "developer", "pretend", "act", "imagine"),
            ),
            Shape("prompt_leak", _LEAK, casefold=True, reach=120, hints=("system", "instructions")),
            Shape(
                "role_marker",
                _ROLE_MARKER,
                casefold=True,
                reach=40,
                hints=("<|", "[inst]", "[/inst]", "<<sys>>", "<</sys>>", "##"),
            ),
            Shape("invisible_char", _INVISIBLE, reach=64, non_ascii=True),
            Shape("unicode_tag", _TAGS, reach=256, non_ascii=True),
        ]
    )
