"""The one reader of the environment and the TOML config file.

`load_settings()` runs once at start and returns a frozen Settings passed down explicitly;
nothing reads os.environ at import time or per request. The environment wins over the file.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from providers.base import ModelSpec


class ConfigError(Exception):
    """A bad config file or environment value; str() is one line naming the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(_Frozen):
    id: str = Field(min_length=1, max_length=200)
    provider: Literal["openai", "anthropic", "demo"]
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    max_output_tokens: int | None = Field(default=None, gt=0, le=1_000_000)
    context_window: int | None = Field(default=None, gt=0, le=100_000_000)
    connect_timeout: float = Field(default=10.0, gt=0, le=600)
    read_timeout: float = Field(default=120.0, gt=0, le=3600)
    max_retries: int = Field(default=2, ge=0, le=10)
    # model ids tried in order when this one fails before its first token
    fallbacks: tuple[str, ...] = Field(default=(), max_length=10)
    # openai and anthropic: the HTTP client under the SDK ("lean": providers/transport.py;
    # "httpx": the SDK's own; a proxy in the environment always means "httpx") and its pool
    transport: Literal["lean", "httpx"] = "lean"
    max_connections: int | None = Field(default=None, gt=0, le=1_000_000)
    max_keepalive_connections: int | None = Field(default=None, ge=0, le=1_000_000)
    # openai only: the name of the output limit ("max_completion_tokens" for OpenAI's
    # reasoning models) and whether to ask for usage (off for servers refusing stream_options)
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    include_usage: bool = True
    # demo only: milliseconds between streamed words, and words per answer
    pace_ms: float = Field(default=20.0, ge=0, le=10_000)
    answer_words: int = Field(default=60, ge=1, le=100_000)
    # USD per million tokens; absent: the shipped table (gateway/models/prices.py) for
    # well-known upstream models, else no cost is recorded
    price_input_per_mtok: float | None = Field(default=None, ge=0, le=100_000)
    price_output_per_mtok: float | None = Field(default=None, ge=0, le=100_000)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    @property
    def upstream_model(self) -> str:
        return self.model or self.id

    def default_key_env(self) -> str | None:
        if self.api_key_env:
            return self.api_key_env
        return {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}.get(self.provider)


class RepositoryConfig(_Frozen):
    id: str = Field(min_length=1, max_length=200)
    workspace_id: str | None = None
    org_id: str = Field(min_length=1, max_length=200)
    model: str | None = None
    api_key_env: str | None = None


_LIMIT = Field(default=None, ge=1, le=10**15)  # absent: unlimited


class LimitValues(_Frozen):
    """Prompts per minute and tokens (input + output) per minute, UTC day and UTC month,
    per user and per org; see gateway/access/quotas.py for the windows."""

    user_requests_per_minute: int | None = _LIMIT
    org_requests_per_minute: int | None = _LIMIT
    user_tokens_per_minute: int | None = _LIMIT
    org_tokens_per_minute: int | None = _LIMIT
    user_tokens_per_day: int | None = _LIMIT
    org_tokens_per_day: int | None = _LIMIT
    user_tokens_per_month: int | None = _LIMIT
    org_tokens_per_month: int | None = _LIMIT


class LimitsConfig(LimitValues):
    """The `[limits]` table; `[limits.orgs.<org_id>]` replaces the fields it sets for that org."""

    orgs: dict[str, LimitValues] = Field(default_factory=dict)

    def any_set(self) -> bool:
        tables = [self.model_dump(exclude={"orgs"}), *(o.model_dump() for o in self.orgs.values())]
        return any(v is not None for t in tables for v in t.values())

    def for_org(self, org_id: str) -> LimitValues:
        base = self.model_dump(exclude={"orgs"})
        override = self.orgs.get(org_id)
        if override is not None:
            base.update(override.model_dump(exclude_unset=True))
        return LimitValues(**base)


DEMO_MODEL = ModelConfig(id="demo", provider="demo")

MIN_ADMIN_TOKEN_CHARS = 24
MIN_JWT_SECRET_BYTES = 32
MAX_JWT_AUDIENCES = 16
MAX_TRUSTED_PROXIES = 64
MAX_CLAIM_CHARS = 512
MAKE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _claim_value(value: str) -> str:
    """An expected `aud` or `iss`: a URI or name, never empty, blank or multi-line."""
    if not value or len(value) > MAX_CLAIM_CHARS:
        raise ValueError(f"must be 1 to {MAX_CLAIM_CHARS} characters")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("must not contain spaces or control characters")
    return value


def _keks(v: str) -> str:
    """GATEWAY_ENCRYPTION_KEY: one KEK or several, comma-separated (models/vault.py)."""
    from gateway.models.vault import parse_keks

    parse_keks(v)  # ValueError says what is wrong, never the key
    return v


class Settings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    redis_url: str | None = None
    redis_cluster: bool = False
    data_dir: Path = Path(".gateway")
    admin_token: str | None = None
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    # JWT claims checked beside the signature (gateway/access/auth.py): `aud` must name one of
    # jwt_audience (when set), `iss` must equal jwt_issuer (when set), `exp` must be present
    jwt_audience: tuple[str, ...] = ()
    jwt_issuer: str | None = None
    jwt_require_exp: bool = True
    cors_origins: tuple[str, ...] = ()
    # alert webhooks: only to these hosts ("hooks.example.com", "*.example.com"), only to
    # public addresses unless one of these networks holds it (gateway/governance/webhooks.py)
    webhook_allowed_hosts: tuple[str, ...] = ()
    webhook_allowed_networks: tuple[str, ...] = ()
    # resume followers per worker (gateway/turn/followers.py); beyond either: 429
    resume_followers_per_user: int = Field(default=32, ge=1, le=100_000)
    resume_followers_per_message: int = Field(default=256, ge=1, le=100_000)
    ping_interval: float = Field(default=15.0, gt=0, le=300)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_prompt_chars: int = Field(default=200_000, ge=1)
    # what one prompt may ask of a model (each costs the upstream's money or our work): answers
    # per request (n), tools offered, the tools' JSON schemas in all, stop sequences, images
    max_choices: int = Field(default=8, ge=1, le=128)
    max_tools: int = Field(default=128, ge=0, le=10_000)
    max_tool_schema_bytes: int = Field(default=256 * 1024, ge=0, le=64 * 1024 * 1024)
    max_stop_sequences: int = Field(default=16, ge=0, le=10_000)
    max_images: int = Field(default=20, ge=0, le=10_000)
    # the HTTP edge (gateway/server.py, SECURITY.md): what a connection may cost before the app
    http_max_header_bytes: int = Field(default=32_768, ge=1024, le=1_048_576)  # line + headers
    http_max_headers: int = Field(default=100, ge=8, le=10_000)
    http_header_timeout: float = Field(default=10.0, gt=0, le=300)  # to a request's blank line
    http_body_timeout: float = Field(default=30.0, gt=0, le=3600)  # from the head to the body's end
    http_max_connections: int = Field(default=10_000, ge=1, le=1_000_000)  # per worker
    http_max_pending_per_client: int = Field(default=256, ge=1, le=1_000_000)  # heads awaited
    # addresses or networks of reverse proxies whose X-Forwarded-For names the client; none
    # by default: the peer's own address is the client's
    trusted_proxies: tuple[str, ...] = ()
    auth_failures_per_minute: int = Field(default=30, ge=0, le=1_000_000)  # per address; 0: off
    send_timeout: float = Field(default=30.0, gt=0, le=3600)  # a stalled reader is dropped
    shutdown_grace: float = Field(default=10.0, ge=0, le=3600)  # open streams may finish in it
    turn_lock_ttl: float = Field(
        default=600.0, gt=0, le=86400
    )  # the longest a turn may hold its conversation
    final_write_timeout: float = Field(
        default=10.0, gt=0, le=600
    )  # retrying the answer's write while Redis is away
    resume_ttl: int = Field(
        default=3600, ge=60, le=7 * 86400
    )  # seconds a resume log is kept after its end
    # replicas that must acknowledge an answer's write (WAIT) before its `end` is sent:
    # "auto" = 1 when the primary has a replica, else 0; 0 = never wait
    durability_replicas: Literal["auto"] | int = "auto"
    durability_timeout_ms: int = Field(default=1000, ge=1, le=60_000)
    log_level: str = "info"
    models: tuple[ModelConfig, ...] = ()
    repositories: tuple[RepositoryConfig, ...] = ()
    policies: tuple[dict[str, Any], ...] = ()
    # the built-in baseline (gateway/policy/defaults.py), under [[policies]]
    default_policies: bool = True
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    # the key-encryption key(s) of stored provider keys: 32 random bytes in URL-safe base64;
    # during a rotation several, comma-separated: the first wraps, every one unwraps
    encryption_key: Annotated[str, AfterValidator(_keks)] | None = Field(default=None, repr=False)
    encryption_key_file: Path | None = None  # a file holding the same (read at start)
    # resolved from the environment at load time: variable name -> value
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.startswith(("redis+sentinel://", "rediss+sentinel://")):
            from gateway.storage.client import parse_sentinel_url

            parse_sentinel_url(v)  # ValueError names what is wrong
        elif not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss://, unix:// or redis+sentinel:// URL")
        return v

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not a network, e.g. 10.0.0.0/8") from None
        return v

    @field_validator("admin_token")
    @classmethod
    def _admin_token(cls, v: str | None) -> str | None:
        # a bearer secret anyone who reaches the port can try online; a generated one is
        # 53 characters, and 24 keeps a hand-made one well out of guessing range
        if v is not None and len(v) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters (GATEWAY_ADMIN_TOKEN; "
                f"make one with: {MAKE_SECRET}), or unset it to have one generated"
            )
        return v

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret(cls, v: str | None) -> str | None:
        # RFC 7518 3.2: an HS256 key must be at least as long as the hash output, 256 bits
        if v is not None and len(v.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_JWT_SECRET_BYTES} bytes for HS256, RFC 7518 3.2 "
                f"(GATEWAY_JWT_SECRET; make one with: {MAKE_SECRET})"
            )
        return v

    @field_validator("jwt_public_key")
    @classmethod
    def _jwt_public_key(cls, v: str | None) -> str | None:
        if v is not None:
            from gateway.access.jwts import public_key_algorithm

            try:
                public_key_algorithm(v)
            except (ValueError, TypeError):  # not PEM, or a key of another kind
                raise ValueError(
                    "must be a PEM RSA public key (RS256) or EC P-256 public key (ES256)"
                ) from None
        return v

    @field_validator("jwt_audience", mode="before")
    @classmethod
    def _one_audience(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v  # `jwt_audience = "api://x"` in the file

    @field_validator("jwt_audience")
    @classmethod
    def _jwt_audience(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) > MAX_JWT_AUDIENCES:
            raise ValueError(f"at most {MAX_JWT_AUDIENCES} audiences")
        for value in v:
            _claim_value(value)
        return v

    @field_validator("jwt_issuer")
    @classmethod
    def _jwt_issuer(cls, v: str | None) -> str | None:
        return None if v is None else _claim_value(v)

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) > MAX_TRUSTED_PROXIES:
            raise ValueError(f"at most {MAX_TRUSTED_PROXIES} addresses or networks")
        for value in v:
            try:  # never "*": that would believe any caller's X-Forwarded-For
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(
                    f"{value[:60]!r} is not an IP address or network (e.g. 10.0.0.0/8)"
                ) from None
        return v

    @field_validator("durability_replicas", mode="before")
    @classmethod
    def _durability_replicas(cls, v: Any) -> Any:
        text = str(v).strip().lower()
        if text == "auto":
            return "auto"
        if isinstance(v, bool) or not text.isdigit() or int(text) > 16:
            raise ValueError('must be "auto" or a number of replicas from 0 to 16')
        return int(text)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.redis_cluster and not (self.redis_url or "").startswith(("redis://", "rediss://")):
            raise ValueError(
                "redis_cluster: needs redis_url, the redis:// or rediss:// URL of any cluster node"
            )
        ids = [m.id for m in self.models]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"models: duplicate id {min(dup)!r}")
        known = set(ids) or {DEMO_MODEL.id}
        for i, m in enumerate(self.models):
            for f in m.fallbacks:
                if f not in known or f == m.id:
                    raise ValueError(f"models[{i}].fallbacks: unknown model {f!r}")
        for i, repo in enumerate(self.repositories):
            if repo.model is not None and repo.model not in known:
                raise ValueError(f"repositories[{i}].model: unknown model {repo.model!r}")
        return self

    @property
    def served_models(self) -> tuple[ModelConfig, ...]:
        return self.models or (DEMO_MODEL,)

    def model(self, model_id: str) -> ModelConfig | None:
        for m in self.served_models:
            if m.id == model_id:
                return m
        return None

    def model_spec(self, model: ModelConfig, *, api_key_env: str | None = None) -> ModelSpec:
        env = api_key_env or model.default_key_env()
        options: dict[str, Any] = {
            "max_retries": model.max_retries,
            "transport": model.transport,
            "max_connections": model.max_connections,
            "max_keepalive_connections": model.max_keepalive_connections,
        }
        if model.provider == "openai":
            options.update(
                max_tokens_param=model.max_tokens_param, include_usage=model.include_usage
            )
        if model.provider == "demo":
            options.update(pace_ms=model.pace_ms, answer_words=model.answer_words)
        return ModelSpec(
            id=model.id,
            provider=model.provider,
            model=model.upstream_model,
            base_url=model.base_url,
            api_key=self.secrets.get(env) if env else None,
            max_output_tokens=model.max_output_tokens,
            context_window=model.context_window,
            connect_timeout=model.connect_timeout,
            read_timeout=model.read_timeout,
            options=options,
        )

    def key_warnings(self) -> list[str]:
        """One line per model or repository whose provider key variable is unset: its
        upstream then gets no key, which only a server that wants none accepts."""
        lines = []
        for i, m in enumerate(self.models):
            env = m.default_key_env()
            if m.provider != "demo" and env and env not in self.secrets:
                lines.append(f"models[{i}] {m.id!r}: {_no_key(env, m)}")
        for i, repo in enumerate(self.repositories):
            env = repo.api_key_env
            model = self.model(repo.model) if repo.model else self.served_models[0]
            if env and env not in self.secrets and model is not None and model.provider != "demo":
                lines.append(f"repositories[{i}] {repo.id!r}: {_no_key(env, model)}")
        return lines


_PROVIDER_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "host.docker.internal")


def _no_key(env: str, model: ModelConfig) -> str:
    url = model.base_url or _PROVIDER_URLS[model.provider]
    host = (urlsplit(url).hostname or "").lower()
    local = host in _LOCAL_HOSTS or host.startswith("127.") or host.endswith(".localhost")
    if local:
        return (
            f"{env} is not set, so requests to {url} carry no key: fine for a local "
            f"{model.provider}-compatible server that needs none (vLLM, Ollama, ...)"
        )
    return (
        f"{env} is not set, so requests to {url} carry no key and will be refused "
        f"unless that server needs none"
    )


# environment variable -> settings field
ENV_FIELDS = {
    "GATEWAY_REDIS_URL": "redis_url",
    "GATEWAY_REDIS_CLUSTER": "redis_cluster",
    "GATEWAY_DATA_DIR": "data_dir",
    "GATEWAY_ADMIN_TOKEN": "admin_token",
    "GATEWAY_JWT_SECRET": "jwt_secret",
    "GATEWAY_JWT_PUBLIC_KEY": "jwt_public_key",
    "GATEWAY_JWT_AUDIENCE": "jwt_audience",
    "GATEWAY_JWT_ISSUER": "jwt_issuer",
    "GATEWAY_JWT_REQUIRE_EXP": "jwt_require_exp",
    "GATEWAY_CORS_ORIGINS": "cors_origins",
    "GATEWAY_WEBHOOK_ALLOWED_HOSTS": "webhook_allowed_hosts",
    "GATEWAY_WEBHOOK_ALLOWED_NETWORKS": "webhook_allowed_networks",
    "GATEWAY_RESUME_FOLLOWERS_PER_USER": "resume_followers_per_user",
    "GATEWAY_RESUME_FOLLOWERS_PER_MESSAGE": "resume_followers_per_message",
    "GATEWAY_PING_INTERVAL": "ping_interval",
    "GATEWAY_MAX_BODY_BYTES": "max_body_bytes",
    "GATEWAY_LOG_LEVEL": "log_level",
    "GATEWAY_SEND_TIMEOUT": "send_timeout",
    "GATEWAY_SHUTDOWN_GRACE": "shutdown_grace",
    "GATEWAY_FINAL_WRITE_TIMEOUT": "final_write_timeout",
    "GATEWAY_DURABILITY_REPLICAS": "durability_replicas",
    "GATEWAY_DURABILITY_TIMEOUT_MS": "durability_timeout_ms",
    "GATEWAY_ENCRYPTION_KEY": "encryption_key",
    "GATEWAY_HTTP_MAX_HEADER_BYTES": "http_max_header_bytes",
    "GATEWAY_HTTP_MAX_HEADERS": "http_max_headers",
    "GATEWAY_HTTP_HEADER_TIMEOUT": "http_header_timeout",
    "GATEWAY_HTTP_BODY_TIMEOUT": "http_body_timeout",
    "GATEWAY_HTTP_MAX_CONNECTIONS": "http_max_connections",
    "GATEWAY_HTTP_MAX_PENDING_PER_CLIENT": "http_max_pending_per_client",
    "GATEWAY_TRUSTED_PROXIES": "trusted_proxies",
    "GATEWAY_AUTH_FAILURES_PER_MINUTE": "auth_failures_per_minute",
}


LIST_FIELDS = (
    "cors_origins",
    "jwt_audience",
    "trusted_proxies",
    "webhook_allowed_hosts",
    "webhook_allowed_networks",
)


def _format_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ""
    for part in err["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the config file (if any), overlay the environment, then explicit overrides
    (command-line flags). Raises ConfigError with a one-line message."""
    env = os.environ if env is None else env
    data = _read_file(config_path or env.get("GATEWAY_CONFIG"))
    data.update(_from_env(env))
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    _read_encryption_key_file(data)
    if "secrets" in data:
        raise ConfigError("secrets: not a config field; name the variable with api_key_env")
    wanted = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
    for section in ("models", "repositories"):
        for entry in data.get(section) or []:
            if isinstance(entry, dict) and isinstance(entry.get("api_key_env"), str):
                wanted.add(entry["api_key_env"])
    data["secrets"] = {k: env[k] for k in wanted if env.get(k)}
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None
    _check_policies(settings)
    return settings


def _read_encryption_key_file(data: dict[str, Any]) -> None:
    """encryption_key_file holds what GATEWAY_ENCRYPTION_KEY would (the variable wins)."""
    path = data.get("encryption_key_file")
    if not path or data.get("encryption_key"):
        return
    try:
        data["encryption_key"] = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"encryption_key_file {path}: {exc.strerror}") from None


def _read_file(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings the environment sets (each variable of ENV_FIELDS, when not empty)."""
    data: dict[str, Any] = {}
    for var, field in ENV_FIELDS.items():
        value = env.get(var)
        if value is None or value == "":
            continue
        if field in LIST_FIELDS:
            data[field] = [o.strip() for o in value.split(",") if o.strip()]
        elif field == "redis_cluster":
            data[field] = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            data[field] = value
    return data


def _check_policies(settings: Settings) -> None:
    """Validate [[policies]] with the policy engine's own model, so a bad entry stops start-up."""
    from gateway.policy.model import PolicySpec

    for i, raw in enumerate(settings.policies):
        try:
            PolicySpec.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"policies[{i}].{_format_error(exc)}") from None
