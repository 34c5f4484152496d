"""Issue 12, item 1: one org admin's regex must not freeze every tenant.

On a backtracking engine, `(a|aa)*b` and its kin take time exponential in the length of a
run of `a`s with no `b` after it: 25 characters blocked the event loop for 5.6 s, and every
further character doubles it. Policy patterns now run on RE2, so the same prompts cost
time linear in their length at every stage. The attacks run in a child process with a
watchdog, so that a regression fails the test instead of hanging the suite.
"""

import json
import re
import subprocess
import sys
import textwrap

import pytest

from gateway.policy import PolicySet, PolicySpec

ATTACKS = {
    "alternation_of_equals": r"(a|a)*b",
    "alternation_of_overlaps": r"(a|aa)*b",
    "stacked_stars": r"a*a*a*a*a*a*b",
    "counted_dot_star": r"(.*a){12}b",
    "nested_plus": r"(a+)+b",
}
# Each of these would take longer than the universe's age on a backtracking engine.
PROMPTS = ["a" * 25, "a" * 64, "a" * 20_000 + "!"]

_CHILD = textwrap.dedent(
    """
    import json, sys
    from gateway.policy import PolicySet, PolicySpec

    pattern, prompts = json.loads(sys.argv[1])
    policies = PolicySet([PolicySpec(
        id="attack", kind="regex", pattern=pattern, action="block",
        stages=("pre", "during", "post"),
    )])
    active = policies.for_context(org_id="org-1")
    out = []
    for prompt in prompts:
        pre = active.check_prompt(prompt)
        guard = active.stream_guard()
        emitted = "".join(guard.feed(prompt[i : i + 3]).emit for i in range(0, len(prompt), 3))
        emitted += guard.finish().emit
        post = active.check_answer(prompt)
        out.append([pre.blocked is not None, emitted == prompt, post.blocked is not None])
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("name", ATTACKS)
def test_a_catastrophic_backtracking_pattern_runs_in_linear_time(name):
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([ATTACKS[name], PROMPTS])],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,  # a watchdog, not a measurement: the old engine never got here
    )
    assert child.returncode == 0, child.stderr
    # None of the prompts has a `b`: nothing blocked, every character released.
    assert json.loads(child.stdout) == [[False, True, False]] * len(PROMPTS)


@pytest.mark.parametrize("name", ATTACKS)
def test_the_attack_patterns_still_find_what_they_describe(name):
    spec = PolicySpec(
        id="p", kind="regex", pattern=ATTACKS[name], action="redact", stages=("pre", "during")
    )
    active = PolicySet([spec]).for_context()
    text = "x " + "a" * 12 + "b y"
    # On a text this short, with a match in it, the backtracking engine is quick: the same.
    start, end = re.search(ATTACKS[name], text).span()
    expected = text[:start] + "[REDACTED:regex]" + text[end:]
    assert active.check_prompt(text).text == expected
    guard = active.stream_guard()
    assert guard is not None
    emitted = "".join(guard.feed(ch).emit for ch in text) + guard.finish().emit
    assert emitted == expected


def test_an_operator_pattern_never_runs_on_the_backtracking_engine():
    active = PolicySet(
        [PolicySpec(id="p", kind="regex", pattern=r"(a|aa)*b", action="log", stages=("pre",))]
    ).for_context()
    (policy,) = active.pre
    detector = policy.detector
    assert detector is not None
    for pattern in detector.patterns:  # type: ignore[attr-defined]
        assert type(pattern.regex).__module__ == "re2"
        assert type(pattern.tail).__module__ == "re2"
    assert detector.triggers.raw == () and detector.triggers.lowered == ()  # type: ignore[union-attr]
