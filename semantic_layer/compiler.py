"""Compile a StructuredQuery into DuckDB SQL through sqlglot.

Plan, as in a metrics layer: one aggregate per metric (its model's fact table, the joins the
query's dimensions need, the metric's own filters, the query's filters and time range), then
the comparison on top (previous period, share of a total, plan for execution rate), joined on
the shared keys. Every catalogue snippet is parsed by sqlglot; values are literals, never
spliced text.
"""
from __future__ import annotations

import calendar
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import lru_cache

import sqlglot
from sqlglot import exp

from .catalogue import Catalogue, Dimension, Metric, Model
from .query import Filter, StructuredQuery, TimeRange

DIALECT = "duckdb"
TIME_LABELS = {"year": "年度", "quarter": "季度", "month": "月份"}


class CompileError(ValueError):
    """The structured query cannot be compiled; the message is for the user (Chinese)."""


@dataclass
class OutputColumn:
    name: str
    label: str
    unit: str | None = None
    role: str = "metric"  # dimension | time | metric | compare

    def as_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "unit": self.unit}


@dataclass
class CompiledQuery:
    sql: str
    columns: list[OutputColumn]
    tables: list[str]
    metrics: list[str]
    notes: list[str] = field(default_factory=list)


_POSITION_META = ("line", "col", "start", "end")
_SIMPLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@lru_cache(maxsize=4096)
def _parse_cached(snippet: str) -> exp.Expression:
    tree = sqlglot.parse_one(snippet, dialect=DIALECT)
    for node in tree.walk():  # source positions (for parse errors) make every copy 4x dearer
        meta = node._meta
        if meta:
            for k in _POSITION_META:
                meta.pop(k, None)
            if not meta:
                node._meta = None
    return tree


def _parse(snippet: str) -> exp.Expression:
    """A fresh tree for a catalogue snippet (parsed once per process, then copied)."""
    return _parse_cached(snippet).copy()


def _table(name: str, alias: str) -> exp.Expression:
    """``name AS alias`` (a plain name needs no parsing)."""
    table = exp.Table(this=exp.to_identifier(name)) if _SIMPLE_NAME.match(name) else exp.to_table(name)
    return table.as_(alias, copy=False)


def _col(table: str, name: str) -> exp.Column:
    return exp.column(name, table=table)


class Compiler:
    """Compiles structured queries against one catalogue."""

    def __init__(self, catalogue: Catalogue, cache_size: int = 1024):
        self.cat = catalogue
        # compile() is a pure function of (catalogue, query): remember recent results by the
        # query's canonical JSON (copies are handed out, so callers may change theirs)
        self._cache: OrderedDict[str, CompiledQuery] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ validation
    def validate(self, q: StructuredQuery) -> None:
        cat = self.cat
        for m in q.metrics:
            if m not in cat.metrics:
                raise CompileError(f"未知指标：{m}")
        names = {d for d in q.dimensions} | {f.dimension for f in q.filters} | {f.dimension for f in q.denominator}
        for d in names:
            if d not in cat.dimensions:
                raise CompileError(f"未知维度：{d}")
        for m in q.metrics:
            metric = cat.metrics[m]
            for d in names:
                if not cat.supports(m, d):
                    raise CompileError(
                        f"指标“{metric.label}”不能按“{cat.dimensions[d].label}”统计或筛选"
                    )
            if metric.requires and metric.requires not in {f.dimension for f in q.filters} | set(q.dimensions):
                dim = cat.dimensions[metric.requires]
                raise CompileError(f"指标“{metric.label}”需要指定{dim.label}")
        for d in q.dimensions:
            if cat.dimensions[d].sensitive:
                raise CompileError(f"“{cat.dimensions[d].label}”属于敏感信息，不能按其汇总")
        for h in q.having:
            if h.metric not in q.metrics:
                raise CompileError(f"筛选条件中的指标 {h.metric} 不在查询指标中")
        if q.compare in ("share", "ratio") and len(q.metrics) > 2:
            raise CompileError("占比只能在两个指标之间或在一个指标的分组之间计算")
        if q.compare == "execution":
            for m in q.metrics:
                if not cat.metrics[m].plan_metric:
                    raise CompileError(f"指标“{cat.metrics[m].label}”没有对应的预算数，无法计算执行率")
        if q.time and q.time.grain:
            for m in q.metrics:
                grain = cat.model_of(m).time.grain
                order = ["none", "year", "quarter", "month", "day"]
                if order.index(grain) < order.index(q.time.grain):
                    raise CompileError(
                        f"指标“{cat.metrics[m].label}”只有按{ {'year': '年', 'quarter': '季度', 'none': '当前'}[grain]}的数据，不能按{TIME_LABELS[q.time.grain]}展开"
                    )

    # ------------------------------------------------------------------ building blocks
    def _time_keys(self, model: Model, grain: str | None) -> list[tuple[str, exp.Expression]]:
        """(alias, expression) of the period columns for a grain on a model."""
        if not grain:
            return []
        t = model.time
        keys = ["year"] if grain == "year" else ["year", grain]
        out = []
        for k in keys:
            if t.grain == "day":
                fn = {"year": "YEAR", "quarter": "QUARTER", "month": "MONTH"}[k]
                e = exp.func(fn, _col("f", t.column or "date"))
            elif k == "quarter" and t.grain == "month":
                e = _parse("(f.month - 1) // 3 + 1")
            else:
                e = _col("f", k)
            out.append((k, e))
        return out

    def _period_index(self, model: Model) -> exp.Expression:
        g = model.time.grain
        if g == "month":
            return _parse("f.year * 100 + f.month")
        if g == "quarter":
            return _parse("f.year * 100 + f.quarter * 3")
        if g == "year":
            return _parse("f.year")
        raise CompileError("该指标没有时间维度")

    def _time_condition(self, model: Model, tr: TimeRange) -> exp.Expression | None:
        (y1, m1), (y2, m2) = tr.start_ym, tr.end_ym
        g = model.time.grain
        if g == "none":
            return None
        if g == "year" or (g in ("month", "quarter") and m1 == 1 and m2 == 12):
            if y1 == y2:
                return exp.EQ(this=_col("f", "year"), expression=exp.Literal.number(y1))
            return exp.Between(this=_col("f", "year"), low=exp.Literal.number(y1), high=exp.Literal.number(y2))
        if g == "month":
            if y1 == y2:
                cond = exp.EQ(this=_col("f", "year"), expression=exp.Literal.number(y1))
                if m1 == m2:
                    return exp.and_(cond, exp.EQ(this=_col("f", "month"), expression=exp.Literal.number(m1)), copy=False)
                return exp.and_(cond, exp.Between(this=_col("f", "month"), low=exp.Literal.number(m1), high=exp.Literal.number(m2)),
                                copy=False)
            return exp.Between(this=self._period_index(model), low=exp.Literal.number(y1 * 100 + m1), high=exp.Literal.number(y2 * 100 + m2))
        if g == "quarter":
            # quarterly rows count when the quarter ends inside the range
            return exp.Between(this=self._period_index(model), low=exp.Literal.number(y1 * 100 + m1), high=exp.Literal.number(y2 * 100 + m2))
        if g == "day":
            last = calendar.monthrange(y2, m2)[1]
            return exp.Between(
                this=_col("f", model.time.column or "date"),
                low=exp.cast(exp.Literal.string(f"{y1:04d}-{m1:02d}-01"), "DATE"),
                high=exp.cast(exp.Literal.string(f"{y2:04d}-{m2:02d}-{last:02d}"), "DATE"),
            )
        return None

    def _filter_condition(self, dim: Dimension, model: Model, values: list, exclude: bool) -> exp.Expression:
        if dim.kind == "flag":
            cond: exp.Expression = _parse(dim.expr_for(model.name))
            truthy = [v for v in values if v not in (False, "false", "否")]
            if not truthy:
                cond = exp.Not(this=cond)
        elif dim.match == "prefix" and dim.key:
            key = _parse(dim.key)
            parts = [exp.Like(this=key.copy(), expression=exp.Literal.string(f"{v}%")) for v in values]
            cond = parts[0] if len(parts) == 1 else exp.or_(*parts, copy=False)
            cond = exp.paren(cond, copy=False) if len(parts) > 1 else cond
        else:
            target = _parse(dim.expr_for(model.name))
            lits = [exp.Literal.string(str(v)) for v in values]
            cond = exp.EQ(this=target, expression=lits[0]) if len(lits) == 1 else exp.In(this=target, expressions=lits)
        return exp.Not(this=exp.paren(cond, copy=False)) if exclude else cond

    def _aliases_needed(self, model: Model, snippets: list[exp.Expression]) -> list[str]:
        """Join aliases referenced by snippets, with their prerequisites, in declaration order."""
        refs: set[str] = set()
        for s in snippets:
            for c in s.find_all(exp.Column):
                if c.table and c.table != "f":
                    refs.add(c.table)
        changed = True
        while changed:
            changed = False
            for a in list(refs):
                j = model.joins.get(a)
                if j is None:
                    raise CompileError(f"模型 {model.name} 无法关联 {a}")
                if j.via and j.via not in refs:
                    refs.add(j.via)
                    changed = True
        return [a for a in model.joins if a in refs]

    def aggregate(
        self,
        metric: Metric,
        q: StructuredQuery,
        tr: TimeRange | None,
        *,
        drop_filter: str | None = None,
        grain: str | None = None,
        with_having: bool = True,
        expr_override: str | None = None,
        extra_filters: list[str] | None = None,
    ) -> tuple[exp.Select, list[tuple[str, exp.Expression]]]:
        """One metric's aggregate: SELECT keys..., expr AS metric FROM model GROUP BY keys."""
        cat = self.cat
        model = cat.models[metric.model]
        grain = q.time.grain if (grain is None and q.time) else grain
        dims = [cat.dimensions[d] for d in q.dimensions]
        key_exprs: list[tuple[str, exp.Expression]] = [(d.name, _parse(d.expr_for(model.name))) for d in dims]
        key_exprs += self._time_keys(model, grain)
        conds: list[exp.Expression] = [_parse(f) for f in [*metric.filters, *(extra_filters or [])]]
        filtered_dims = set()
        asked = {f.dimension for f in q.filters} | set(q.dimensions)
        defaults = [Filter(dimension=d, values=v) for d, v in metric.default_filters.items() if d not in asked]
        for flt in [*q.filters, *defaults]:
            if flt.dimension == drop_filter:
                continue
            filtered_dims.add(flt.dimension)
            conds.append(self._filter_condition(cat.dimensions[flt.dimension], model, flt.values, flt.exclude))
        for total in model.totals:
            col = _col("f", total.column)
            if total.dimension in filtered_dims:
                continue
            if total.dimension in q.dimensions:
                conds.append(exp.NEQ(this=col, expression=exp.Literal.string(total.value)))
            else:
                conds.append(exp.EQ(this=col, expression=exp.Literal.string(total.value)))
        if tr is not None:
            tc = self._time_condition(model, tr)
            if tc is not None:
                conds.append(tc)
        value = _parse(expr_override or metric.expr)
        if metric.time_agg == "latest" and tr is not None and model.time.grain in ("month", "quarter"):
            conds.append(self._latest_condition(model, tr, grain, conds))
        # every tree below is freshly built and used once: the builders need not copy (copy=False)
        select = exp.select(*[e.copy().as_(a, copy=False) for a, e in key_exprs], value.as_(metric.name, copy=False),
                            copy=False).from_(_table(model.table, "f"), copy=False)
        aliases = self._aliases_needed(model, [e for _, e in key_exprs] + conds + [value])
        for a in aliases:
            j = model.joins[a]
            select = select.join(_table(j.table, a), on=_parse(j.condition), copy=False)
        if conds:
            select = select.where(exp.and_(*conds, copy=False), copy=False)
        if key_exprs:
            select = select.group_by(*[e.copy() for _, e in key_exprs], copy=False)
        if with_having:
            for h in q.having:
                if h.metric == metric.name:
                    op = {">": exp.GT, ">=": exp.GTE, "<": exp.LT, "<=": exp.LTE, "=": exp.EQ}[h.op]
                    select = select.having(op(this=_parse(metric.expr), expression=exp.Literal.number(h.value)), copy=False)
        return select, key_exprs

    def _latest_condition(self, model: Model, tr: TimeRange, grain: str | None, conds: list[exp.Expression]) -> exp.Expression:
        """Restrict a stock / year-to-date metric to the latest period in range (per year if by year)."""
        idx = self._period_index(model)
        if grain in ("quarter", "month") and not (grain == "month" and model.time.grain == "quarter"):
            return exp.true()
        inner = exp.select(exp.Max(this=idx.copy()), copy=False).from_(_table(model.table, "f"), copy=False)
        # conds already hold the time range; keep those that need no join
        plain = [c.copy() for c in conds if all(col.table in ("f", "") for col in c.find_all(exp.Column))]
        if plain:
            inner = inner.where(exp.and_(*plain, copy=False), copy=False)
        if grain == "year":
            inner = inner.group_by(_col("f", "year"), copy=False)
        return exp.In(this=idx.copy(), query=exp.Subquery(this=inner))

    # ------------------------------------------------------------------ compile
    def compile(self, q: StructuredQuery) -> CompiledQuery:
        key = q.model_dump_json()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return _copy_compiled(hit)
        compiled = self._compile(q)
        with self._lock:
            self._cache[key] = _copy_compiled(compiled)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def _compile(self, q: StructuredQuery) -> CompiledQuery:
        self.validate(q)
        cat = self.cat
        metrics = [cat.metrics[m] for m in q.metrics]
        tr = q.time
        grain = tr.grain if tr else None
        notes: list[str] = []
        ctes: list[tuple[str, exp.Select]] = []
        tables: list[str] = []


        key_names: list[str] = []
        columns: list[OutputColumn] = []
        for d in q.dimensions:
            columns.append(OutputColumn(d, cat.dimensions[d].label, None, "dimension"))
            key_names.append(d)
        if grain:
            for k in (["year"] if grain == "year" else ["year", grain]):
                columns.append(OutputColumn(k, TIME_LABELS[k], None, "time"))
                key_names.append(k)

        # one aggregate per metric
        for i, m in enumerate(metrics):
            sel, _ = self.aggregate(m, q, tr)
            ctes.append((f"m{i}", sel))
            columns.append(OutputColumn(m.name, m.label, m.unit, "metric"))
            if m.growth_metric and q.compare == "yoy":
                g = cat.metrics[m.growth_metric]
                gsel, _ = self.aggregate(g, q, tr)
                ctes.append((f"g{i}", gsel))
                columns.append(OutputColumn(f"{m.name}_growth_pct", g.label, "%", "compare"))

        extra_selects: list[exp.Expression] = []
        joins: list[tuple[str, exp.Expression]] = []

        def key_join(left: str, right: str, shift: dict[str, int] | None = None) -> exp.Expression:
            conds = [exp.EQ(this=_col(left, k), expression=_col(right, k)) for k in q.dimensions]
            if grain:
                if shift:
                    conds.append(_shifted_period_eq(left, right, grain, shift))
                else:
                    for k in (["year"] if grain == "year" else ["year", grain]):
                        conds.append(exp.EQ(this=_col(left, k), expression=_col(right, k)))
            return exp.and_(*conds, copy=False) if conds else exp.true()

        for i, m in enumerate(metrics[1:], start=1):
            joins.append((f"m{i}", key_join("m0", f"m{i}")))
        for i, m in enumerate(metrics):
            if m.growth_metric and q.compare == "yoy":
                joins.append((f"g{i}", key_join("m0", f"g{i}")))
                extra_selects.append(_col(f"g{i}", m.growth_metric).as_(f"{m.name}_growth_pct"))

        change_col: str | None = None
        if q.compare in ("yoy", "mom", "diff"):
            if tr is None:
                raise CompileError("同比、环比需要时间范围")
            if grain:
                unit = {"year": 12, "quarter": 3, "month": 1}[grain]
                months = unit if q.compare == "mom" else 12
            else:
                months = q.offset_months or (tr.months if q.compare == "mom" else 12)
            prev_tr = tr.shifted(months)
            prev_label = "上年同期" if q.compare != "mom" and not q.offset_months else ("上期" if q.compare == "mom" else "对比期")
            for i, m in enumerate(metrics):
                if m.growth_metric and q.compare == "yoy":
                    change_col = change_col or f"{m.name}_growth_pct"
                    continue
                sel, _ = self.aggregate(m, q, prev_tr, with_having=False)
                ctes.append((f"p{i}", sel))
                shift = {"year": 1} if grain == "year" else (
                    {"months": months} if grain else None)
                joins.append((f"p{i}", key_join(f"m{i}" if i == 0 else "m0", f"p{i}", shift)))
                cur, prev = _col(f"m{i}", m.name), _col(f"p{i}", m.name)
                extra_selects += [
                    prev.as_(f"{m.name}_prev"),
                    exp.Sub(this=cur.copy(), expression=prev.copy()).as_(f"{m.name}_diff"),
                    _parse(f"(m{i}.{m.name} / NULLIF(p{i}.{m.name}, 0) - 1) * 100").as_(f"{m.name}_growth_pct"),
                ]
                columns += [
                    OutputColumn(f"{m.name}_prev", f"{m.label}（{prev_label}）", m.unit, "compare"),
                    OutputColumn(f"{m.name}_diff", "增减额", m.unit, "compare"),
                    OutputColumn(f"{m.name}_growth_pct", "环比增长率" if q.compare == "mom" else "增长率", "%", "compare"),
                ]
                change_col = change_col or f"{m.name}_diff"
            notes.append(f"对比期：{prev_tr.start} 至 {prev_tr.end}")
        elif q.compare in ("share", "ratio"):
            m0 = metrics[0]
            if len(metrics) == 2:
                m1 = metrics[1]
                extra_selects.append(_parse(f"m0.{m0.name} / NULLIF(m1.{m1.name}, 0) * 100").as_("share_pct"))
                columns.append(OutputColumn("share_pct", f"{m0.label}占{m1.label}比重", "%", "compare"))
            elif q.denominator or q.share_of:
                if q.denominator:  # the same metric over other members ("占全国的比重")
                    denom_dims = {f.dimension for f in q.denominator}
                    base = q.model_copy(update={"filters": [f for f in q.filters if f.dimension not in denom_dims]
                                                + list(q.denominator)})
                    sel, _ = self.aggregate(m0, base, tr)
                    total_label = f"{m0.label}（分母）"
                else:  # the same metric without the filter that picked the part
                    sel, _ = self.aggregate(m0, _without_dimension(q, q.share_of), tr, drop_filter=q.share_of)
                    total_label = f"{m0.label}（合计）"
                ctes.append(("t0", sel))
                joins.append(("t0", key_join("m0", "t0")))
                extra_selects += [
                    _col("t0", m0.name).as_(f"{m0.name}_total"),
                    _parse(f"m0.{m0.name} / NULLIF(t0.{m0.name}, 0) * 100").as_("share_pct"),
                ]
                columns += [
                    OutputColumn(f"{m0.name}_total", total_label, m0.unit, "compare"),
                    OutputColumn("share_pct", "占比", "%", "compare"),
                ]
            elif q.dimensions:
                part = [k for k in key_names if k not in q.dimensions]
                window = exp.Window(
                    this=exp.Sum(this=_col("m0", m0.name)),
                    partition_by=[_col("m0", k) for k in part] or None,
                )
                extra_selects.append(
                    exp.Mul(this=exp.Div(this=_col("m0", m0.name), expression=exp.func("NULLIF", window, exp.Literal.number(0))), expression=exp.Literal.number(100)).as_("share_pct")
                )
                columns.append(OutputColumn("share_pct", "占比", "%", "compare"))
            else:
                raise CompileError("请说明占谁的比重，例如“占一般公共预算支出的比重”或“各部门占比”")
        elif q.compare == "execution":
            for i, m in enumerate(metrics):
                plan = cat.metrics[m.plan_metric]
                plan_q = q.model_copy(update={"having": []})
                plan_grain = "year" if grain else None
                plan_tr = None
                if tr:
                    (y1, _), (y2, _) = tr.start_ym, tr.end_ym
                    plan_tr = TimeRange(start=f"{y1}-01", end=f"{y2}-12", grain=plan_grain)
                sel, _ = self.aggregate(plan, plan_q.model_copy(update={"time": plan_tr}), plan_tr, grain=plan_grain,
                                        extra_filters=m.plan_filters)
                ctes.append((f"b{i}", sel))
                conds = [exp.EQ(this=_col("m0", k), expression=_col(f"b{i}", k)) for k in q.dimensions]
                if grain:
                    conds.append(exp.EQ(this=_col("m0", "year"), expression=_col(f"b{i}", "year")))
                joins.append((f"b{i}", exp.and_(*conds, copy=False) if conds else exp.true()))
                extra_selects += [
                    _col(f"b{i}", plan.name).as_(f"{plan.name}"),
                    _parse(f"m{i}.{m.name} / NULLIF(b{i}.{plan.name}, 0) * 100").as_(f"{m.name}_execution_pct"),
                ]
                columns += [
                    OutputColumn(plan.name, plan.label, plan.unit, "compare"),
                    OutputColumn(f"{m.name}_execution_pct", "预算执行率", "%", "compare"),
                ]

        # assemble
        if len(ctes) == 1 and not extra_selects:
            final: exp.Select = ctes[0][1]
        else:
            projections = [_col("m0", k) for k in key_names]
            projections += [_col(f"m{i}", m.name) for i, m in enumerate(metrics)]
            projections += extra_selects
            final = exp.select(*projections, copy=False).from_("m0", copy=False)
            for alias, on in joins:
                final = final.join(alias, on=on, join_type="left", copy=False)
            for alias, sel in ctes:
                final = final.with_(alias, as_=sel, copy=False)
            if q.change and change_col:
                op = exp.LT if q.change == "decline" else exp.GT
                final = final.where(op(this=_change_expression(metrics, q.compare), expression=exp.Literal.number(0)), copy=False)

        # ordering
        order: list[exp.Ordered] = []
        for ob in q.order_by:
            target = _order_target(ob.field, columns, metrics)
            if target is None:
                raise CompileError(f"无法按“{ob.field}”排序")
            order.append(exp.Ordered(this=exp.column(target), desc=ob.desc))
        if not order and grain:
            order = [exp.Ordered(this=exp.column(k), desc=False)
                     for k in (["year"] if grain == "year" else ["year", grain])]
        if not order and q.dimensions and not q.count_groups:
            order = [exp.Ordered(this=exp.column(metrics[0].name), desc=True)]
        if order:
            final = final.order_by(*order, copy=False)
        if q.limit:
            final = final.limit(q.limit, copy=False)
        if q.count_groups:
            dim = cat.dimensions[q.dimensions[0]] if q.dimensions else None
            label = f"{dim.label}数" if dim else "数量"
            inner = final.copy()
            final = exp.select(exp.Count(this=exp.Star()).as_("group_count")).from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("g"))))
            columns = [OutputColumn("group_count", label, (dim.count_unit if dim else None) or "个", "metric")]
        cte_names = {c for c, _ in ctes}
        for t in final.find_all(exp.Table):
            if t.name not in tables and t.name not in cte_names:
                tables.append(t.name)
        sql = final.sql(dialect=DIALECT, pretty=True)
        return CompiledQuery(sql=sql, columns=columns, tables=tables, metrics=list(q.metrics), notes=notes)


def _copy_compiled(c: CompiledQuery) -> CompiledQuery:
    return CompiledQuery(sql=c.sql, columns=[replace(col) for col in c.columns], tables=list(c.tables),
                         metrics=list(c.metrics), notes=list(c.notes))


def _order_target(field_name: str, columns: list[OutputColumn], metrics: list[Metric]) -> str | None:
    names = [c.name for c in columns]
    if field_name in names:
        return field_name
    for suffix in ("growth_pct", "diff", "execution_pct", "prev", "total"):
        if field_name == suffix:
            cand = f"{metrics[0].name}_{suffix}"
            if cand in names:
                return cand
    if field_name in ("share", "share_pct") and "share_pct" in names:
        return "share_pct"
    if field_name == "execution":
        cand = f"{metrics[0].name}_execution_pct"
        return cand if cand in names else None
    return None


def _change_expression(metrics: list[Metric], compare: str | None) -> exp.Expression:
    m = metrics[0]
    if m.growth_metric and compare == "yoy":
        return _col("g0", m.growth_metric)
    return _parse(f"m0.{m.name} - p0.{m.name}")


def _without_dimension(q: StructuredQuery, dimension: str) -> StructuredQuery:
    return q.model_copy(update={"filters": [f for f in q.filters if f.dimension != dimension]})


def _shifted_period_eq(left: str, right: str, grain: str, shift: dict[str, int]) -> exp.Expression:
    """left period = right period + shift (year grain: years; else: months)."""
    if grain == "year":
        return _parse(f"{left}.year = {right}.year + {shift.get('year', 1)}")
    months = shift["months"]
    if grain == "quarter":
        return _parse(f"{left}.year * 12 + {left}.quarter * 3 = {right}.year * 12 + {right}.quarter * 3 + {months}")
    return _parse(f"{left}.year * 12 + {left}.month = {right}.year * 12 + {right}.month + {months}")
