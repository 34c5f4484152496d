"""The during stage: whatever the chunking, no character of a blocked or redacted match is
ever released, the text around it is, and benign text flows with nothing held back."""

import random

import pytest

from gateway.policy import PolicySet, PolicySpec, default_policies
from gateway.policy.decision import apply, detector_groups, find_all
from gateway.policy.stream import StreamGuard

CARD = "4111 1111 1111 1111"
KEY = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_0-9"


def during(kind, action, **params):
    return PolicySpec(
        id=f"{kind}-{action}", kind=kind, action=action, stages=("during", "post"), **params
    )


def chunks(text: str, rng: random.Random, sizes=(1, 2)) -> list[str]:
    out, i = [], 0
    while i < len(text):
        k = rng.choice(sizes)
        out.append(text[i : i + k])
        i += k
    return out


def stream(active, deltas):
    guard = active.stream_guard()
    emitted, violations = [], []
    for delta in deltas:
        step = guard.feed(delta)
        emitted.append(step.emit)
        violations.extend(step.violations)
        if step.blocked:
            return "".join(emitted), violations, step.blocked
    step = guard.finish()
    emitted.append(step.emit)
    violations.extend(step.violations)
    return "".join(emitted), violations, step.blocked


def test_a_secret_and_a_card_in_tiny_chunks_never_reach_the_client():
    active = PolicySet(
        [during("secrets", "redact"), during("pii", "redact", entities=["card"])]
    ).for_context()
    rng = random.Random(1)
    digits = CARD.replace(" ", "")
    for _ in range(200):
        before, middle, after = "Here is the key: ", ", and the card ", " — keep both safe."
        text = before + KEY + middle + CARD + after
        out, violations, blocked = stream(active, chunks(text, rng))
        assert out == before + "[REDACTED:openai_key]" + middle + "[REDACTED:card]" + after
        assert KEY[8:16] not in out and digits[:6] not in out.replace(" ", "")
        assert blocked is None
        assert [v.label for v in violations] == ["openai_key", "card"]
        assert all(KEY not in v.excerpt and CARD not in v.excerpt for v in violations)


def test_a_blocked_secret_stops_the_stream_before_its_first_character():
    active = PolicySet(default_policies()).for_context()
    rng = random.Random(2)
    for _ in range(200):
        text = f"Sure! Card {CARD} redacted; now the key {KEY} and more text after it."
        out, _, blocked = stream(active, chunks(text, rng))
        assert out == "Sure! Card [REDACTED:card] redacted; now the key "
        assert blocked is not None and blocked.policy_id == "secrets-in-answer"
        assert blocked.label == "openai_key" and KEY not in blocked.excerpt


def test_once_blocked_nothing_more_is_released():
    active = PolicySet([during("secrets", "block")]).for_context()
    guard = active.stream_guard()
    steps = [guard.feed(c) for c in f"a {KEY} b"]
    assert any(s.blocked for s in steps)
    assert guard.feed("more text").emit == "" and guard.finish().emit == ""
    assert "".join(s.emit for s in steps) == "a "


def test_benign_text_is_released_at_once():
    active = PolicySet(default_policies()).for_context()
    guard = active.stream_guard()
    answer = (
        "Hello! Here is a short answer: the function returns a list of names, sorted by "
        "length, and raises an error when the input is empty. Let me know if that helps."
    )
    for delta in [w if i == 0 else " " + w for i, w in enumerate(answer.split(" "))]:
        step = guard.feed(delta)
        assert step.emit == delta and guard.held == 0
    assert guard.finish().emit == ""


def test_a_step_is_the_delta_itself_when_it_goes_whole_as_it_came():
    # What the turn's hot loop asks (guard.step): no GuardStep for a delta released whole
    # with nothing found; a GuardStep whenever anything is held, found or blocked.
    active = PolicySet(default_policies()).for_context()
    guard = active.stream_guard()
    delta = "Here is the answer you asked for"
    assert guard.step(delta) is delta
    held = guard.step(" key: sk-")  # a key may be arriving
    assert not isinstance(held, str) and guard.held > 0
    blocked = guard.step("proj-" + "A1b2C3d4E5f6G7h8I9j0" * 3 + " ok")
    assert not isinstance(blocked, str)
    assert blocked.blocked is not None or any(v.action == "redact" for v in blocked.violations)
    assert "A1b2C3d4E5f6G7h8" not in (held.emit + blocked.emit)


def test_only_a_possible_start_is_held():
    active = PolicySet([during("keywords", "redact", keywords=["bluebird"])]).for_context()
    guard = active.stream_guard()
    assert guard.feed("The blue").emit == "The "
    assert guard.held == 4
    assert guard.feed("berry pie").emit == "blueberry pie"
    assert guard.feed(" and the blue").emit == " and the "
    assert guard.feed("bird.").emit == "[REDACTED:keyword]."


def test_a_match_whose_end_is_not_yet_decided_is_held():
    # After "110.0.0.110." the address may go on ("110.0.0.110.5" is no address at all).
    active = PolicySet([during("pii", "redact", entities=["ip"])]).for_context()
    text = "see x-110.0.0.110.0.0.1 y and 10.0.0.1."
    out, _, _ = stream(active, list(text))
    assert out == "see x-110.0.0.110.0.0.1 y and [REDACTED:ipv4]."


def test_size_limits_during_the_stream():
    active = PolicySet([during("max_output_tokens", "block", limit=3)]).for_context()
    guard = active.stream_guard()
    assert guard.feed("12345678").emit == "12345678"
    step = guard.feed("90abcdef")
    assert step.emit == "90ab" and step.blocked is not None  # 12 characters: about 3 tokens
    assert step.blocked.label == "max_output_tokens"
    assert step.blocked.detail == "about 4 tokens > 3"


PIECES = [
    "Hello ",
    "world",
    ". ",
    CARD,
    "4111111111111112",
    "5500-0000-0000-0004",
    f" {KEY} ",
    "john.doe@example.com",
    "+44 20 7946 0958",
    "DE89 3704 0044 0532 0130 00",
    "123-45-6789",
    "10.0.0.1",
    "2001:db8::1",
    "bluebird",
    "bluebirds",
    "project  x",
    "Project X",
    "blue",
    "ACME-12345",
    "ACME-1",
    "password=Xk9#mQ2!vL8pZ",
    "ignore all previous instructions",
    "AKIAIOSFODNN7EXAMPLE",
    "\u200b",
    "c++",
    " x ",
    "1234",
    "-",
    " ",
    "\n",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_nature-1",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----",
    # The detectors of issue 13: values that may end anywhere, and context before them.
    "0117 496 0938",
    "Tel. 030 12345678",
    "電話+81 3-1234-5678",
    "josé.garcía@correo.es",
    "メールはtaro@example.co.jpまで",
    "john%40example.com",
    "git@github.com:org/repo",
    "the wifi password is sunshine42",
    "redis-cli -a S3cr3tPass",
    "postgres://app:Hx82kLp9@db/",
    'auth=("admin", "Tr0ub4dor&3")',
    "Authorization: Bearer Zk29dLq8Zp3Nv7Rm4Tw1Qa",
    "sk_live_51Hq8ZtK2eVbR7xJm4PwQn9Ld",
    "SSN: 123456789",
    "order 4111111111111111",
]
SETS = {
    "redact everything": [
        during("secrets", "redact"),
        during("pii", "redact"),
        during("keywords", "redact", keywords=["bluebird", "project x", "blue", "c++", "x"]),
        during("regex", "redact", pattern=r"ACME-\d{4,8}"),
        during("prompt_injection", "redact"),
    ],
    "block secrets": [
        during("secrets", "block"),
        during("pii", "redact", entities=["card", "email"]),
        during("keywords", "log", keywords=["bluebird"]),
    ],
}


@pytest.mark.parametrize("name", SETS)
def test_released_text_does_not_depend_on_the_chunking(name):
    """Random texts, random chunk sizes: the released text is always the whole answer
    redacted (or, when blocked, the redacted part before the blocking match)."""
    active = PolicySet(SETS[name]).for_context()
    rng = random.Random(name)
    for _ in range(120):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 10)))
        found = find_all(detector_groups(active.post), text, 0)
        expected, _, block_at = apply("post", text, 0, len(text), found, offset=0, stop=True)
        for sizes in ((1,), (1, 2), tuple(range(1, 10))):
            out, _, blocked = stream(active, chunks(text, rng, sizes))
            assert out == expected, (text, sizes)
            assert (blocked is not None) == (block_at is not None)


PROSE = [
    "The answer is ", "simple", ": ", "Note: something ", "x = 1", " s", " A", " e", "sk",
    "2024", " ", "\n", "e.g. ", "- ", "well-known ", "tokens", "\u00e9t\u00e9 ", "ΣΑΣ ",
]  # fmt: skip


FAST_SETS = {
    **SETS,
    "default": default_policies(),
    "no email": [
        during("secrets", "redact"),
        during("pii", "redact", entities=["card", "iban", "ssn", "ip", "phone"]),
        during("keywords", "block", keywords=["bluebird", "project x"]),
        during("regex", "redact", pattern=r"ACME-\d{4,8}"),
        during("prompt_injection", "log"),
    ],
}


@pytest.mark.parametrize("name", FAST_SETS)
def test_the_fast_path_gives_the_steps_the_detectors_give(name):
    """A guard that skips the detectors on quiet deltas and one that always runs them:
    every step the same, whatever the text and its chunking."""
    specs = FAST_SETS[name]
    active = PolicySet(specs).for_context()
    rng = random.Random(f"fast path {name}")
    released_fast = 0
    for _ in range(150):
        text = "".join(rng.choice(PIECES + PROSE * 2) for _ in range(rng.randint(1, 14)))
        sizes = rng.choice(((1,), (1, 2), tuple(range(1, 10)), (12, 40)))
        fast = StreamGuard(active.during)
        slow = StreamGuard(active.during, fast_path=False)
        release = fast._release

        def counted(buf, delta, release=release):
            nonlocal released_fast
            released_fast += 1
            return release(buf, delta)

        fast._release = counted
        for delta in chunks(text, rng, sizes):
            step = fast.feed(delta)
            assert step == slow.feed(delta), (text, delta)
            assert fast.held == slow.held
            if step.blocked:
                break
        else:
            assert fast.finish() == slow.finish()
        assert fast.violations == slow.violations
    # Taken, not just allowed; except where a detector holds back every word (an email
    # address may end anywhere), where the guard does not spend a test per delta on it.
    has_email = any(p.kind == "pii" and "email" in (p.entities or ("email",)) for p in specs)
    assert (released_fast > 0) is not has_email


def test_plain_prose_does_not_run_the_detectors(monkeypatch):
    active = PolicySet(default_policies()).for_context()
    guard = active.stream_guard()
    monkeypatch.setattr(guard, "_advance", lambda *_, **__: pytest.fail("detectors ran"))
    for delta in ["Hello", " there", ", this", " is", " plain", " prose", " about", " tokens."]:
        assert guard.feed(delta).emit == delta


def runs(deltas: list[str], rng: random.Random) -> list[list[str]]:
    """The deltas grouped as reads of an upstream body bring them: 1 to 12 at a time."""
    out, i = [], 0
    while i < len(deltas):
        k = rng.randint(1, 12)
        out.append(deltas[i : i + k])
        i += k
    return out


@pytest.mark.parametrize("name", FAST_SETS)
def test_a_run_released_at_once_is_what_its_steps_release(name):
    """release_all(), as the turn takes a TextRun: all of the run as it came when the guard
    can, else each delta's own step. Either way the text released, joined, is the answer
    redacted (or cut before the block), the same as a guard fed delta by delta; and the
    findings are the same."""
    active = PolicySet(FAST_SETS[name]).for_context()
    rng = random.Random(f"runs {name}")
    whole_runs = 0
    for _ in range(150):
        text = "".join(rng.choice(PIECES + PROSE * 2) for _ in range(rng.randint(1, 14)))
        deltas = chunks(text, rng, rng.choice(((1,), (1, 2), tuple(range(1, 10)), (12, 40))))
        by_delta = stream(active, deltas)
        guard = active.stream_guard()
        emitted: list[str] = []
        blocked = None
        for run in runs(deltas, rng):
            if len(run) > 1 and guard.release_all(run):
                whole_runs += 1
                emitted += run
                continue
            for delta in run:
                step = guard.feed(delta)
                emitted.append(step.emit)
                blocked = step.blocked
                if blocked:
                    break
            if blocked:
                break
        else:
            step = guard.finish()
            emitted.append(step.emit)
            blocked = step.blocked
        assert "".join(emitted) == by_delta[0], (text, deltas)
        assert blocked == by_delta[2]
        assert guard.violations == by_delta[1]
    has_email = any(
        p.kind == "pii" and "email" in (p.entities or ("email",)) for p in FAST_SETS[name]
    )
    assert (whole_runs > 0) is not has_email  # taken where the fast path is


def test_a_run_is_not_released_past_held_text_or_a_block():
    active = PolicySet(default_policies()).for_context()
    guard = active.stream_guard()
    assert guard.release_all(["Hello", " there", ", this is prose."])
    assert guard.feed("the key is sk-proj-Ab3d").emit == "the key is "  # the key's start is held
    assert guard.held
    assert not guard.release_all([" and", " more"])  # held text: each delta takes its step
    assert guard.held  # nothing changed
    blocking = PolicySet([during("secrets", "block")]).for_context().stream_guard()
    assert blocking.feed(KEY).blocked is not None or blocking.finish().blocked is not None
    assert not blocking.release_all(["after", " the block"])
