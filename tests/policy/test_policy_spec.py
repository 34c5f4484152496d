"""PolicySpec: the config vocabulary, and errors that name the field at fault."""

import pytest
from pydantic import ValidationError

from gateway.policy import PolicySpec, error_lines
from gateway.policy.phones import KNOWN_REGIONS


def errors(**fields) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        PolicySpec(**fields)
    return error_lines(caught.value, prefix="policies[2]")


def base(**over):
    return {"id": "p1", "stages": ["pre"], "action": "block", "kind": "pii", **over}


def test_defaults():
    spec = PolicySpec(**base())
    assert spec.name == "p1"
    assert spec.enabled and spec.scope == "global"
    assert spec.entities == ("card", "email", "phone", "iban", "ssn", "ip")


def test_scope_follows_the_ids():
    assert PolicySpec(**base(org_id="o")).scope == "org"
    assert PolicySpec(**base(org_id="o", workspace_id="w")).scope == "workspace"
    assert PolicySpec(**base(repo_id="r", scope="repository")).scope == "repository"
    assert errors(**base(scope="org")) == [
        "policies[2].scope: scope 'org' does not match the ids given: set org_id"
    ]


def test_the_contract_examples_validate():
    PolicySpec(
        id="no-card-numbers",
        stages=["pre", "during", "post"],
        action="block",
        kind="pii",
        entities=["card"],
    )
    PolicySpec(
        id="codename",
        stages=["during"],
        action="redact",
        kind="keywords",
        keywords=["bluebird", "project x"],
    )


def test_frozen_and_strict():
    spec = PolicySpec(**base())
    with pytest.raises(ValidationError):
        spec.action = "log"  # type: ignore[misc]
    assert errors(**base(colour="red")) == ["policies[2].colour: Extra inputs are not permitted"]


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        (
            base(kind="keywords"),
            "policies[2].keywords: kind 'keywords' needs at least one non-blank keyword",
        ),
        (base(kind="regex"), "policies[2].patterns: kind 'regex' needs pattern (or patterns)"),
        (
            base(kind="regex", pattern="(ab"),
            (
                "policies[2].pattern: not a valid regular expression: "
                "missing ), unterminated subpattern at position 0"
            ),
        ),
        (
            base(kind="regex", patterns=["ok", "a*"]),
            (
                "policies[2].patterns[1]: the pattern matches the empty string, "
                "so it would match everywhere"
            ),
        ),
        (
            base(kind="max_length"),
            "policies[2].max_tokens: kind 'max_length' needs max_chars or max_tokens",
        ),
        (
            base(kind="model_allowlist"),
            (
                "policies[2].models: kind 'model_allowlist' needs a list of model ids "
                "(shell wildcards allowed)"
            ),
        ),
        (
            base(kind="max_output_tokens", stages=["post"]),
            "policies[2].limit: kind 'max_output_tokens' needs limit (a number of tokens)",
        ),
        (
            base(keywords=["x"]),
            "policies[2].keywords: keywords belongs to kind 'keywords', not 'pii'",
        ),
        (
            base(entities=["card", "dna"]),
            (
                "policies[2].entities[1]: "
                "Input should be 'card', 'email', 'phone', 'iban', 'ssn' or 'ip'"
            ),
        ),
        (
            base(stages=[]),
            "policies[2].stages: Tuple should have at least 1 item after validation, not 0",
        ),
        (
            base(webhooks=["https://hooks.example.com/x"]),
            "policies[2].webhooks: webhooks are only used by action 'alert'",
        ),
        (
            base(action="alert", webhooks=["ftp://x"]),
            "policies[2].webhooks: 'ftp://x' is not an http(s) URL",
        ),
        (
            base(id="has space"),
            (
                "policies[2].id: use 1 to 128 letters, digits, '.', '_', ':' or '-', "
                "starting with a letter or digit"
            ),
        ),
    ],
)
def test_errors_name_the_field(fields, line):
    assert line in errors(**fields)


NOT_ON_RE2 = "not supported by RE2, the linear-time engine policy patterns run on"


@pytest.mark.parametrize(
    ("pattern", "line"),
    [
        (r"(\w)\1", f"policies[2].pattern: {NOT_ON_RE2}: back-references"),
        (r"foo(?!bar)", f"policies[2].pattern: {NOT_ON_RE2}: look-ahead and look-behind"),
        (r"a++b", f"policies[2].pattern: {NOT_ON_RE2}: possessive repeats"),
        (r"(?>ab|a)c", f"policies[2].pattern: {NOT_ON_RE2}: atomic groups"),
        ("x{1001}", "policies[2].pattern: RE2 refuses it: invalid repetition size"),
        ("a" * 1001, "policies[2].pattern: a pattern has at most 1000 characters"),
        (
            r".{900}y|.{900}z|(?i:[a-zé]{1000}x)",
            "policies[2].pattern: the pattern is too large once compiled",
        ),
    ],
)
def test_patterns_that_cannot_run_in_linear_time_are_refused_with_the_reason(pattern, line):
    (shown,) = errors(**base(kind="regex", pattern=pattern))
    assert shown.startswith(line)


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        (
            base(kind="max_length", max_chars=10, action="redact"),
            (
                "policies[2].action: "
                "kind 'max_length' finds no text to redact; use log, alert or block"
            ),
        ),
        (
            base(kind="model_allowlist", models=["gpt-4o"], action="redact"),
            (
                "policies[2].action: kind 'model_allowlist' finds no text to redact; "
                "use log, alert or block"
            ),
        ),
        (
            base(kind="model_allowlist", models=["gpt-4o"], stages=["during"]),
            "policies[2].stages: kind 'model_allowlist' cannot run at stage 'during'; allowed: pre",
        ),
        (
            base(kind="max_output_tokens", limit=5, stages=["pre"]),
            (
                "policies[2].stages: kind 'max_output_tokens' cannot run at stage 'pre'; "
                "allowed: during, post"
            ),
        ),
    ],
)
def test_combinations_that_make_no_sense(fields, line):
    assert line in errors(**fields)


def test_stages_are_deduplicated():
    assert PolicySpec(**base(stages=["pre", "post", "pre"])).stages == ("pre", "post")


def test_regions_are_normalized_and_deduplicated():
    spec = PolicySpec(**base(entities=["phone"], regions=["de", "FR", "DE"]))
    assert spec.regions == ("DE", "FR")
    assert PolicySpec(**base()).regions is None  # the default set


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        (
            base(regions=["XX"]),
            (
                "policies[2].regions: 'XX' is not a region libphonenumber knows "
                "(use ISO 3166 codes such as 'DE')"
            ),
        ),
        (
            base(regions=["Q" * 5000]),
            (
                "policies[2].regions: 'QQQQQQQQ' is not a region libphonenumber knows "
                "(use ISO 3166 codes such as 'DE')"
            ),
        ),
        (
            base(regions=[]),
            "policies[2].regions: name 1 to 64 regions, or leave regions out for the default set",
        ),
        (
            base(entities=["card"], regions=["DE"]),
            (
                "policies[2].regions: regions only changes how phone numbers are read; "
                "add 'phone' to entities"
            ),
        ),
        (
            base(kind="secrets", regions=["DE"]),
            "policies[2].regions: regions belongs to kind 'pii', not 'secrets'",
        ),
    ],
)
def test_regions_errors(fields, line):
    assert line in errors(**fields)


def test_abuse_bounds_on_counts_and_sizes():
    # An org admin's policy is compiled for every tenant's turns: its size is bounded.
    regions = sorted(KNOWN_REGIONS)[:65]
    assert "policies[2].regions: name 1 to 64 regions" in errors(**base(regions=regions))[0]
    many = errors(**base(kind="regex", patterns=[f"x{i}" for i in range(65)]))
    assert many[0].startswith("policies[2].patterns: Tuple should have at most 64 items")
    long_word = errors(**base(kind="keywords", keywords=["w" * 201]))
    assert long_word[0].startswith("policies[2].keywords[0]: String should have at most 200")
    crowd = errors(**base(kind="keywords", keywords=[f"w{i}" for i in range(10_001)]))
    assert crowd[0].startswith("policies[2].keywords: Tuple should have at most 10000 items")
