"""secrets: key shapes, private keys, JWTs, and random-looking passwords."""

import base64
import json

import pytest

from gateway.policy.credentials import secrets_detector, shannon_entropy

DETECTOR = secrets_detector()


def found(text: str) -> list[tuple[str, str]]:
    return [(m.label, text[m.start : m.end]) for m in DETECTOR.find(text)]


def b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


JWT = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': '42'})}.c2lnbmF0dXJl_-x"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabcdef==\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("label", "secret"),
    [
        ("openai_key", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_0-9"),
        ("openai_key", "sk-" + "a1B2c3D4e5" * 5),
        ("anthropic_key", "sk-ant-api03-" + "Zx9_Yw8-Vu7Ts6Rq5Po4" * 2),
        ("aws_access_key", "AKIAZ3MHQ7RV4XKTB2WD"),
        ("aws_access_key", "ASIAY34FZKBOKMUTVV7A"),
        ("github_token", "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2),
        ("github_token", "github_pat_11AQZK7TY0" + "m4Rb9Xw2Lp" * 6),
        ("slack_token", "xoxb-293847561029-4839201746352-Zq8YkP3mW7xR2tLb9VcN4hJs"),
        ("slack_token", "xapp-1-A0K39D82HZQ-4729104638291-f3a9c7e1b2"),
        ("jwt", JWT),
        ("private_key", PEM),
    ],
)
def test_key_shapes(label, secret):
    assert found(f"here it is: {secret} (keep it safe)") == [(label, secret)]


def test_an_unterminated_private_key_runs_to_the_end():
    text = "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk"
    assert found(text) == [("private_key", text[5:])]


@pytest.mark.parametrize(
    "text",
    [
        "sk-learn is a library; risk-free; task-list",
        "AKIA is a prefix, AKIAIOSFODNN7 is too short",
        "ghp_short and gh_something",
        "eyJhbGciOi.eyJzdWIiOiIx.abc is not a JWT",  # the header does not decode to JSON
        f"{b64({'typ': 'JWT'})}.{b64({'sub': '1'})}.sig is not either",  # no "alg"
        "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
        "AKIAIOSFODNN7EXAMPLE is the key AWS's documentation uses",
        "sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx, sk-...",
        "xoxb-your-bot-token-goes-here",
        "sk-1234567890abcdefghijklmnop (a made-up key counts up)",
        "Xsk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",  # glued to a word
    ],
)
def test_look_alikes_are_not_secrets(text):
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("password=Xk9#mQ2!vL8pZ", "Xk9#mQ2!vL8pZ"),
        ('DB_PASSWORD: "s3cr3t-P4ss-w0rd"', "s3cr3t-P4ss-w0rd"),
        ("export GITHUB_TOKEN=9f8e7d6c5b4a39281706", "9f8e7d6c5b4a39281706"),
        ('{"client_secret": "aZ3-kL9_pQ7xW2"}', "aZ3-kL9_pQ7xW2"),
    ],
)
def test_random_values_after_password_words(text, value):
    assert found(text) == [("credential", value)]


@pytest.mark.parametrize(
    "text",
    [
        "password=hunter",  # too short
        "password=aaaaaaaaaaaa",  # not random
        "token=YOUR_API_KEY",  # a placeholder
        "password: <your password>",
        "secret: always be kind",
        "see https://example.com/path?a=b&token=",
        "ratio: 3.14159265358979",  # no password word before it
    ],
)
def test_low_entropy_or_placeholder_values_are_not_secrets(text):
    assert found(text) == []


def test_entropy():
    assert shannon_entropy("aaaa") == 0
    assert shannon_entropy("abcd") == 2
