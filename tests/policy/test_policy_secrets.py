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


@pytest.mark.parametrize(
    ("label", "text", "secret"),
    [
        (
            "stripe_key",
            "STRIPE_KEY=sk_live_51Hq8ZtK2eVbR7xJm4PwQn9Ld",
            "sk_live_51Hq8ZtK2eVbR7xJm4PwQn9Ld",
        ),
        ("stripe_key", "rk_live_9fQ2mZ7xKp4LbN8vWc3RtY6h", "rk_live_9fQ2mZ7xKp4LbN8vWc3RtY6h"),
        (
            "google_api_key",
            "https://maps.googleapis.com/maps/api/js?key=AIzaSyD9tSrke72PouQMnMXa7eZSW0jkFMBWYqZ&v=3",
            "AIzaSyD9tSrke72PouQMnMXa7eZSW0jkFMBWYqZ",
        ),
        ("gitlab_token", "glpat-Zk3vN9qR2mX7pL4tW8yB", "glpat-Zk3vN9qR2mX7pL4tW8yB"),
        (
            "npm_token",
            "//registry.npmjs.org/:_authToken=npm_Qm4Zp8Xk2Rv7Nt3Lw9Yc5Hb1Jd6Fg0Ks2Pa7",
            "npm_Qm4Zp8Xk2Rv7Nt3Lw9Yc5Hb1Jd6Fg0Ks2Pa7",
        ),
        (
            "openai_key",
            "このキーsk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zを無効に",
            "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        ),
    ],
)
def test_more_key_shapes(label, text, secret):
    assert found(text) == [(label, secret)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('r = requests.get(url, auth=("admin", "Tr0ub4dor&3"))', "Tr0ub4dor&3"),
        ("redis-cli -h cache -a S3cr3tPass ping", "S3cr3tPass"),
        ("mysql -u root -pS3cret db", "S3cret"),
        ("curl -u bob:Pa55w0rd! https://ci.example.com", "Pa55w0rd!"),
        ("postgres://app:Hx82kLp9@db:5432/app", "Hx82kLp9"),
        ("The wifi password is sunshine42.", "sunshine42"),
        ("Das WLAN-Passwort lautet Blume2024!", "Blume2024!"),
        ("Le mot de passe est Soleil#2024", "Soleil#2024"),
        ("La contraseña es Tigre-88, no la compartas.", "Tigre-88"),
        ("Het wachtwoord is Koala1234.", "Koala1234"),
        ("A senha é azul-mango-7.", "azul-mango-7"),
        ("パスワードはabc12345です。", "abc12345"),
        ("export PGPASSWORD=0yzgyWZd8dQ4Yd1JKJ", "0yzgyWZd8dQ4Yd1JKJ"),
    ],
)
def test_passwords_by_their_context(text, value):
    assert found(text) == [("credential", value)]


@pytest.mark.parametrize(
    "text",
    [
        'DB_PASSWORD = os.environ["DB_PASSWORD"]',
        'token = os.getenv("API_TOKEN")',
        "access_token = get_access_token()",
        "password = user_password",
        "max_tokens: 4096",
        'token_type: "bearer"',
        'password_reset_url = "https://example.com/reset"',
        "next_page_token: Xk29dLq8Zp3Nv7Rm4Tw1",
        "Your password is too short.",
        "Das Passwort ist falsch.",
        "password: required",
        "redis-cli -a $REDIS_PASSWORD ping",
        "mysql -h db -P 3306 -u app -p",
        "postgres://app:${DB_PASS}@db/app",
        'curl -H "Authorization: Bearer <token>" https://api.example.com',
        "Stripe publishable key: pk_live_51HxYz2eZvKYlo2C0aBcD3fG4hI5jK6lM7nO8pQ9",
    ],
)
def test_code_that_reads_a_secret_and_prose_about_passwords_are_not_secrets(text):
    assert found(text) == []
