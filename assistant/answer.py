"""Turn an executed query into the answer object: Chinese text with units, chart spec, sources."""
from __future__ import annotations

import math
from typing import Any

from semantic_layer.catalogue import Catalogue
from semantic_layer.compiler import CompiledQuery, OutputColumn
from semantic_layer.query import StructuredQuery

MONEY = {"元": 1.0, "万元": 1e4, "亿元": 1e8}


def _trim(x: float, digits: int = 2) -> str:
    s = f"{x:,.{digits}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def format_value(value: Any, unit: str | None) -> str:
    """A number with a sensible unit: 209900 万元 → 20.99亿元; 15.1 % → 15.1%."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "无数据"
    if not isinstance(value, (int, float)):
        return str(value)
    if unit in MONEY:
        yuan = value * MONEY[unit]
        if abs(yuan) >= 1e8:
            return f"{_trim(yuan / 1e8)}亿元"
        if abs(yuan) >= 1e4:
            return f"{_trim(yuan / 1e4)}万元"
        return f"{_trim(yuan)}元"
    if unit == "%":
        return f"{_trim(value, 1)}%"
    if unit in ("家", "笔", "个", "人", "户"):
        return f"{_trim(value, 0)}{unit}"
    if unit == "分":
        return f"{_trim(value, 1)}分"
    return f"{_trim(value)}{unit or ''}"


def _period(row: dict, grain: str | None) -> str:
    if grain == "month":
        return f"{row['year']}年{row['month']}月"
    if grain == "quarter":
        return f"{row['year']}年第{row['quarter']}季度"
    if grain == "year":
        return f"{row['year']}年"
    return ""


def _points_phrase(diff: float | None) -> str:
    """A change of a rate: in 百分点, never as a percent of a percent."""
    if diff is None:
        return "对比期无数据"
    if abs(diff) < 0.05:
        return "基本持平"
    return f"{'提高' if diff > 0 else '回落'}{_trim(abs(diff), 1)}个百分点"


def _growth_phrase(value: float | None, word_up: str = "增长", word_down: str = "下降") -> str:
    if value is None:
        return "无法计算增速（对比期无数据）"
    if abs(value) < 0.05:
        return "基本持平"
    return f"{word_up}{_trim(abs(value), 1)}%" if value > 0 else f"{word_down}{_trim(abs(value), 1)}%"


class AnswerWriter:
    """Writes the Chinese sentence, the chart spec and the sources for one answer."""

    def __init__(self, catalogue: Catalogue, member_names: dict[tuple[str, str], str],
                 member_attrs: dict[tuple[str, str], dict] | None = None):
        self.cat = catalogue
        self.member_names = member_names
        self.member_attrs = member_attrs or {}

    def scope(self, q: StructuredQuery) -> str:
        parts = []
        for f in q.filters:
            dim = self.cat.dimensions[f.dimension]
            if dim.kind == "flag":
                word = dim.flag_words[0] if dim.flag_words else dim.label
                parts.append(word if f.values and f.values[0] not in (False, "false") else f"非{word}")
                continue
            names = [self.member_names.get((f.dimension, str(v)), str(v)) for v in f.values]
            if f.dimension == "region" and names == ["地方合计"]:
                names = ["全国（地方合计）"]
            parts.append("、".join(names))
        return "".join(p for p in parts)

    def subject_label(self, q: StructuredQuery) -> str:
        """'教育支出' rather than '教育支出一般公共预算支出'; '广东税收收入' for a yearbook line."""
        m0 = self.cat.metrics[q.metrics[0]]
        named = [f for f in q.filters if f.dimension == m0.requires
                 or (self.cat.dimensions[f.dimension].match == "prefix" and len(f.values) == 1
                     and self._is_default_metric(f.dimension, str(f.values[0]), m0.name))]
        if len(q.metrics) == 1 and named:
            rest = q.model_copy(update={"filters": [f for f in q.filters if f not in named]})
            return self.scope(rest) + self.scope(q.model_copy(update={"filters": named}))
        return f"{self.scope(q)}{m0.label}"

    def _is_default_metric(self, dimension: str, key: str, metric: str) -> bool:
        rule = self.cat.dimensions[dimension].default_metric
        if rule is None or isinstance(rule, str):
            return rule == metric
        attrs = self.member_attrs.get((dimension, key), {})
        return rule.map.get("|".join(str(attrs.get(b, "")) for b in rule.by)) == metric

    def text(self, q: StructuredQuery, compiled: CompiledQuery, rows: list[dict]) -> str:
        cat = self.cat
        time_label = q.time.label if q.time and q.time.label else (f"{q.time.start}至{q.time.end}" if q.time else "")
        if q.time and q.time.label and q.time.end[:4] == q.time.start[:4] and not q.time.label.endswith("月") \
                and int(q.time.end[5:]) < 12 and int(q.time.start[5:]) == 1 and "季度" not in q.time.label and "半年" not in q.time.label:
            time_label = f"{q.time.start[:4]}年1—{int(q.time.end[5:])}月"
        scope = self.scope(q)
        m0 = cat.metrics[q.metrics[0]]
        subject = f"{time_label}{self.subject_label(q)}"
        cols = {c.name: c for c in compiled.columns}
        if not rows or not q.count_groups and len(rows) == 1 and all(rows[0].get(m) is None for m in q.metrics):
            return f"没有查到{subject}的数据（请确认时间范围内有数据，演示数据截至{self.cat.as_of}）。"
        if q.count_groups:
            c = compiled.columns[0]
            h = q.having[0] if q.having else None
            cond = ""
            if h:
                hm = cat.metrics[h.metric]
                op = {">": "超过", ">=": "不低于", "<": "低于", "<=": "不超过", "=": "等于"}[h.op]
                cond = f"{hm.label}{op}{format_value(h.value, hm.unit)}的"
            dim = cat.dimensions[q.dimensions[0]].label if q.dimensions else ""
            return f"{time_label}{scope}{cond}{dim}共有{format_value(rows[0][c.name], c.unit)}。"
        grain = q.time.grain if q.time else None
        if not q.dimensions and not grain:
            return self._single(q, compiled, rows[0], subject, cols)
        # series or breakdown
        items = []
        for r in rows[:12]:
            label = " ".join(str(r[d]) for d in q.dimensions if r.get(d) is not None)
            period = _period(r, grain)
            name = (period + label) if period else label
            val = format_value(r[m0.name], m0.unit)
            extra = ""
            if q.compare in ("yoy", "mom", "diff") and m0.unit == "%" and f"{m0.name}_diff" in r:
                extra = f"（{_points_phrase(r[f'{m0.name}_diff'])}）"
            elif q.compare in ("yoy", "mom", "diff") and f"{m0.name}_growth_pct" in r:
                extra = f"（{_growth_phrase(r[f'{m0.name}_growth_pct'])}）"
            elif q.compare in ("share", "ratio") and "share_pct" in r:
                extra = f"（占{format_value(r['share_pct'], '%')}）"
            elif q.compare == "execution" and f"{m0.name}_execution_pct" in r:
                extra = f"（执行率{format_value(r[f'{m0.name}_execution_pct'], '%')}）"
            items.append(f"{name}：{val}{extra}" if name else f"{val}{extra}")
        more = f"等，共{len(rows)}项" if len(rows) > 12 else ""
        if q.limit == 1 and q.dimensions and q.order_by:
            dim = cat.dimensions[q.dimensions[0]].label
            word = "最高" if q.order_by[0].desc else "最低"
            if q.order_by[0].field.endswith("growth_pct"):
                word = "增长最快" if q.order_by[0].desc else "增长最慢"
            return f"{subject}{word}的{dim}是{items[0]}。"
        by = "、".join(cat.dimensions[d].label for d in q.dimensions)
        head = f"{subject}" + (f"按{by}" if by else "")
        if q.change:
            head = f"{subject}{'下降' if q.change == 'decline' else '增长'}的{by}有{len(rows)}个"
        return f"{head}：" + "；".join(items) + more + "。"

    def _single(self, q, compiled, row: dict, subject: str, cols: dict[str, OutputColumn]) -> str:
        cat = self.cat
        parts = []
        for name in q.metrics:
            m = cat.metrics[name]
            parts.append((m, row.get(name)))
        m0, v0 = parts[0]
        text = f"{subject}为{format_value(v0, m0.unit)}"
        if q.compare in ("yoy", "mom", "diff"):
            text += self._change_text(q, m0, row)
        for m, v in parts[1:]:
            if q.compare not in ("share", "ratio"):
                text += f"；{m.label}为{format_value(v, m.unit)}"
                if q.compare in ("yoy", "mom", "diff"):
                    text += self._change_text(q, m, row)
        if q.compare in ("share", "ratio"):
            if len(parts) > 1:
                m1, v1 = parts[1]
                text += f"，{m1.label}为{format_value(v1, m1.unit)}，占比{format_value(row.get('share_pct'), '%')}"
            else:
                total = row.get(f"{m0.name}_total")
                whole = self.scope(q.model_copy(update={"filters": q.denominator})) if q.denominator else f"{m0.label}总额"
                text += f"，占{whole}（{format_value(total, m0.unit)}）的{format_value(row.get('share_pct'), '%')}"
        elif q.compare == "execution":
            plan = cat.metrics[m0.plan_metric]
            text += f"，{plan.label}为{format_value(row.get(plan.name), plan.unit)}，预算执行率为{format_value(row.get(f'{m0.name}_execution_pct'), '%')}"
        return text + "。"

    @staticmethod
    def _change_text(q: StructuredQuery, m, row: dict) -> str:
        """'，同比增长15.1%（增加2.75亿元）' for one metric of a comparison row."""
        g = row.get(f"{m.name}_growth_pct")
        if m.growth_metric and q.compare == "yoy":
            return f"，按可比价计算{_growth_phrase(g)}"
        diff = row.get(f"{m.name}_diff")
        word = "环比" if q.compare == "mom" else ("同比" if not q.offset_months else "比对比期")
        if m.unit == "%":
            return f"，{word}{_points_phrase(diff)}"
        if diff is None:
            return f"，{word}{_growth_phrase(None)}"
        more = "增加" if diff >= 0 else "减少"
        return f"，{word}{_growth_phrase(g)}（{more}{format_value(abs(diff), m.unit)}）"

    def chart(self, q: StructuredQuery, compiled: CompiledQuery, rows: list[dict]) -> dict | None:
        if not rows or q.count_groups:
            return None
        m0 = self.cat.metrics[q.metrics[0]]
        grain = q.time.grain if q.time else None
        y_field = m0.name
        unit = m0.unit
        if q.compare in ("share", "ratio") and (q.dimensions or len(rows) > 1):
            y_field, unit = "share_pct", "%"
        if grain and not q.dimensions:
            x = [_period(r, grain) for r in rows]
            series = [{"name": m0.label, "values": [r.get(y_field) for r in rows]}]
            return {"type": "line", "title": f"{m0.label}走势", "x_label": "时间", "y_label": unit, "unit": unit,
                    "x": x, "series": series}
        if q.dimensions:
            d = q.dimensions[0]
            x = [" ".join(str(r.get(k)) for k in q.dimensions) + (" " + _period(r, grain) if grain else "") for r in rows[:50]]
            kind = "pie" if q.compare in ("share",) and not grain and len(rows) <= 12 else "bar"
            series = [{"name": m0.label if y_field == m0.name else "占比", "values": [r.get(y_field) for r in rows[:50]]}]
            return {"type": kind, "title": f"{m0.label}（按{self.cat.dimensions[d].label}）", "x_label": self.cat.dimensions[d].label,
                    "y_label": unit, "unit": unit, "x": x, "series": series}
        if q.compare in ("yoy", "mom", "diff") and rows[0].get(f"{m0.name}_prev") is not None:
            label = "上期" if q.compare == "mom" else "上年同期"
            return {"type": "bar", "title": f"{m0.label}对比", "x_label": "", "y_label": unit, "unit": unit,
                    "x": [label, "本期"], "series": [{"name": m0.label, "values": [rows[0].get(f"{m0.name}_prev"), rows[0].get(m0.name)]}]}
        return None

    def sources(self, compiled: CompiledQuery, q: StructuredQuery | None) -> list[dict]:
        out: list[dict] = []
        metric_names = list(q.metrics) if q else []
        if q and q.compare == "execution":
            metric_names += [self.cat.metrics[m].plan_metric for m in q.metrics if self.cat.metrics[m].plan_metric]
        if q:
            metric_names += [self.cat.metrics[m].growth_metric for m in q.metrics if self.cat.metrics[m].growth_metric and q.compare == "yoy"]
        for name in metric_names:
            m = self.cat.metrics[name]
            out.append({"kind": "metric", "name": m.name, "label": m.label, "definition": m.description, "unit": m.unit})
        for t in compiled.tables:
            meta = self.cat.tables.get(t)
            if meta is None:
                continue
            out.append({"kind": "table", "name": t, "label": meta.label, "department": meta.source.department,
                        "system": meta.source.system, "update_frequency": meta.update_frequency,
                        "as_of": meta.as_of or self.cat.as_of})
        return out
