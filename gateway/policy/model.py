"""A governance policy as an operator writes it in `[[policies]]`, validated once at start.

Every mistake is reported against the field that holds it, so a config loader can print
`policies[2].keywords: at least one keyword is needed` (see `error_lines`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from gateway.policy.patterns import PatternError, check_pattern
from gateway.policy.phones import KNOWN_REGIONS

Stage = Literal["pre", "during", "post"]
Action = Literal["log", "alert", "block", "redact"]
Kind = Literal[
    "regex",
    "keywords",
    "pii",
    "secrets",
    "max_length",
    "model_allowlist",
    "prompt_injection",
    "max_output_tokens",
]
Entity = Literal["card", "email", "phone", "iban", "ssn", "ip"]
Scope = Literal["global", "org", "workspace", "repository"]

ALL_ENTITIES: tuple[Entity, ...] = ("card", "email", "phone", "iban", "ssn", "ip")
SPAN_KINDS = frozenset({"regex", "keywords", "pii", "secrets", "prompt_injection"})
# Stages at which each kind means something; a policy naming another stage is a mistake.
KIND_STAGES: dict[str, frozenset[str]] = {
    "model_allowlist": frozenset({"pre"}),
    "max_output_tokens": frozenset({"during", "post"}),
}
# Which parameters belong to which kinds.
PARAMETERS: dict[str, frozenset[str]] = {
    "pattern": frozenset({"regex"}),
    "patterns": frozenset({"regex"}),
    "label": frozenset({"regex", "keywords"}),
    "keywords": frozenset({"keywords"}),
    "entities": frozenset({"pii"}),
    "regions": frozenset({"pii"}),
    "max_chars": frozenset({"max_length"}),
    "max_tokens": frozenset({"max_length"}),
    "models": frozenset({"model_allowlist"}),
    "limit": frozenset({"max_output_tokens"}),
}


def _error(message: str, **context: Any) -> PydanticCustomError:
    shown = {
        k: v if isinstance(v, _Raw) or not isinstance(v, str) else repr(v)
        for k, v in context.items()
    }
    text = message.format(**shown)
    return PydanticCustomError("policy", "{message}", {"message": text})


def _regex(value: str) -> str:
    try:
        return check_pattern(value)
    except PatternError as exc:
        raise _error("{reason}", reason=_Raw(str(exc))) from None


Regex = Annotated[str, AfterValidator(_regex)]


def _policy_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise _error(
            "use 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
        )
    return value


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
PolicyId = Annotated[str, AfterValidator(_policy_id)]


class PolicySpec(BaseModel):
    """One policy. Scope: none of org_id / workspace_id / repo_id means every conversation;
    each one given narrows it (all must match)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: PolicyId
    name: str | None = Field(default=None, validate_default=True)
    description: str = ""
    enabled: bool = True
    org_id: str | None = None
    workspace_id: str | None = None
    repo_id: str | None = None
    scope: Scope | None = Field(default=None, validate_default=True)
    kind: Kind
    stages: tuple[Stage, ...] = Field(min_length=1)
    action: Action
    # Kind parameters; each is checked against `kind` (see PARAMETERS).
    pattern: Regex | None = Field(default=None, validate_default=True)
    patterns: tuple[Regex, ...] = Field(default=(), max_length=64, validate_default=True)
    label: str | None = Field(default=None, validate_default=True, pattern=r"^[A-Za-z0-9_.-]+$")
    keywords: tuple[Annotated[str, Field(max_length=200)], ...] = Field(
        default=(), max_length=10_000, validate_default=True
    )
    entities: tuple[Entity, ...] | None = Field(default=None, validate_default=True)
    # Phone numbers in national format are read as numbers of these regions (ISO 3166
    # codes libphonenumber knows); international ones are found whatever the regions.
    regions: tuple[str, ...] | None = Field(default=None, validate_default=True)
    max_chars: int | None = Field(default=None, gt=0, validate_default=True)
    max_tokens: int | None = Field(default=None, gt=0, validate_default=True)
    models: tuple[str, ...] = Field(default=(), validate_default=True)
    limit: int | None = Field(default=None, gt=0, validate_default=True)
    webhooks: tuple[str, ...] = Field(default=(), validate_default=True)

    @field_validator("name")
    @classmethod
    def _default_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value is not None else info.data.get("id")

    @field_validator("scope")
    @classmethod
    def _scope_matches_ids(cls, value: Scope | None, info: ValidationInfo) -> Scope:
        d = info.data
        level: Scope = (
            "repository"
            if d.get("repo_id")
            else "workspace"
            if d.get("workspace_id")
            else "org"
            if d.get("org_id")
            else "global"
        )
        if value is not None and value != level:
            needs = {"org": "org_id", "workspace": "workspace_id", "repository": "repo_id"}
            hint = f"set {needs[value]}" if value in needs else "remove org_id/workspace_id/repo_id"
            raise _error(
                "scope {scope} does not match the ids given: {hint}", scope=value, hint=_Raw(hint)
            )
        return level

    @field_validator("stages")
    @classmethod
    def _stages_fit_kind(cls, value: tuple[Stage, ...], info: ValidationInfo) -> tuple[Stage, ...]:
        stages = tuple(dict.fromkeys(value))
        kind = info.data.get("kind")
        allowed = KIND_STAGES.get(kind or "")
        if allowed is not None:
            wrong = [s for s in stages if s not in allowed]
            if wrong:
                raise _error(
                    "kind {kind} cannot run at stage {stage}; allowed: {allowed}",
                    kind=kind,
                    stage=wrong[0],
                    allowed=_Raw(", ".join(sorted(allowed))),
                )
        return stages

    @field_validator("action")
    @classmethod
    def _action_fits_kind(cls, value: Action, info: ValidationInfo) -> Action:
        kind = info.data.get("kind")
        if value == "redact" and kind is not None and kind not in SPAN_KINDS:
            raise _error("kind {kind} finds no text to redact; use log, alert or block", kind=kind)
        return value

    @field_validator(
        "pattern",
        "patterns",
        "label",
        "keywords",
        "entities",
        "regions",
        "max_chars",
        "max_tokens",
        "models",
        "limit",
    )
    @classmethod
    def _parameter_fits_kind(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        field = info.field_name or ""
        if kind is None:
            return value
        if kind not in PARAMETERS[field]:
            if value not in (None, ()):
                owners = " or ".join(repr(k) for k in sorted(PARAMETERS[field]))
                raise _error(
                    "{field} belongs to kind {owners}, not {kind}",
                    field=_Raw(field),
                    owners=_Raw(owners),
                    kind=kind,
                )
            return value
        check = _CHECKS.get(field, _unchecked)
        return check(value, info.data)

    @field_validator("webhooks")
    @classmethod
    def _webhooks_are_urls(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if value and info.data.get("action") not in (None, "alert"):
            raise _error("webhooks are only used by action 'alert'")
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise _error("{url} is not an http(s) URL", url=url)
        return value

    @property
    def stage_set(self) -> frozenset[str]:
        return frozenset(self.stages)


class _Raw(str):
    """A message argument shown as is, not quoted."""


def _unchecked(value: Any, data: dict[str, Any]) -> Any:
    return value


def _check_patterns(value: tuple[str, ...], data: dict[str, Any]) -> tuple[str, ...]:
    if not value and "pattern" in data and data["pattern"] is None:
        raise _error("kind 'regex' needs pattern (or patterns)")
    return value


def _check_keywords(value: tuple[str, ...], data: dict[str, Any]) -> tuple[str, ...]:
    if not any(k.strip() for k in value):
        raise _error("kind 'keywords' needs at least one non-blank keyword")
    return value


def _check_entities(value: tuple[Entity, ...] | None, data: dict[str, Any]) -> tuple[Entity, ...]:
    if value is None:
        return ALL_ENTITIES
    if not value:
        raise _error("name at least one entity, or leave entities out for all of them")
    return tuple(dict.fromkeys(value))


MAX_REGIONS = 64


def _check_regions(value: tuple[str, ...] | None, data: dict[str, Any]) -> tuple[str, ...] | None:
    if value is None:
        return None
    entities = data.get("entities") or ALL_ENTITIES
    if "phone" not in entities:
        raise _error("regions only changes how phone numbers are read; add 'phone' to entities")
    if not value or len(value) > MAX_REGIONS:
        raise _error(
            "name 1 to {n} regions, or leave regions out for the default set", n=MAX_REGIONS
        )
    regions = tuple(dict.fromkeys(r.upper() for r in value))
    unknown = [r for r in regions if r not in KNOWN_REGIONS]
    if unknown:
        raise _error(
            "{region} is not a region libphonenumber knows (use ISO 3166 codes such as 'DE')",
            region=unknown[0][:8],
        )
    return regions


def _check_max_tokens(value: int | None, data: dict[str, Any]) -> int | None:
    if value is None and data.get("max_chars") is None:
        raise _error("kind 'max_length' needs max_chars or max_tokens")
    return value


def _check_models(value: tuple[str, ...], data: dict[str, Any]) -> tuple[str, ...]:
    if not value or not all(m.strip() for m in value):
        raise _error("kind 'model_allowlist' needs a list of model ids (shell wildcards allowed)")
    return value


def _check_limit(value: int | None, data: dict[str, Any]) -> int | None:
    if value is None:
        raise _error("kind 'max_output_tokens' needs limit (a number of tokens)")
    return value


_CHECKS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "patterns": _check_patterns,
    "keywords": _check_keywords,
    "entities": _check_entities,
    "regions": _check_regions,
    "max_tokens": _check_max_tokens,
    "models": _check_models,
    "limit": _check_limit,
}


def error_lines(error: ValidationError, *, prefix: str = "") -> list[str]:
    """One readable line per problem: `policies[2].keywords: at least one keyword ...`."""
    lines = []
    for e in error.errors():
        path = prefix
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        lines.append(f"{path}: {e['msg']}" if path else e["msg"])
    return lines
