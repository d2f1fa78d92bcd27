"""Scorer for the 有数 benchmark (eval/questions.jsonl).

Execution accuracy as in text-to-SQL benchmarks, adapted to what an answer object carries:
the predicted ``rows`` / ``columns`` (with units) are compared with the result set of the
item's ``gold_sql`` run on the same DuckDB database. On top of that:

* clarify / refuse accuracy (the prediction's ``status`` against the item's ``expect``);
* valid-SQL rate (answered, ``sql`` present, read-only, and it executes on the database);
* schema-hallucination rate (predicted SQL referencing tables / columns that the catalogue
  does not have — extracted with sqlglot);
* latency p50 / p95 from ``timings_ms.total``; model calls and tokens from ``llm``;
* breakdowns by tag, by expected behaviour, by split and by mode.

Result-set comparison (``compare_result``):

* the number of rows must be equal;
* every gold column must be matched by a *distinct* predicted column; extra predicted
  columns are allowed;
* numbers match with relative tolerance ``rel_tol`` (default 1e-6) after a per-column scale
  factor: 元/万元/亿元 (×10^k, k ∈ {-8,-4,0,4,8}) or ratio vs percent (×100, ×0.01). Where
  the gold column's unit is known from its name (``*_yuan`` / ``*_wan`` / ``*_yi`` /
  ``*_pct``) *and* the predicted column declares a unit, the factor must agree with the
  declared unit (a value in 元 labelled 万元 is wrong: the answer text would be off by 10^4);
* strings match exactly after ``strip()``; a number may be given as a string with a unit
  suffix ("2021年", "15.1%");
* NULL matches only NULL (None or NaN);
* unless the item is ``ordered``, rows are compared as a multiset.

An item whose gold SQL fails, returns no rows, or returns only NULLs is *broken*: it is
reported and not scored. Items may carry ``gold_sql_alt`` (a list of further acceptable
gold queries, for genuinely two-way readings); the prediction is right if it matches any.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import re
import statistics
import threading
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Sequence

import sqlglot
from sqlglot import exp

EXPECT_TO_STATUS = {"answer": "answered", "clarify": "clarify", "refuse": "refused"}
_STATUS_ALIASES = {"refuse": "refused", "answer": "answered", "clarification": "clarify"}

# Scale factors a predicted numeric column may carry relative to the gold column.
UNIT_FACTORS: tuple[float, ...] = (1.0, 1e4, 1e-4, 1e8, 1e-8)
RATIO_FACTORS: tuple[float, ...] = (100.0, 0.01)
ALL_FACTORS: tuple[float, ...] = UNIT_FACTORS + RATIO_FACTORS

# The warehouse contract (/work/shared/spec/warehouse.md) plus the derived view the
# semantic layer uses. Gold SQL must stay inside this.
CONTRACT_SCHEMA: dict[str, set[str]] = {
    "dim_subject": {"subject_code", "subject_name", "parent_code", "level", "direction", "budget_type"},
    "dim_department": {"dept_code", "dept_name", "dept_type"},
    "dim_industry": {"industry_code", "industry_name", "is_leading", "sector"},
    "dim_enterprise": {
        "enterprise_id", "enterprise_name", "credit_code", "industry_code", "scale", "ownership",
        "is_above_scale", "established_date", "registered_capital_wan", "status",
    },
    "dim_project": {
        "project_id", "project_name", "dept_code", "subject_code", "project_type", "start_year",
        "total_budget_wan",
    },
    "fact_budget_revenue": {"year", "month", "subject_code", "amount_wan"},
    "fact_budget_expenditure": {"year", "month", "dept_code", "subject_code", "economic_class", "amount_wan"},
    "fact_budget_plan": {"year", "budget_type", "direction", "subject_code", "dept_code", "plan_type", "amount_wan"},
    "v_budget_plan_effective": {"year", "budget_type", "direction", "subject_code", "dept_code", "amount_wan"},
    "fact_tax_payment": {"year", "month", "enterprise_id", "subject_code", "amount_yuan"},
    "fact_enterprise_operation": {"year", "month", "enterprise_id", "revenue_wan", "industrial_output_wan", "employees"},
    "fact_gdp": {"year", "quarter", "sector", "value_yi_ytd", "growth_pct_ytd"},
    "fact_legal_entity": {"year", "month", "industry_code", "new_count"},
    "fact_payment": {
        "payment_id", "pay_date", "dept_code", "project_id", "subject_code", "economic_class",
        "payee_name", "payee_type", "amount_yuan", "purpose",
    },
    "fact_project_performance": {"project_id", "year", "budget_wan", "spent_wan", "self_score", "grade"},
    "pub_region_budget": {"year", "region", "direction", "item", "value_yi", "source_table"},
}


def catalogue_schema() -> dict[str, set[str]]:
    """Tables and columns the product's catalogue declares (falls back to the contract)."""
    return {t: set(c) for t, c in _catalogue_schema().items()}


@lru_cache(maxsize=1)
def _catalogue_schema() -> dict[str, frozenset[str]]:
    try:
        from semantic_layer.catalogue import Catalogue

        schema = {t.lower(): frozenset(c.lower() for c in cols)
                  for t, cols in Catalogue.load().table_columns().items()}
        if schema:
            return schema
    except Exception:  # pragma: no cover - catalogue missing or invalid
        pass
    return {t: frozenset(c) for t, c in CONTRACT_SCHEMA.items()}


# --------------------------------------------------------------------------------------
# I/O helpers
# --------------------------------------------------------------------------------------
def load_jsonl(path: str | Path) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: 不是合法的 JSON：{e}") from e
    return out


# --------------------------------------------------------------------------------------
# Value comparison
# --------------------------------------------------------------------------------------
_NUM_STR = re.compile(
    r"\s*([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*"
    r"(年|月|日|季度|%|％|家|笔|个|人|户|元|万元|亿元|分)?\s*"
)


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _as_number(v: Any) -> float | None:
    """A float for numbers (and numeric strings such as '2021年', '15.1%'), else None."""
    if isinstance(v, bool) or _is_null(v):
        return None
    if isinstance(v, (int, float, Decimal)):
        return float(v)
    if isinstance(v, str):
        m = _NUM_STR.fullmatch(v)
        if m:
            try:
                return float(m.group(1).replace(",", ""))
            except ValueError:
                return None
    return None


def _is_numeric_value(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool) and not _is_null(v)


_TRUE = {"true", "t", "1", "是", "yes", "y"}
_FALSE = {"false", "f", "0", "否", "no", "n"}


def values_match(gold: Any, pred: Any, factor: float = 1.0, rel_tol: float = 1e-6) -> bool:
    """Does ``pred`` equal ``gold`` (× ``factor`` for numbers)?"""
    if _is_null(gold):
        return _is_null(pred)
    if _is_null(pred):
        return False
    if isinstance(gold, bool):
        if isinstance(pred, bool):
            return pred == gold
        s = str(pred).strip().lower()
        return s in (_TRUE if gold else _FALSE)
    if _is_numeric_value(gold):
        p = _as_number(pred)
        if p is None or math.isnan(p):
            return False
        expected = float(gold) * factor
        return math.isclose(p, expected, rel_tol=rel_tol, abs_tol=1e-12)
    if isinstance(gold, (_dt.datetime, _dt.date)):
        if isinstance(pred, (_dt.datetime, _dt.date)):
            return pred == gold
        return str(pred).strip() in {gold.isoformat(), str(gold)}
    g = str(gold).strip()
    if isinstance(pred, bool):
        return False
    return g == str(pred).strip()


# --------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------
def money_factor_of_unit(unit: str | None) -> float | None:
    """元 per unit for a money unit ('元' → 1, '万元' → 1e4, '亿元' → 1e8), else None."""
    if not unit:
        return None
    u = str(unit).strip()
    if "元" in u:
        if "亿" in u:
            return 1e8
        if "千万" in u:
            return 1e7
        if "万" in u:
            return 1e4
        if "千" in u:
            return 1e3
        return 1.0
    if u in ("万", "亿"):
        return 1e4 if u == "万" else 1e8
    return None


def is_percent_unit(unit: str | None) -> bool:
    return bool(unit) and str(unit).strip() in {"%", "％", "百分比", "百分点", "percent", "pct"}


def gold_column_unit(name: str) -> str | None:
    """Unit of a gold column from its name's suffix (the question set's convention)."""
    n = (name or "").lower()
    if n.endswith("_yuan"):
        return "元"
    if n.endswith("_wan"):
        return "万元"
    if n.endswith("_yi") or n.endswith("_yi_ytd"):
        return "亿元"
    if n.endswith("_pct") or n.endswith("_pct_ytd"):
        return "%"
    return None


def allowed_factors(gold_name: str, pred_unit: str | None) -> tuple[float, ...]:
    """Scale factors (pred = gold × f) compatible with what the two columns say about units."""
    g_unit = gold_column_unit(gold_name)
    g_money = money_factor_of_unit(g_unit)
    p_money = money_factor_of_unit(pred_unit)
    if g_money is not None and p_money is not None:
        return (g_money / p_money,)
    if g_unit == "%" and is_percent_unit(pred_unit):
        return (1.0,)
    if g_money is not None and is_percent_unit(pred_unit):
        return ()
    if g_unit == "%" and p_money is not None:
        return ()
    return ALL_FACTORS


# --------------------------------------------------------------------------------------
# Result-set comparison
# --------------------------------------------------------------------------------------
def _sort_key(v: Any) -> tuple:
    if _is_null(v):
        return (0, 0.0, "")
    n = v if _is_numeric_value(v) else _as_number(v)
    if n is not None and not isinstance(v, bool):
        return (1, float(n), "")
    return (2, 0.0, str(v).strip())


def _column_compatible(gcol: list, pcol: list, factor: float, ordered: bool, rel_tol: float) -> bool:
    if ordered:
        return all(values_match(g, p, factor, rel_tol) for g, p in zip(gcol, pcol))
    numeric = any(_is_numeric_value(g) for g in gcol)
    if numeric:
        gs = sorted(gcol, key=_sort_key)
        # pred / factor has the same order as gold when factor > 0
        ps = sorted(pcol, key=_sort_key)
        return all(values_match(g, p, factor, rel_tol) for g, p in zip(gs, ps))
    gs = sorted(gcol, key=lambda v: (_is_null(v), str(v).strip() if not _is_null(v) else ""))
    ps = sorted(pcol, key=lambda v: (_is_null(v), str(v).strip() if not _is_null(v) else ""))
    return all(values_match(g, p, factor, rel_tol) for g, p in zip(gs, ps))


def _rows_multiset_match(grows: Sequence[Sequence], prows: Sequence[Sequence],
                         mapping: list[tuple[int, float]], rel_tol: float) -> bool:
    used = [False] * len(prows)
    for g in grows:
        for k, p in enumerate(prows):
            if used[k]:
                continue
            if all(values_match(g[j], p[c], f, rel_tol) for j, (c, f) in enumerate(mapping)):
                used[k] = True
                break
        else:
            return False
    return True


@dataclass
class Match:
    ok: bool
    reason: str = ""
    mapping: list[tuple[int, float]] | None = None


def compare_result(
    gold_columns: Sequence[str],
    gold_rows: Sequence[Sequence],
    pred_columns: Sequence[dict | str] | None,
    pred_rows: Sequence[Sequence] | None,
    ordered: bool = False,
    rel_tol: float = 1e-6,
    check_units: bool = True,
    max_attempts: int = 20000,
) -> Match:
    """Compare a predicted result with the gold result (see the module docstring)."""
    pred_rows = [list(r) if isinstance(r, (list, tuple)) else [r] for r in (pred_rows or [])]
    gold_rows = [list(r) for r in gold_rows]
    if len(pred_rows) != len(gold_rows):
        return Match(False, f"行数不同：预测 {len(pred_rows)} 行，标准答案 {len(gold_rows)} 行")
    if not gold_rows:
        return Match(True, "均为空")
    width = max(len(r) for r in pred_rows)
    if any(len(r) != width for r in pred_rows):
        return Match(False, "预测结果各行列数不一致")
    pcols_meta = list(pred_columns or [])
    units: list[str | None] = []
    for i in range(width):
        meta = pcols_meta[i] if i < len(pcols_meta) else None
        units.append(meta.get("unit") if isinstance(meta, dict) else None)
    gcols = [[r[j] for r in gold_rows] for j in range(len(gold_columns))]
    pcols = [[r[c] for r in pred_rows] for c in range(width)]

    candidates: list[list[tuple[int, float]]] = []
    for j, gname in enumerate(gold_columns):
        numeric = any(_is_numeric_value(v) for v in gcols[j])
        cands = []
        for c in range(width):
            if numeric:
                factors = allowed_factors(gname, units[c]) if check_units else ALL_FACTORS
            else:
                factors = (1.0,)
            for f in factors:
                if _column_compatible(gcols[j], pcols[c], f, ordered, rel_tol):
                    cands.append((c, f))
        if not cands:
            return Match(False, f"标准答案的列「{gname}」在预测结果中找不到对应的列"
                                f"（示例值 {gcols[j][0]!r}）")
        candidates.append(cands)

    # Injective assignment of gold columns to predicted columns; for unordered results the
    # whole rows must then match as a multiset.
    order = sorted(range(len(candidates)), key=lambda j: len(candidates[j]))
    assignment: dict[int, tuple[int, float]] = {}
    attempts = 0

    def search(k: int) -> bool:
        nonlocal attempts
        attempts += 1
        if attempts > max_attempts:
            return False
        if k == len(order):
            mapping = [assignment[j] for j in range(len(candidates))]
            return ordered or _rows_multiset_match(gold_rows, pred_rows, mapping, rel_tol)
        j = order[k]
        taken = {c for c, _ in assignment.values()}
        for c, f in candidates[j]:
            if c in taken:
                continue
            assignment[j] = (c, f)
            if search(k + 1):
                return True
            del assignment[j]
        return False

    if search(0):
        return Match(True, "一致", [assignment[j] for j in range(len(candidates))])
    return Match(False, "各列都能找到候选，但整行组合对不上（行内数值错位或重复列）")


# --------------------------------------------------------------------------------------
# SQL analysis
# --------------------------------------------------------------------------------------
def parse_sql(sql: str) -> list[exp.Expression]:
    return [e for e in sqlglot.parse(sql, read="duckdb") if e is not None]


def is_read_only_query(sql: str) -> bool:
    try:
        stmts = parse_sql(sql)
    except Exception:
        return False
    if len(stmts) != 1:
        return False
    tree = stmts[0]
    if not isinstance(tree, exp.Query):
        return False
    bad = (exp.Insert, exp.Update, exp.Delete, exp.Drop, exp.Create, exp.Alter, exp.Merge, exp.Command)
    return not any(tree.find(t) for t in bad)


def sql_references(sql: str) -> tuple[set[str], set[tuple[str | None, str]]]:
    """(tables, columns) referenced by a query; CTE names are not tables.

    columns are (real table or None, column) — the table is resolved through aliases when
    the column is qualified with an alias of a real table."""
    tables, columns, _, _ = _analyse(sql)
    return tables, columns


def _analyse(sql: str):
    stmts = parse_sql(sql)
    cte_names: set[str] = set()
    derived: set[str] = set()
    alias_to_table: dict[str, str] = {}
    non_table_aliases: set[str] = set()
    tables: set[str] = set()
    for tree in stmts:
        for cte in tree.find_all(exp.CTE):
            cte_names.add(cte.alias_or_name.lower())
            ta = cte.args.get("alias")
            if isinstance(ta, exp.TableAlias):
                derived.update(c.name.lower() for c in ta.columns)
        for a in tree.find_all(exp.Alias):
            derived.add(a.alias.lower())
        for ta in tree.find_all(exp.TableAlias):
            derived.update(c.name.lower() for c in ta.columns)
        for sq in tree.find_all(exp.Subquery):
            if sq.alias:
                non_table_aliases.add(sq.alias.lower())
        for t in tree.find_all(exp.Table):
            if not isinstance(t.this, exp.Identifier):
                # table functions (range(), read_csv(), unnest …)
                if t.alias:
                    non_table_aliases.add(t.alias.lower())
                continue
            name = t.name.lower()
            if name in cte_names:
                non_table_aliases.add((t.alias or t.name).lower())
                continue
            tables.add(name)
            alias_to_table[(t.alias or t.name).lower()] = name
            alias_to_table.setdefault(name, name)
    columns: set[tuple[str | None, str]] = set()
    for tree in stmts:
        for c in tree.find_all(exp.Column):
            if isinstance(c.this, exp.Star):
                continue
            name = c.name.lower()
            if not name:
                continue
            q = c.table.lower() if c.table else None
            if q and q in alias_to_table and q not in non_table_aliases:
                columns.add((alias_to_table[q], name))
            elif q:
                columns.add((f"~{q}", name))  # qualified by a CTE / subquery alias
            else:
                columns.add((None, name))
    return tables, columns, derived, alias_to_table


def unknown_references(sql: str, schema: dict[str, set[str]] | None = None) -> list[str]:
    """Tables / columns of ``sql`` that ``schema`` does not have (e.g. 'table:foo', 'column:t.x').

    Columns are resolved per SELECT scope (sqlglot's scope analysis), so the same alias used
    for different tables in different CTEs is handled; select aliases, CTE / subquery output
    columns and correlated references are not counted as unknown. Raises sqlglot errors if
    the SQL does not parse."""
    schema = {t.lower(): {c.lower() for c in cols} for t, cols in (schema or catalogue_schema()).items()}
    tables, columns, derived, _ = _analyse(sql)
    unknown: list[str] = []
    for t in sorted(tables):
        if t not in schema:
            unknown.append(f"table:{t}")
    known_tables = [t for t in tables if t in schema]
    in_query = set().union(*(schema[t] for t in known_tables)) if known_tables else set()
    try:
        cols = _scoped_unknown_columns(sql, schema, derived, in_query)
    except Exception:  # scope analysis failed: fall back to query-wide resolution
        cols = []
        all_cols = set().union(*schema.values()) if schema else set()
        for tbl, col in sorted(columns, key=lambda x: (x[0] or "", x[1])):
            if tbl is None:
                if col not in in_query and col not in derived:
                    cols.append(f"column:{col}")
            elif tbl.startswith("~"):
                if col not in derived and col not in all_cols:
                    cols.append(f"column:{tbl[1:]}.{col}")
            elif tbl in schema and col not in schema[tbl]:
                cols.append(f"column:{tbl}.{col}")
    return unknown + sorted(set(cols))


def _scoped_unknown_columns(sql: str, schema: dict[str, set[str]], derived: set[str],
                            in_query: set[str]) -> list[str]:
    from sqlglot.optimizer.scope import Scope, traverse_scope

    out: list[str] = []
    for tree in parse_sql(sql):
        scopes = list(traverse_scope(tree))
        info: dict[int, tuple[dict[str, str | None], set[str], set[str]]] = {}
        for scope in scopes:
            sources: dict[str, str | None] = {}  # alias -> real table (None: CTE / subquery / function)
            outputs: set[str] = set()
            for alias, src in scope.sources.items():
                if isinstance(src, exp.Table):
                    sources[alias.lower()] = src.name.lower() if isinstance(src.this, exp.Identifier) else None
                elif isinstance(src, Scope):
                    sources[alias.lower()] = None
                    try:
                        names = [n.lower() for n in src.expression.named_selects]
                    except Exception:
                        names = []
                    outputs.update(names)
                    if "*" in names or not names or any(isinstance(e, exp.Star) or (
                            isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
                            for e in getattr(src.expression, "expressions", [])):
                        # SELECT * (… REPLACE …) FROM t: the source exposes t's columns
                        _, sub_here, sub_out = info.get(id(src), ({}, set(), set()))
                        outputs |= sub_here | sub_out
            here: set[str] = set()
            for t in sources.values():
                if t and t in schema:
                    here |= schema[t]
            info[id(scope)] = (sources, here, outputs)

        def visible(scope) -> tuple[dict[str, str | None], set[str], set[str]]:
            """Sources / columns of this scope and its enclosing scopes (correlated references)."""
            sources, here, outputs = {}, set(), set()
            s = scope
            while s is not None:
                src, h, o = info.get(id(s), ({}, set(), set()))
                for k, v in src.items():
                    sources.setdefault(k, v)
                here |= h
                outputs |= o
                s = s.parent
            return sources, here, outputs

        for scope in scopes:
            sources, here, outputs = visible(scope)
            for col in scope.columns:
                if isinstance(col.this, exp.Star):
                    continue
                if isinstance(scope.expression, exp.Select) and col.find_ancestor(exp.Select) is not scope.expression:
                    continue  # belongs to a nested subquery (its own scope)
                name, q = col.name.lower(), (col.table or "").lower()
                if not name:
                    continue
                if q and q in sources:
                    t = sources[q]
                    if t is None:
                        if name not in outputs and name not in derived:
                            out.append(f"column:{q}.{name}")
                    elif t in schema and name not in schema[t]:
                        out.append(f"column:{t}.{name}")
                elif q:
                    if name not in in_query and name not in derived:
                        out.append(f"column:{q}.{name}")
                elif name not in here and name not in outputs and name not in derived:
                    out.append(f"column:{name}")
    return out


# --------------------------------------------------------------------------------------
# Executing SQL
# --------------------------------------------------------------------------------------
def run_sql(con, sql: str, timeout_s: float | None = 60.0) -> tuple[list[str], list[tuple]]:
    cur = con.cursor()
    timer = None
    if timeout_s:
        timer = threading.Timer(timeout_s, cur.interrupt)
        timer.daemon = True
        timer.start()
    try:
        cur.execute(sql)
        rows = cur.fetchall()
        cols = [d[0] for d in (cur.description or [])]
        return cols, rows
    finally:
        if timer:
            timer.cancel()
        try:
            cur.close()
        except Exception:
            pass


@dataclass
class GoldResult:
    ok: bool
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    error: str = ""


def execute_gold(con, sql: str, timeout_s: float | None = 120.0) -> GoldResult:
    try:
        cols, rows = run_sql(con, sql, timeout_s)
    except Exception as e:  # noqa: BLE001 - any failure makes the item broken
        return GoldResult(False, error=f"标准 SQL 执行失败：{type(e).__name__}: {e}")
    if not rows:
        return GoldResult(False, cols, [], "标准 SQL 返回空结果")
    if all(_is_null(v) for r in rows for v in r):
        return GoldResult(False, cols, list(rows), "标准 SQL 只返回 NULL")
    return GoldResult(True, cols, list(rows))


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------
@dataclass
class ItemResult:
    id: str
    question: str
    expect: str
    status: str | None
    outcome: str  # correct | wrong | broken | missing
    reason: str = ""
    tags: list[str] = field(default_factory=list)
    split: str = ""
    mode: str = "unknown"
    ordered: bool = False
    sql: str | None = None
    sql_valid: bool | None = None
    unknown_refs: list[str] | None = None
    latency_ms: float | None = None
    llm_calls: int | None = None
    llm_tokens: int | None = None
    gold_row_count: int | None = None

    @property
    def correct(self) -> bool:
        return self.outcome == "correct"

    @property
    def scored(self) -> bool:
        return self.outcome != "broken"


@dataclass
class Report:
    overall: dict
    items: list[ItemResult]
    by_tag: dict[str, dict]
    by_expect: dict[str, dict] = field(default_factory=dict)
    by_split: dict[str, dict] = field(default_factory=dict)
    by_mode: dict[str, dict] = field(default_factory=dict)
    status_matrix: dict[str, dict[str, int]] = field(default_factory=dict)
    broken: list[dict] = field(default_factory=list)


def _norm_status(s: Any) -> str | None:
    if s is None:
        return None
    s = str(s).strip().lower()
    return _STATUS_ALIASES.get(s, s)


def _mode_of(pred: dict) -> str:
    for v in (pred.get("mode"), (pred.get("interpretation") or {}).get("mode")
              if isinstance(pred.get("interpretation"), dict) else None,
              (pred.get("llm") or {}).get("mode") if isinstance(pred.get("llm"), dict) else None):
        if v:
            return str(v)
    return "unknown"


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    if len(v) == 1:
        return float(v[0])
    pos = (len(v) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def _group_stats(items: Iterable[ItemResult]) -> dict:
    items = list(items)
    scored = [i for i in items if i.scored]
    correct = sum(i.correct for i in scored)
    return {
        "n": len(items),
        "scored": len(scored),
        "correct": correct,
        "broken": len(items) - len(scored),
        "accuracy": round(correct / len(scored), 4) if scored else None,
    }


def score_item(q: dict, pred: dict | None, con, schema: dict[str, set[str]] | None = None,
               rel_tol: float = 1e-6, execute_predicted_sql: bool = True,
               gold_cache: dict | None = None) -> ItemResult:
    expect = q.get("expect", "answer")
    res = ItemResult(
        id=str(q.get("id")), question=q.get("question", ""), expect=expect, status=None,
        outcome="wrong", tags=list(q.get("tags") or []), split=q.get("split", ""),
        ordered=bool(q.get("ordered")),
    )
    gold: list[GoldResult] = []
    if expect == "answer":
        sqls = [q.get("gold_sql")] + list(q.get("gold_sql_alt") or [])
        for k, s in enumerate(sqls):
            if not s:
                if k == 0:
                    gold.append(GoldResult(False, error="缺少 gold_sql"))
                continue
            if gold_cache is not None and s in gold_cache:
                gold.append(gold_cache[s])
            else:
                g = execute_gold(con, s)
                if gold_cache is not None:
                    gold_cache[s] = g
                gold.append(g)
        if not gold[0].ok:
            res.outcome = "broken"
            res.reason = gold[0].error
        else:
            res.gold_row_count = len(gold[0].rows)

    if pred is None:
        if res.outcome != "broken":
            res.outcome = "missing"
            res.reason = "没有该题的预测"
        return res

    res.status = _norm_status(pred.get("status"))
    res.mode = _mode_of(pred)
    res.sql = pred.get("sql")
    timings = pred.get("timings_ms") or {}
    if isinstance(timings, dict) and _as_number(timings.get("total")) is not None:
        res.latency_ms = float(_as_number(timings.get("total")))
    llm = pred.get("llm")
    if isinstance(llm, dict):
        res.llm_calls = int(llm["calls"]) if _as_number(llm.get("calls")) is not None else None
        res.llm_tokens = int(llm["tokens"]) if _as_number(llm.get("tokens")) is not None else None

    if res.sql:
        try:
            res.unknown_refs = unknown_references(res.sql, schema)
        except Exception:
            res.unknown_refs = None  # unparseable: counted by the valid-SQL rate instead
    if expect == "answer" and res.status == "answered":
        if not res.sql:
            res.sql_valid = False
        elif not is_read_only_query(res.sql):
            res.sql_valid = False
        elif execute_predicted_sql:
            try:
                run_sql(con, res.sql, timeout_s=60.0)
                res.sql_valid = True
            except Exception:
                res.sql_valid = False
        else:
            res.sql_valid = True

    if res.outcome == "broken":
        return res
    want = EXPECT_TO_STATUS.get(expect, expect)
    if res.status != want:
        res.outcome = "wrong"
        res.reason = f"状态为 {res.status}，应为 {want}"
        err = pred.get("error")
        if err:
            res.reason += f"（{str(err)[:80]}）"
        return res
    if expect != "answer":
        res.outcome = "correct"
        res.reason = "状态正确"
        return res
    reasons = []
    for g in gold:
        if not g.ok:
            continue
        m = compare_result(g.columns, g.rows, pred.get("columns"), pred.get("rows"),
                           ordered=res.ordered, rel_tol=rel_tol)
        if m.ok:
            res.outcome = "correct"
            res.reason = m.reason
            return res
        reasons.append(m.reason)
    res.outcome = "wrong"
    res.reason = reasons[0] if reasons else "无可用的标准答案"
    return res


def score_predictions(questions: list[dict], predictions: list[dict], con,
                      schema: dict[str, set[str]] | None = None, rel_tol: float = 1e-6,
                      execute_predicted_sql: bool = True) -> Report:
    """Score ``predictions`` (answer objects with ``id``) against ``questions`` on ``con``."""
    schema = schema or catalogue_schema()
    by_id: dict[str, dict] = {}
    for p in predictions:
        if p.get("id") is not None:
            by_id[str(p["id"])] = p
    cache: dict = {}
    items = [score_item(q, by_id.get(str(q.get("id"))), con, schema, rel_tol,
                        execute_predicted_sql, cache) for q in questions]

    scored = [i for i in items if i.scored]
    answer_items = [i for i in scored if i.expect == "answer"]
    with_sql = [i for i in items if i.sql]
    parsed = [i for i in with_sql if i.unknown_refs is not None]
    lat = [i.latency_ms for i in items if i.latency_ms is not None]
    calls = [i.llm_calls for i in items if i.llm_calls is not None]
    toks = [i.llm_tokens for i in items if i.llm_tokens is not None]
    predicted = [i for i in items if i.outcome != "missing" and i.status is not None]

    def acc(group: list[ItemResult]) -> float | None:
        return round(sum(i.correct for i in group) / len(group), 4) if group else None

    overall = {
        "questions": len(items),
        "predictions": len(predictions),
        "scored": len(scored),
        "broken": len(items) - len(scored),
        "missing": sum(i.outcome == "missing" for i in items),
        "correct": sum(i.correct for i in scored),
        "accuracy": acc(scored),
        "execution_accuracy": acc(answer_items),
        "clarify_accuracy": acc([i for i in scored if i.expect == "clarify"]),
        "refuse_accuracy": acc([i for i in scored if i.expect == "refuse"]),
        "answer_when_should_not": (
            round(sum(i.status == "answered" for i in scored if i.expect != "answer")
                  / max(1, sum(1 for i in scored if i.expect != "answer")), 4)
            if any(i.expect != "answer" for i in scored) else None),
        "refuse_or_clarify_when_should_answer": (
            round(sum(i.status in ("refused", "clarify") for i in answer_items) / len(answer_items), 4)
            if answer_items else None),
        "valid_sql_rate": (round(sum(bool(i.sql_valid) for i in answer_items) / len(answer_items), 4)
                           if answer_items else None),
        "schema_hallucination_rate": (round(sum(bool(i.unknown_refs) for i in parsed) / len(parsed), 4)
                                      if parsed else None),
        "predictions_with_sql": len(with_sql),
        "latency_ms_p50": _percentile(lat, 0.5),
        "latency_ms_p95": _percentile(lat, 0.95),
        "llm_calls_per_question": round(statistics.fmean(calls), 3) if calls else None,
        "llm_tokens_per_question": round(statistics.fmean(toks), 1) if toks else None,
        "llm_coverage": round(len(calls) / len(predicted), 4) if predicted else None,
    }
    by_tag: dict[str, list[ItemResult]] = defaultdict(list)
    by_expect: dict[str, list[ItemResult]] = defaultdict(list)
    by_split: dict[str, list[ItemResult]] = defaultdict(list)
    by_mode: dict[str, list[ItemResult]] = defaultdict(list)
    matrix: dict[str, Counter] = defaultdict(Counter)
    for i in items:
        for t in i.tags:
            by_tag[t].append(i)
        by_expect[i.expect].append(i)
        by_split[i.split or "-"].append(i)
        by_mode[i.mode].append(i)
        if i.scored:
            matrix[i.expect][i.status or "missing"] += 1
    return Report(
        overall=overall,
        items=items,
        by_tag={t: _group_stats(v) for t, v in sorted(by_tag.items())},
        by_expect={t: _group_stats(v) for t, v in sorted(by_expect.items())},
        by_split={t: _group_stats(v) for t, v in sorted(by_split.items())},
        by_mode={t: _group_stats(v) for t, v in sorted(by_mode.items())},
        status_matrix={k: dict(v) for k, v in matrix.items()},
        broken=[{"id": i.id, "question": i.question, "reason": i.reason}
                for i in items if i.outcome == "broken"],
    )


def score_files(questions_path: str | Path, predictions_path: str | Path, db_path: str | Path,
                split: str | None = None, **kw) -> Report:
    import duckdb

    questions = load_jsonl(questions_path)
    if split:
        questions = [q for q in questions if q.get("split") == split]
    predictions = load_jsonl(predictions_path)
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return score_predictions(questions, predictions, con, **kw)
    finally:
        con.close()


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------
def report_to_json(report: Report) -> dict:
    d = asdict(report)
    for item in d["items"]:
        item["correct"] = item["outcome"] == "correct"
    return d


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1 else f"{v:,.1f}"
    return str(v)


def _pct(v: Any) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def _group_table(title: str, groups: dict[str, dict]) -> list[str]:
    lines = [f"## {title}", "", "| 分组 | 题数 | 计分 | 正确 | 准确率 | 损坏 |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for k, s in groups.items():
        lines.append(f"| {k} | {s['n']} | {s['scored']} | {s['correct']} | {_pct(s['accuracy'])} | {s['broken']} |")
    lines.append("")
    return lines


def report_to_markdown(report: Report, max_failures: int = 60) -> str:
    o = report.overall
    lines = ["# 有数 评测报告", "", "## 总体", "", "| 指标 | 值 |", "| --- | ---: |"]
    rows = [
        ("题目数", o["questions"]), ("计分题数", o["scored"]), ("损坏题（不计分）", o["broken"]),
        ("缺少预测", o["missing"]), ("正确", o["correct"]), ("总体准确率", _pct(o["accuracy"])),
        ("执行准确率（应回答题）", _pct(o["execution_accuracy"])),
        ("澄清准确率", _pct(o["clarify_accuracy"])), ("拒答准确率", _pct(o["refuse_accuracy"])),
        ("不该答却作答", _pct(o["answer_when_should_not"])),
        ("该答却拒答/澄清", _pct(o["refuse_or_clarify_when_should_answer"])),
        ("有效 SQL 率", _pct(o["valid_sql_rate"])),
        ("模式幻觉率（引用目录外表/列）", _pct(o["schema_hallucination_rate"])),
        ("延迟 p50 (ms)", _fmt(o["latency_ms_p50"])), ("延迟 p95 (ms)", _fmt(o["latency_ms_p95"])),
        ("模型调用次数/题", _fmt(o["llm_calls_per_question"])),
        ("模型 token/题", _fmt(o["llm_tokens_per_question"])),
    ]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines.append("")
    lines += ["## 状态混淆（行：期望，列：实际）", ""]
    statuses = sorted({s for v in report.status_matrix.values() for s in v})
    if statuses:
        lines.append("| 期望 \\ 实际 | " + " | ".join(statuses) + " |")
        lines.append("| --- | " + " | ".join("---:" for _ in statuses) + " |")
        for e, counts in sorted(report.status_matrix.items()):
            lines.append(f"| {e} | " + " | ".join(str(counts.get(s, 0)) for s in statuses) + " |")
    lines.append("")
    lines += _group_table("按期望行为", report.by_expect)
    lines += _group_table("按数据划分", report.by_split)
    lines += _group_table("按模式", report.by_mode)
    lines += _group_table("按标签", report.by_tag)
    wrong = [i for i in report.items if i.outcome in ("wrong", "missing")]
    lines += [f"## 错题（{len(wrong)}）", ""]
    for i in wrong[:max_failures]:
        lines.append(f"- `{i.id}` {i.question} — {i.reason}")
    if len(wrong) > max_failures:
        lines.append(f"- …… 另有 {len(wrong) - max_failures} 题")
    lines.append("")
    if report.broken:
        lines += [f"## 损坏题（{len(report.broken)}，不计分，是题库的缺陷）", ""]
        lines += [f"- `{b['id']}` {b['question']} — {b['reason']}" for b in report.broken]
        lines.append("")
    return "\n".join(lines)


def compare_reports(a_json: dict, b_json: dict) -> str:
    """Per question, what got better / worse from report A to report B (both report_to_json)."""
    a_items = {i["id"]: i for i in a_json.get("items", [])}
    b_items = {i["id"]: i for i in b_json.get("items", [])}
    better, worse, changed, only_a, only_b = [], [], [], [], []
    for qid in sorted(set(a_items) | set(b_items)):
        a, b = a_items.get(qid), b_items.get(qid)
        if a is None:
            only_b.append(b)
            continue
        if b is None:
            only_a.append(a)
            continue
        ac, bc = a["outcome"] == "correct", b["outcome"] == "correct"
        if not ac and bc and b["outcome"] != "broken":
            better.append((a, b))
        elif ac and not bc:
            worse.append((a, b))
        elif a["outcome"] != b["outcome"] or a.get("status") != b.get("status"):
            changed.append((a, b))
    lines = ["# 评测对比（A → B）", "", "| 指标 | A | B | 变化 |", "| --- | ---: | ---: | ---: |"]
    for key in ("accuracy", "execution_accuracy", "clarify_accuracy", "refuse_accuracy",
                "valid_sql_rate", "schema_hallucination_rate", "latency_ms_p50", "latency_ms_p95",
                "llm_calls_per_question", "llm_tokens_per_question"):
        av, bv = a_json.get("overall", {}).get(key), b_json.get("overall", {}).get(key)
        delta = (bv - av) if isinstance(av, (int, float)) and isinstance(bv, (int, float)) else None
        lines.append(f"| {key} | {_fmt(av)} | {_fmt(bv)} | {_fmt(delta) if delta is not None else '—'} |")
    lines += ["", f"## 变好（{len(better)}）", ""]
    lines += [f"- `{b['id']}` {b['question']}：{a['outcome']}（{a.get('reason', '')}）→ 正确" for a, b in better]
    lines += ["", f"## 变差（{len(worse)}）", ""]
    lines += [f"- `{b['id']}` {b['question']}：正确 → {b['outcome']}（{b.get('reason', '')}）" for a, b in worse]
    lines += ["", f"## 其他变化（{len(changed)}）", ""]
    lines += [f"- `{b['id']}` {b['question']}：{a['outcome']}/{a.get('status')} → {b['outcome']}/{b.get('status')}"
              for a, b in changed]
    if only_a or only_b:
        lines += ["", "## 仅在一方出现", ""]
        lines += [f"- 仅 A：`{i['id']}` {i['question']}" for i in only_a]
        lines += [f"- 仅 B：`{i['id']}` {i['question']}" for i in only_b]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m eval.scoring", description="有数评测打分")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score", help="score predictions")
    s.add_argument("--questions", default=str(Path(__file__).with_name("questions.jsonl")))
    s.add_argument("--pred", required=True)
    s.add_argument("--db", required=True)
    s.add_argument("--split")
    s.add_argument("--json-out")
    s.add_argument("--md-out")
    c = sub.add_parser("compare", help="compare two JSON reports")
    c.add_argument("a")
    c.add_argument("b")
    args = ap.parse_args(argv)
    if args.cmd == "score":
        report = score_files(args.questions, args.pred, args.db, split=args.split)
        md = report_to_markdown(report)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report_to_json(report), ensure_ascii=False, indent=1,
                                                      default=str), encoding="utf-8")
        if args.md_out:
            Path(args.md_out).write_text(md, encoding="utf-8")
        print(md)
    else:
        a = json.loads(Path(args.a).read_text(encoding="utf-8"))
        b = json.loads(Path(args.b).read_text(encoding="utf-8"))
        print(compare_reports(a, b))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
