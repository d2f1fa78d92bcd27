"""The metadata catalogue: tables, columns, semantic models, metrics, dimensions and roles.

One YAML format, split over the files of a catalogue folder (or one file); every file's
top-level mappings are merged. ``Catalogue.load()`` reads the shipped catalogue.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

CATALOGUE_DIR = Path(__file__).resolve().parent / "catalogue"
USER_KEYS = ("tables", "models", "metrics", "dimensions")
# libyaml's safe loader when PyYAML was built with it (same documents, several times faster)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Source(BaseModel):
    department: str = ""
    system: str = ""


class ColumnMeta(BaseModel):
    label: str
    description: str = ""
    unit: str | None = None
    synonyms: list[str] = Field(default_factory=list)
    sensitivity: str = "normal"  # normal | sensitive | sensitive_if_individual

    @property
    def sensitive(self) -> bool:
        return self.sensitivity != "normal"


class TableMeta(BaseModel):
    name: str = ""
    label: str
    description: str = ""
    source: Source = Field(default_factory=Source)
    update_frequency: str = ""
    as_of: str | None = None
    columns: dict[str, ColumnMeta]


class Join(BaseModel):
    table: str
    condition: str
    via: str | None = None


class TimeSpec(BaseModel):
    grain: str  # month | quarter | year | day | none
    column: str | None = None  # for grain 'day': the date column
    cumulative: bool = False  # values are year-to-date cumulative


class TotalRow(BaseModel):
    dimension: str
    column: str
    value: str


class Model(BaseModel):
    name: str = ""
    table: str
    time: TimeSpec
    joins: dict[str, Join] = Field(default_factory=dict)
    totals: list[TotalRow] = Field(default_factory=list)


class MemberSource(BaseModel):
    table: str
    name: str
    key: str | None = None
    attributes: list[str] = Field(default_factory=list)
    suffix: str | None = None  # also match "<member><suffix>" (民营 → 民营企业)


class DefaultMetricRule(BaseModel):
    by: list[str]
    map: dict[str, str]


class Dimension(BaseModel):
    name: str = ""
    label: str
    synonyms: list[str] = Field(default_factory=list)
    expr: str
    exprs: dict[str, str] = Field(default_factory=dict)
    key: str | None = None
    match: str = "equals"  # equals | prefix
    kind: str = "category"  # category | flag
    flag_words: list[str] = Field(default_factory=list)
    breakdown_as: str | None = None
    members: MemberSource | None = None
    member_synonyms: dict[str, list[str]] = Field(default_factory=dict)
    default_metric: str | DefaultMetricRule | None = None
    count_unit: str | None = None
    count_metric: str | None = None
    sensitive: bool = False
    weak_members: bool = False  # members are common words (企业, 个人, 单位): ignored where they don't fit
    models: list[str]

    def expr_for(self, model: str) -> str:
        return self.exprs.get(model, self.expr)


class Metric(BaseModel):
    name: str = ""
    label: str
    synonyms: list[str] = Field(default_factory=list)
    description: str = ""
    model: str
    expr: str
    unit: str
    filters: list[str] = Field(default_factory=list)
    time_agg: str = "sum"  # sum | latest (stocks and year-to-date values: latest period in range)
    growth_metric: str | None = None
    plan_metric: str | None = None
    plan_filters: list[str] = Field(default_factory=list)  # the actual's own scope, applied to the plan too
    default_filters: dict[str, list[str]] = Field(default_factory=dict)  # dimension → members unless the query says otherwise
    requires: str | None = None


class Role(BaseModel):
    name: str = ""
    description: str = ""
    sensitive: bool = False
    row_filters: dict[str, str] = Field(default_factory=dict)


class Catalogue(BaseModel):
    as_of: str
    tables: dict[str, TableMeta]
    models: dict[str, Model]
    dimensions: dict[str, Dimension]
    metrics: dict[str, Metric]
    roles: dict[str, Role]
    default_role: str = "分析师"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> "Catalogue":
        cat = cls.model_validate(data)
        for group in (cat.tables, cat.models, cat.dimensions, cat.metrics, cat.roles):
            for name, item in group.items():
                item.name = name
        cat.check()
        return cat

    @classmethod
    def load(cls, path: Path | str | None = None, extra: Path | str | None = None) -> "Catalogue":
        """Load a catalogue from a YAML file or a folder of YAML files, plus an optional folder of
        users' own table catalogues (`warehouse load` writes them beside the warehouse)."""
        path = Path(path) if path else CATALOGUE_DIR
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        user_files = sorted(Path(extra).glob("*.yaml")) if extra and Path(extra).is_dir() else []
        files += user_files
        merged: dict[str, Any] = {}
        for file in files:
            data = yaml.load(file.read_text(encoding="utf-8"), Loader=_SAFE_LOADER) or {}
            if file in user_files:  # a user's table catalogue never touches roles or as_of
                data = {k: v for k, v in data.items() if k in USER_KEYS}
            for key, value in data.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key].update(value)
                else:
                    merged[key] = value
        return cls.from_mapping(merged)

    def check(self) -> None:
        """Cross-reference checks: every metric's model, every dimension's models exist."""
        problems = []
        for m in self.metrics.values():
            if m.model not in self.models:
                problems.append(f"指标 {m.name} 引用了不存在的模型 {m.model}")
            for ref in (m.growth_metric, m.plan_metric):
                if ref and ref not in self.metrics:
                    problems.append(f"指标 {m.name} 引用了不存在的指标 {ref}")
        for d in self.dimensions.values():
            for model in d.models:
                if model not in self.models:
                    problems.append(f"维度 {d.name} 引用了不存在的模型 {model}")
        for model in self.models.values():
            if model.table not in self.tables:
                problems.append(f"模型 {model.name} 的表 {model.table} 不在数据目录中")
        if problems:
            raise ValueError("数据目录有误：" + "；".join(problems))

    # --- look-ups -----------------------------------------------------------------
    def model_of(self, metric: str) -> Model:
        return self.models[self.metrics[metric].model]

    def dimensions_for(self, metric: str) -> list[str]:
        model = self.metrics[metric].model
        return [d.name for d in self.dimensions.values() if model in d.models]

    def supports(self, metric: str, dimension: str) -> bool:
        return self.metrics[metric].model in self.dimensions[dimension].models

    def source_for_table(self, table: str) -> TableMeta | None:
        return self.tables.get(table)

    def table_columns(self) -> dict[str, set[str]]:
        return {name: set(t.columns) for name, t in self.tables.items()}

    def sensitive_columns(self) -> dict[str, set[str]]:
        return {
            name: {c for c, meta in t.columns.items() if meta.sensitive}
            for name, t in self.tables.items()
        }

    def fingerprint(self) -> str:
        import hashlib
        import json

        return hashlib.sha256(
            json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()[:16]


@lru_cache(maxsize=4)
def load_catalogue(path: str | None = None) -> Catalogue:
    """Process-wide cached catalogue."""
    return Catalogue.load(path)
