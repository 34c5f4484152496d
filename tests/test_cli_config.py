"""`config check` and `serve` read the same settings: a provider key that is not set is
warned about (not refused: a local OpenAI-compatible server may want none), a secret too
short to be safe is refused with one line naming the field, and the JWT claim settings
are validated."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import Serve, gateway

MODELS = """
[[models]]
id = "gpt"
provider = "openai"

[[models]]
id = "llama"
provider = "openai"
base_url = "http://127.0.0.1:11434/v1"
api_key_env = "LLAMA_KEY"

[[models]]
id = "claude"
provider = "anthropic"

[[models]]
id = "demo"
provider = "demo"

[[repositories]]
id = "repo-1"
org_id = "acme"
model = "gpt"
api_key_env = "REPO1_KEY"
"""

WARNINGS = [
    (
        "chat-gateway: warning: models[0] 'gpt': OPENAI_API_KEY is not set, so requests to "
        "https://api.openai.com/v1 carry no key and will be refused unless that server needs none"
    ),
    (
        "chat-gateway: warning: models[1] 'llama': LLAMA_KEY is not set, so requests to "
        "http://127.0.0.1:11434/v1 carry no key: fine for a local openai-compatible server that "
        "needs none (vLLM, Ollama, ...)"
    ),
    (
        "chat-gateway: warning: models[2] 'claude': ANTHROPIC_API_KEY is not set, so requests to "
        "https://api.anthropic.com carry no key and will be refused unless that server needs none"
    ),
    (
        "chat-gateway: warning: repositories[0] 'repo-1': REPO1_KEY is not set, so requests to "
        "https://api.openai.com/v1 carry no key and will be refused unless that server needs none"
    ),
]
KEYS = {"OPENAI_API_KEY": "sk-1", "LLAMA_KEY": "k", "ANTHROPIC_API_KEY": "sk-2", "REPO1_KEY": "r"}
ADMIN = "an-admin-token-of-26-chars"


def test_config_check_warns_about_each_unset_provider_key(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(MODELS)
    r = gateway("config", "check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == WARNINGS
    assert [m["id"] for m in json.loads(r.stdout)["models"]] == ["gpt", "llama", "claude", "demo"]

    with_keys = gateway("config", "check", "--config", str(cfg), **KEYS)
    assert with_keys.returncode == 0 and with_keys.stderr == ""


def test_serve_warns_about_unset_provider_keys_at_start(tmp_path, redis_url):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(MODELS)
    with Serve(
        None,
        "--config",
        str(cfg),
        cwd=tmp_path,
        GATEWAY_REDIS_URL=redis_url,
        GATEWAY_ADMIN_TOKEN=ADMIN,
    ) as serve:
        *before_listening, listening = serve.lines  # what it printed until it was ready
    assert [line.rstrip("\n") for line in before_listening if "warning" in line] == WARNINGS
    assert "listening on" in listening


def test_the_default_demo_model_needs_no_key(tmp_path):
    r = gateway("config", "check")
    assert r.returncode == 0 and r.stderr == ""


@pytest.mark.parametrize(
    "var, value, field",
    [
        ("GATEWAY_JWT_SECRET", "a", "jwt_secret"),
        ("GATEWAY_JWT_SECRET", "s" * 31, "jwt_secret"),
        ("GATEWAY_JWT_SECRET", "€" * 10, "jwt_secret"),  # 10 characters, 30 bytes
        ("GATEWAY_ADMIN_TOKEN", "x", "admin_token"),
        ("GATEWAY_ADMIN_TOKEN", "t" * 23, "admin_token"),
        ("GATEWAY_JWT_REQUIRE_EXP", "maybe", "jwt_require_exp"),
        ("GATEWAY_JWT_ISSUER", "https://idp.example/ realm", "jwt_issuer"),
        ("GATEWAY_JWT_ISSUER", "i" * 513, "jwt_issuer"),
        ("GATEWAY_JWT_AUDIENCE", "api://a,api://b\x07", "jwt_audience"),
        ("GATEWAY_JWT_AUDIENCE", ",".join(f"api://{i}" for i in range(17)), "jwt_audience"),
        ("GATEWAY_JWT_AUDIENCE", "a" * 513, "jwt_audience"),
        ("GATEWAY_JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nnot a key", "jwt_public_key"),
    ],
    ids=[
        "secret-1",
        "secret-31",
        "secret-30-bytes",
        "token-1",
        "token-23",
        "exp-maybe",
        "issuer-space",
        "issuer-513",
        "audience-bell",
        "audiences-17",
        "audience-513",
        "public-key-not-pem",
    ],
)
@pytest.mark.parametrize(
    "command", [["config", "check"], ["serve", "--port", "0"]], ids=["check", "serve"]
)
def test_weak_secrets_and_bad_jwt_settings_are_refused_naming_the_field(
    tmp_path, command, var, value, field
):
    r = gateway(*command, timeout=20, GATEWAY_DATA_DIR=str(tmp_path / "data"), **{var: value})
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"chat-gateway: config error: {field}")
    if len(value) >= 8:  # a secret is never echoed (one letter would match the message)
        assert value not in r.stderr
    assert r.stdout == ""
    assert not (tmp_path / "data").exists()  # serve started nothing


def test_long_enough_secrets_and_jwt_settings_pass(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text('jwt_audience = "api://chat"\n')
    r = gateway(
        "config",
        "check",
        "--config",
        str(cfg),
        GATEWAY_JWT_SECRET="€" * 11,  # 33 bytes
        GATEWAY_ADMIN_TOKEN="t" * 24,
        GATEWAY_JWT_ISSUER="https://idp.example/realms/a",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["jwt"] == {
        "hs256_secret": True,
        "public_key": False,
        "audience": ["api://chat"],
        "issuer": "https://idp.example/realms/a",
        "require_exp": True,
    }
    assert "€" not in r.stdout and "t" * 24 not in r.stdout  # secrets are never printed

    env_wins = gateway(
        "config",
        "check",
        "--config",
        str(cfg),
        GATEWAY_JWT_AUDIENCE=" api://a , api://b ",
        GATEWAY_JWT_REQUIRE_EXP="false",
    )
    jwt = json.loads(env_wins.stdout)["jwt"]
    assert (jwt["audience"], jwt["require_exp"]) == (["api://a", "api://b"], False)


def test_the_test_suites_own_tokens_are_long_enough():
    from tests.support import ADMIN_TOKEN, JWT_SECRET

    r = gateway("config", "check", GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN, GATEWAY_JWT_SECRET=JWT_SECRET)
    assert r.returncode == 0, r.stderr
