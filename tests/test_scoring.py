"""The benchmark scorer (eval/scoring.py) on hand-made right and wrong predictions.

A tiny DuckDB with contract tables is built in the test; every prediction below is what an
answer object could plausibly contain. Also: every gold SQL of eval/questions.jsonl parses
(DuckDB dialect) and stays inside the warehouse contract.
"""
from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import duckdb
import pytest
import sqlglot

from eval.scoring import (
    CONTRACT_SCHEMA,
    compare_reports,
    compare_result,
    report_to_json,
    report_to_markdown,
    score_predictions,
    unknown_references,
)

QUESTIONS = Path(__file__).resolve().parents[1] / "eval" / "questions.jsonl"


@pytest.fixture()
def con():
    c = duckdb.connect(":memory:")
    c.execute("""
        CREATE TABLE dim_subject (subject_code VARCHAR, subject_name VARCHAR, parent_code VARCHAR, level INTEGER,
                                  direction VARCHAR, budget_type VARCHAR);
        INSERT INTO dim_subject VALUES
          ('101', '税收收入', NULL, 1, '收入', '一般公共预算'),
          ('10101', '增值税', '101', 2, '收入', '一般公共预算'),
          ('10104', '企业所得税', '101', 2, '收入', '一般公共预算'),
          ('103', '非税收入', NULL, 1, '收入', '一般公共预算'),
          ('10305', '罚没收入', '103', 2, '收入', '一般公共预算');
        CREATE TABLE fact_budget_revenue (year INTEGER, month INTEGER, subject_code VARCHAR, amount_wan DOUBLE);
        INSERT INTO fact_budget_revenue VALUES
          (2020, 6, '10101', 100000.0), (2020, 6, '10104', 60000.0), (2020, 6, '10305', 22363.0),
          (2021, 6, '10101', 120000.0), (2021, 6, '10104', 65000.0), (2021, 6, '10305', 24900.0);
        CREATE TABLE dim_department (dept_code VARCHAR, dept_name VARCHAR, dept_type VARCHAR);
        INSERT INTO dim_department VALUES ('001', '党政办公室', '行政单位'), ('002', '财政金融局', '行政单位'),
                                          ('003', '公安分局', '行政单位'), ('004', '建设局', '行政单位');
        CREATE TABLE fact_budget_expenditure (year INTEGER, month INTEGER, dept_code VARCHAR, subject_code VARCHAR,
                                              economic_class VARCHAR, amount_wan DOUBLE);
        INSERT INTO fact_budget_expenditure VALUES
          (2025, 3, '001', '20101', '工资福利支出', 1200.0), (2025, 3, '002', '20101', '商品和服务支出', 3400.5),
          (2025, 3, '003', '20402', '工资福利支出', 5600.25), (2025, 3, '004', '21201', '资本性支出', 800.0);
    """)
    yield c
    c.close()


GBR_2021 = ("SELECT SUM(r.amount_wan) AS amount_wan FROM fact_budget_revenue r JOIN dim_subject s "
            "ON s.subject_code = r.subject_code WHERE s.budget_type = '一般公共预算' AND s.direction = '收入' "
            "AND r.year = 2021")
GROWTH_2021 = ("SELECT (SUM(CASE WHEN year = 2021 THEN amount_wan END) / SUM(CASE WHEN year = 2020 THEN amount_wan END)"
               " - 1) * 100 AS growth_pct FROM fact_budget_revenue")
DEPT_RANK = ("SELECT d.dept_name, SUM(e.amount_wan) AS amount_wan FROM fact_budget_expenditure e JOIN dim_department d "
             "ON d.dept_code = e.dept_code WHERE e.year = 2025 GROUP BY d.dept_name ORDER BY amount_wan DESC")
DEPT_ALL = DEPT_RANK.replace(" ORDER BY amount_wan DESC", "")


def q(id_, sql=None, expect="answer", ordered=False, tags=("value",), alt=None):
    item = {"id": id_, "question": f"问题{id_}", "expect": expect, "ordered": ordered, "tags": list(tags),
            "split": "dev"}
    if sql:
        item["gold_sql"] = sql
    if alt:
        item["gold_sql_alt"] = alt
    return item


def p(id_, rows=None, columns=None, status="answered", sql="SELECT 1", **extra):
    obj = {"id": id_, "status": status, "question": f"问题{id_}", "sql": sql if status == "answered" else None,
           "rows": rows or [], "columns": columns or [], "timings_ms": {"total": 10.0}}
    obj.update(extra)
    return obj


def col(name, unit=None):
    return {"name": name, "label": name, "unit": unit}


def outcome(con, question, prediction):
    report = score_predictions([question], [prediction], con)
    return report.items[0]


# ---------------------------------------------------------------------------------------------
# unit scaling
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,unit", [
    (209900.0, "万元"), (20.99, "亿元"), (2099000000.0, "元"), (20.99, None), (2099000000.0, ""),
])
def test_unit_scaling_accepted(con, value, unit):
    item = outcome(con, q("a", GBR_2021), p("a", [[value]], [col("一般公共预算收入", unit)]))
    assert item.outcome == "correct", item.reason


@pytest.mark.parametrize("value,unit", [
    (20.99, "万元"),          # 亿元 figure labelled 万元: the answer text would be off by 10^4
    (209900.0, "亿元"),
    (2099000.0, None),        # ×10 is not a unit change
    (209.9, None),            # ×1e-3: 千万? no such unit here
])
def test_unit_scaling_rejected(con, value, unit):
    item = outcome(con, q("a", GBR_2021), p("a", [[value]], [col("一般公共预算收入", unit)]))
    assert item.outcome == "wrong"


def test_unit_scaling_per_column_not_per_row(con):
    # One column must use one factor for all rows: mixing 万元 and 亿元 across rows is wrong.
    item = outcome(con, q("a", DEPT_ALL, tags=("breakdown",)),
                   p("a", [["党政办公室", 1200.0], ["财政金融局", 0.340050], ["公安分局", 5600.25], ["建设局", 800.0]],
                     [col("部门"), col("金额")]))
    assert item.outcome == "wrong"
    item = outcome(con, q("a", DEPT_ALL, tags=("breakdown",)),
                   p("a", [["党政办公室", 0.12], ["财政金融局", 0.340050], ["公安分局", 0.560025], ["建设局", 0.08]],
                     [col("部门"), col("金额", "亿元")]))
    assert item.outcome == "correct", item.reason


# ---------------------------------------------------------------------------------------------
# ratio vs percent, tolerance
# ---------------------------------------------------------------------------------------------
def test_ratio_and_percent(con):
    exact = 209900.0 / 182363.0 - 1
    assert outcome(con, q("g", GROWTH_2021), p("g", [[exact * 100]], [col("增速", "%")])).outcome == "correct"
    assert outcome(con, q("g", GROWTH_2021), p("g", [[exact]], [col("增速")])).outcome == "correct"
    assert outcome(con, q("g", GROWTH_2021), p("g", [[exact]], [col("增速", "")])).outcome == "correct"
    # a percent column must not be read as money and vice versa
    assert outcome(con, q("g", GROWTH_2021), p("g", [[exact * 100]], [col("增速", "万元")])).outcome == "wrong"


def test_close_but_wrong_number_fails(con):
    right = 209900.0
    assert outcome(con, q("a", GBR_2021), p("a", [[right * 1.01]], [col("x", "万元")])).outcome == "wrong"
    assert outcome(con, q("a", GBR_2021), p("a", [[right * 0.999]], [col("x", "万元")])).outcome == "wrong"
    assert outcome(con, q("a", GBR_2021), p("a", [[right * (1 + 1e-9)]], [col("x", "万元")])).outcome == "correct"
    # growth rounded for display is not the executed value
    assert outcome(con, q("g", GROWTH_2021), p("g", [[15.1]], [col("增速", "%")])).outcome == "wrong"


def test_numbers_given_as_strings(con):
    assert outcome(con, q("a", GBR_2021), p("a", [["209,900"]], [col("x", "万元")])).outcome == "correct"
    sql = "SELECT 2021 AS year, SUM(amount_wan) AS amount_wan FROM fact_budget_revenue WHERE year = 2021"
    assert outcome(con, q("y", sql), p("y", [["2021年", 209900.0]], [col("年份"), col("x", "万元")])).outcome == "correct"


# ---------------------------------------------------------------------------------------------
# order, extra columns, row counts
# ---------------------------------------------------------------------------------------------
RANKED = [["公安分局", 5600.25], ["财政金融局", 3400.5], ["党政办公室", 1200.0], ["建设局", 800.0]]


def test_order_sensitive(con):
    cols = [col("部门"), col("支出", "万元")]
    assert outcome(con, q("r", DEPT_RANK, ordered=True), p("r", RANKED, cols)).outcome == "correct"
    reversed_rows = list(reversed(RANKED))
    assert outcome(con, q("r", DEPT_RANK, ordered=True), p("r", reversed_rows, cols)).outcome == "wrong"
    assert outcome(con, q("r", DEPT_RANK, ordered=False), p("r", reversed_rows, cols)).outcome == "correct"


def test_unordered_rows_must_stay_together(con):
    # same column multisets, but the amounts belong to the wrong departments
    swapped = [["公安分局", 3400.5], ["财政金融局", 5600.25], ["党政办公室", 1200.0], ["建设局", 800.0]]
    item = outcome(con, q("r", DEPT_ALL), p("r", swapped, [col("部门"), col("支出", "万元")]))
    assert item.outcome == "wrong"


def test_extra_columns_allowed_in_any_position(con):
    rows = [[i + 1, name, amount / 1e4, amount * 100 / 11000.75, "2025"] for i, (name, amount) in enumerate(RANKED)]
    cols = [col("排名"), col("部门"), col("支出", "亿元"), col("占比", "%"), col("年度")]
    assert outcome(con, q("r", DEPT_RANK, ordered=True), p("r", rows, cols)).outcome == "correct"


def test_missing_gold_column_fails(con):
    item = outcome(con, q("r", DEPT_ALL), p("r", [[a] for _, a in RANKED], [col("支出", "万元")]))
    assert item.outcome == "wrong"
    assert "dept_name" in item.reason


def test_row_count_must_match(con):
    item = outcome(con, q("r", DEPT_RANK + " LIMIT 1", ordered=True), p("r", RANKED, [col("部门"), col("支出", "万元")]))
    assert item.outcome == "wrong"
    assert outcome(con, q("a", GBR_2021), p("a", [], [col("x")])).outcome == "wrong"


def test_two_gold_columns_need_two_predicted_columns():
    m = compare_result(["a_wan", "b_wan"], [(5.0, 5.0)], [col("x", "万元")], [[5.0]])
    assert not m.ok
    m = compare_result(["a_wan", "b_wan"], [(5.0, 5.0)], [col("x", "万元"), col("y", "万元")], [[5.0, 5.0]])
    assert m.ok


# ---------------------------------------------------------------------------------------------
# NULLs, empty and broken gold
# ---------------------------------------------------------------------------------------------
def test_nulls(con):
    sql = ("SELECT d.dept_name, SUM(e.amount_wan) AS amount_wan FROM dim_department d LEFT JOIN fact_budget_expenditure e "
           "ON e.dept_code = d.dept_code AND e.economic_class = '工资福利支出' GROUP BY d.dept_name")
    rows = [["党政办公室", 1200.0], ["财政金融局", None], ["公安分局", 5600.25], ["建设局", None]]
    cols = [col("部门"), col("工资福利支出", "万元")]
    assert outcome(con, q("n", sql), p("n", rows, cols)).outcome == "correct"
    zeros = [[n, 0.0 if v is None else v] for n, v in rows]
    assert outcome(con, q("n", sql), p("n", zeros, cols)).outcome == "wrong"
    nan_rows = [[n, float("nan") if v is None else v] for n, v in rows]
    assert outcome(con, q("n", sql), p("n", nan_rows, cols)).outcome == "correct"


def test_empty_or_failing_gold_is_broken_not_scored(con):
    questions = [
        q("empty", "SELECT * FROM fact_budget_revenue WHERE year = 1999"),
        q("null", "SELECT SUM(amount_wan) AS amount_wan FROM fact_budget_revenue WHERE year = 1999"),
        q("syntax", "SELEC amount FROM nowhere"),
        q("table", "SELECT SUM(x) FROM no_such_table"),
        q("ok", GBR_2021),
    ]
    preds = [p(x["id"], [[209900.0]], [col("x", "万元")]) for x in questions]
    report = score_predictions(questions, preds, con)
    outcomes = {i.id: i.outcome for i in report.items}
    assert outcomes == {"empty": "broken", "null": "broken", "syntax": "broken", "table": "broken", "ok": "correct"}
    assert report.overall["broken"] == 4
    assert report.overall["scored"] == 1
    assert report.overall["accuracy"] == 1.0
    assert {b["id"] for b in report.broken} == {"empty", "null", "syntax", "table"}


def test_alternative_gold(con):
    diff = ("SELECT SUM(CASE WHEN year = 2021 THEN amount_wan ELSE 0 END) - SUM(CASE WHEN year = 2020 THEN amount_wan "
            "ELSE 0 END) AS diff_wan FROM fact_budget_revenue")
    item = q("g", GROWTH_2021, tags=("growth",), alt=[diff])
    assert outcome(con, item, p("g", [[27537.0]], [col("增加额", "万元")])).outcome == "correct"
    assert outcome(con, item, p("g", [[27537.0 * 1.01]], [col("增加额", "万元")])).outcome == "wrong"


# ---------------------------------------------------------------------------------------------
# statuses
# ---------------------------------------------------------------------------------------------
def test_status_must_match_expectation(con):
    questions = [q("ans", GBR_2021), q("cla", expect="clarify", tags=("ambiguous",)),
                 q("ref", expect="refuse", tags=("write",)), q("ref2", expect="refuse", tags=("sensitive",)),
                 q("cla2", expect="clarify", tags=("ambiguous",))]
    preds = [
        p("ans", status="refused", error="不支持"),
        p("cla", status="clarify", clarification={"question": "哪个收入？", "options": ["一般公共预算收入", "营业收入"]}),
        p("ref", status="refused", error="只读"),
        p("ref2", [[1]], [col("x")], status="answered"),
        p("cla2", status="error", error="出错"),
    ]
    report = score_predictions(questions, preds, con)
    outcomes = {i.id: i.outcome for i in report.items}
    assert outcomes == {"ans": "wrong", "cla": "correct", "ref": "correct", "ref2": "wrong", "cla2": "wrong"}
    assert report.overall["clarify_accuracy"] == 0.5
    assert report.overall["refuse_accuracy"] == 0.5
    assert report.overall["execution_accuracy"] == 0.0
    assert report.status_matrix["answer"] == {"refused": 1}


def test_missing_prediction_counts_as_wrong(con):
    report = score_predictions([q("a", GBR_2021), q("b", GBR_2021)], [p("a", [[209900.0]], [col("x", "万元")])], con)
    assert [i.outcome for i in report.items] == ["correct", "missing"]
    assert report.overall["accuracy"] == 0.5


# ---------------------------------------------------------------------------------------------
# SQL validity, schema hallucination, latency, model usage, rendering
# ---------------------------------------------------------------------------------------------
def test_valid_sql_and_hallucination(con):
    questions = [q(x, GBR_2021) for x in ("good", "fake_table", "fake_col", "write", "nosql")]
    preds = [
        p("good", [[209900.0]], [col("x", "万元")], sql=GBR_2021),
        p("fake_table", [[209900.0]], [col("x", "万元")], sql="SELECT SUM(amount) FROM fiscal_income WHERE yr = 2021"),
        p("fake_col", [[209900.0]], [col("x", "万元")],
          sql="SELECT SUM(r.amount_yuan) FROM fact_budget_revenue r WHERE r.year = 2021"),
        p("write", [[1]], [col("x")], sql="DELETE FROM fact_budget_revenue"),
        p("nosql", [[209900.0]], [col("x", "万元")], sql=None),
    ]
    report = score_predictions(questions, preds, con)
    items = {i.id: i for i in report.items}
    assert items["good"].sql_valid is True and items["good"].unknown_refs == []
    assert items["fake_table"].sql_valid is False
    assert "table:fiscal_income" in items["fake_table"].unknown_refs
    assert items["fake_col"].unknown_refs == ["column:fact_budget_revenue.amount_yuan"]
    assert items["write"].sql_valid is False
    assert items["nosql"].sql_valid is False
    assert report.overall["valid_sql_rate"] == 0.2
    assert report.overall["schema_hallucination_rate"] == pytest.approx(2 / 4)
    # the write was never executed
    assert con.execute("SELECT COUNT(*) FROM fact_budget_revenue").fetchone()[0] == 6


def test_unknown_references_understands_aliases_and_ctes():
    sql = ("WITH a AS (SELECT dept_code, SUM(amount_wan) AS actual FROM fact_budget_expenditure GROUP BY dept_code) "
           "SELECT d.dept_name, a.actual * 100 / p.plan AS rate FROM dim_department d JOIN a ON a.dept_code = d.dept_code "
           "JOIN (SELECT dept_code, SUM(amount_wan) AS plan FROM v_budget_plan_effective GROUP BY dept_code) p "
           "ON p.dept_code = d.dept_code ORDER BY rate")
    assert unknown_references(sql, CONTRACT_SCHEMA) == []
    assert unknown_references("SELECT d.name FROM dim_department d", CONTRACT_SCHEMA) == ["column:dim_department.name"]
    assert unknown_references("SELECT * FROM fact_budget_revenue", CONTRACT_SCHEMA) == []
    # the same alias for different tables in different CTEs
    reuse = ("WITH m0 AS (SELECT SUM(f.value_yi_ytd) AS gdp FROM fact_gdp AS f WHERE f.sector = '合计'), "
             "m1 AS (SELECT SUM(f.amount_wan) AS rev FROM fact_budget_revenue AS f WHERE f.year = 2024) "
             "SELECT m0.gdp, m1.rev FROM m0 LEFT JOIN m1 ON TRUE")
    assert unknown_references(reuse, CONTRACT_SCHEMA) == []
    assert unknown_references(reuse.replace("SUM(f.amount_wan)", "SUM(f.amount_yuan)"), CONTRACT_SCHEMA) == [
        "column:fact_budget_revenue.amount_yuan"]
    # masking subqueries (SELECT * REPLACE …) expose the table's columns, and only those
    masked = ("SELECT f.payee_type, SUM(f.amount_yuan) FROM (SELECT * REPLACE (LEFT(payee_name, 1) || '**' AS payee_name) "
              "FROM fact_payment) AS f GROUP BY f.payee_type")
    assert unknown_references(masked, CONTRACT_SCHEMA) == []
    assert unknown_references(masked.replace("f.payee_type", "f.payee_kind"), CONTRACT_SCHEMA) == ["column:f.payee_kind"]
    # scalar subqueries and correlated references
    assert unknown_references("SELECT (SELECT value_yi_ytd FROM fact_gdp WHERE year = 2024) AS a, "
                              "(SELECT SUM(amount_wan) FROM fact_budget_revenue) AS b", CONTRACT_SCHEMA) == []
    assert unknown_references("SELECT d.dept_name FROM dim_department d WHERE EXISTS (SELECT 1 FROM fact_payment p "
                              "WHERE p.dept_code = d.dept_code AND amount_wan > 1)", CONTRACT_SCHEMA) == ["column:amount_wan"]
    assert unknown_references("SELECT year, SUM(amount_wan) AS total FROM fact_budget_revenue GROUP BY year "
                              "ORDER BY total DESC", CONTRACT_SCHEMA) == []


def test_latency_and_model_usage(con):
    questions = [q(str(i), GBR_2021) for i in range(20)]
    preds = [p(str(i), [[209900.0]], [col("x", "万元")], timings_ms={"total": float(i + 1)},
               llm={"calls": 1 if i % 2 else 0, "tokens": 100 * (i % 2)}, mode="hybrid") for i in range(20)]
    report = score_predictions(questions, preds, con)
    assert report.overall["latency_ms_p50"] == pytest.approx(10.5)
    assert report.overall["latency_ms_p95"] == pytest.approx(19.05)
    assert report.overall["llm_calls_per_question"] == pytest.approx(0.5)
    assert report.overall["llm_tokens_per_question"] == pytest.approx(50.0)
    assert report.by_mode["hybrid"]["accuracy"] == 1.0


def test_rendering_and_comparison(con):
    questions = [q("a", GBR_2021, tags=("value", "published")), q("b", GROWTH_2021, tags=("growth",)),
                 q("c", expect="refuse", tags=("write",))]
    before = score_predictions(questions, [p("a", [[209900.0]], [col("x", "万元")]), p("b", [[15.1]], [col("g", "%")]),
                                           p("c", status="refused")], con)
    after = score_predictions(questions, [p("a", [[1.0]], [col("x", "万元")]),
                                          p("b", [[(209900.0 / 182363.0 - 1) * 100]], [col("g", "%")]),
                                          p("c", status="refused")], con)
    md = report_to_markdown(before)
    assert "执行准确率" in md and "| published |" in md and "`b`" in md
    a_json, b_json = report_to_json(before), report_to_json(after)
    json.dumps(a_json, ensure_ascii=False, default=str)
    assert set(a_json["by_tag"]) == {"value", "published", "growth", "write"}
    diff = compare_reports(a_json, b_json)
    better = diff.split("## 变好")[1].split("## 变差")[0]
    worse = diff.split("## 变差")[1].split("## 其他变化")[0]
    assert "`b`" in better and "`a`" not in better
    assert "`a`" in worse and "`c`" not in worse


# ---------------------------------------------------------------------------------------------
# the question set itself
# ---------------------------------------------------------------------------------------------
def _questions() -> list[dict]:
    return [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_question_file_format():
    items = _questions()
    assert len(items) >= 320
    ids = [x["id"] for x in items]
    assert len(ids) == len(set(ids))
    for x in items:
        assert x["question"].strip(), x
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", x["as_of"]) and date.fromisoformat(x["as_of"]), x["id"]
        assert x["expect"] in ("answer", "clarify", "refuse"), x["id"]
        assert x["split"] in ("train", "dev", "test"), x["id"]
        assert isinstance(x["tags"], list) and x["tags"], x["id"]
        assert isinstance(x["ordered"], bool), x["id"]
        assert bool(x.get("gold_sql")) == (x["expect"] == "answer"), x["id"]
    questions = [x["question"] for x in items]
    assert len(questions) == len(set(questions)), "duplicate question text"
    # a paraphrase group never straddles splits (no train/test leakage)
    split_of_group: dict[str, str] = {}
    for x in items:
        assert split_of_group.setdefault(x.get("group", x["id"]), x["split"]) == x["split"], x["id"]


def test_every_gold_sql_parses_and_stays_in_the_contract():
    for x in _questions():
        for sql in [x.get("gold_sql")] + list(x.get("gold_sql_alt") or []):
            if not sql:
                continue
            trees = sqlglot.parse(sql, read="duckdb")
            assert len(trees) == 1 and trees[0] is not None, x["id"]
            assert unknown_references(sql, CONTRACT_SCHEMA) == [], (x["id"], sql)
