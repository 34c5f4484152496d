"""The answer of GET /usage: totals, a time series and its groups."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from gateway.api.schemas.common import Schema, Timestamp


class UsageSums(Schema):
    input_tokens: int
    output_tokens: int
    cost: float = Field(description="USD")
    cost_nusd: int = Field(description="the same in nano-USD (1e-9 USD): exact, for sums")
    requests: int = Field(description="answers recorded")


class UsagePoint(UsageSums):
    bucket: str = Field(
        json_schema_extra={"format": "date-time"}, description="the bucket's start, UTC"
    )
    group: dict[str, str] = Field(description="the group's value of each group_by dimension")


class UsageGroup(UsageSums):
    group: dict[str, str]


class Usage(Schema):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    success: Literal[True] = True
    org_ids: list[str]
    bucket: Literal["hour", "day", "month"]
    group_by: list[str]
    since: Timestamp = Field(
        alias="from", description="the window summed: what was asked, cut to what is kept"
    )
    to: Timestamp
    totals: UsageSums
    series: list[UsagePoint]
    groups: list[UsageGroup] = Field(description="each over the whole window, the costliest first")
