"""The structured query: the one contract between understanding and compilation.

The rule parser, the LLM agent and the UI all produce a ``StructuredQuery``; the compiler
turns it into governed SQL. Amounts in ``having`` are in the metric's stored unit.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

Grain = Literal["year", "quarter", "month"]
Compare = Literal["yoy", "mom", "diff", "share", "ratio", "execution"]
"""yoy: against the same period a year before (published growth where the metric has one);
diff: the same comparison computed from the values even where a published rate exists;
mom: against the previous period; share/ratio: part of a total; execution: actual ÷ plan."""


class Filter(BaseModel):
    """A dimension restricted to members (by member name; subject members by code)."""

    dimension: str
    values: list[str | bool]
    exclude: bool = False


class TimeRange(BaseModel):
    """Inclusive month range 'YYYY-MM'..'YYYY-MM'; grain groups the result by period."""

    start: str
    end: str
    grain: Grain | None = None
    label: str = ""

    @field_validator("start", "end")
    @classmethod
    def _month(cls, v: str) -> str:
        parts = v.split("-")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or not 1 <= int(parts[1]) <= 12:
            raise ValueError(f"时间格式应为 YYYY-MM：{v}")
        return f"{int(parts[0]):04d}-{int(parts[1]):02d}"

    @property
    def start_ym(self) -> tuple[int, int]:
        y, m = self.start.split("-")
        return int(y), int(m)

    @property
    def end_ym(self) -> tuple[int, int]:
        y, m = self.end.split("-")
        return int(y), int(m)

    @property
    def months(self) -> int:
        (y1, m1), (y2, m2) = self.start_ym, self.end_ym
        return (y2 * 12 + m2) - (y1 * 12 + m1) + 1

    def shifted(self, months: int) -> "TimeRange":
        def shift(y: int, m: int) -> str:
            idx = y * 12 + (m - 1) - months
            return f"{idx // 12:04d}-{idx % 12 + 1:02d}"

        return TimeRange(start=shift(*self.start_ym), end=shift(*self.end_ym), grain=self.grain)


class Having(BaseModel):
    """A threshold on an aggregated metric per group (value in the metric's unit)."""

    metric: str
    op: Literal[">", ">=", "<", "<=", "="]
    value: float


class OrderBy(BaseModel):
    """Sort by a metric name, a dimension name, or a comparison column (growth_pct, diff, share)."""

    field: str
    desc: bool = True


class StructuredQuery(BaseModel):
    metrics: list[str] = Field(min_length=1)
    dimensions: list[str] = Field(default_factory=list)
    filters: list[Filter] = Field(default_factory=list)
    time: TimeRange | None = None
    compare: Compare | None = None
    share_of: str | None = Field(
        default=None, description="share: the filter dimension dropped for the denominator"
    )
    denominator: list[Filter] = Field(
        default_factory=list, description="share: filters that replace same-dimension filters for the denominator"
    )
    offset_months: int | None = Field(
        default=None, ge=1, le=600, description="yoy/mom against an explicit earlier period, in months"
    )
    change: Literal["decline", "increase"] | None = Field(
        default=None, description="with yoy/mom: keep only groups that fell / rose"
    )
    having: list[Having] = Field(default_factory=list)
    count_groups: bool = Field(default=False, description="return the number of groups only")
    order_by: list[OrderBy] = Field(default_factory=list)
    limit: int | None = Field(default=None, ge=1, le=10000)

    def describe(self) -> dict:
        return self.model_dump(mode="json", exclude_defaults=True)
