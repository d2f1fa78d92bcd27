"""Regressions from adversarial testing: each of these once misbehaved."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from assistant.engine import Assistant
from semantic_layer.catalogue import Catalogue

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 11, 15)


@pytest.fixture(scope="module")
def assistant(small_db) -> Assistant:
    return Assistant(small_db)


def test_user_catalogue_cannot_change_roles(tmp_path):
    extra = tmp_path / "catalogue.d"
    extra.mkdir()
    (extra / "zz.yaml").write_text("roles:\n  分析师: {description: x, sensitive: true}\nas_of: '2099-01-01'\n", encoding="utf-8")
    cat = Catalogue.load(extra=extra)
    assert cat.roles["分析师"].sensitive is False
    assert cat.as_of != "2099-01-01"


@pytest.mark.parametrize("sql", ["select len(range(0, 50000000))", "select repeat('x', 50000000)",
                                 "select * from generate_series(1, 10)"])
def test_uninterruptible_generators_refused(assistant, sql):
    r = assistant.run_sql(sql)
    assert r["status"] == "refused" and r["error"]


def test_department_user_sees_only_own_projects(assistant):
    own = assistant.run_sql("select count(distinct project_id) from fact_project_performance", role="部门用户:004")
    every = assistant.run_sql("select count(distinct project_id) from fact_project_performance", role="分析师")
    other = assistant.run_sql("select count(*) from dim_project where dept_code <> '004'", role="分析师")
    assert own["status"] == "answered" and own["rows"][0][0] < every["rows"][0][0]
    assert other["rows"][0][0] > 0
    r = assistant.ask("2025年一般公共预算支出是多少", as_of=AS_OF, role="部门用户:004")
    assert any("本单位" in n for n in r.get("notes", []))


def test_two_metric_growth_each_metric(assistant):
    r = assistant.ask("2025年一般公共预算收入和支出分别增长多少", as_of=AS_OF)
    names = [c["name"] for c in r["columns"]]
    rev = r["rows"][0][names.index("general_budget_revenue_growth_pct")]
    exp_ = r["rows"][0][names.index("general_budget_expenditure_growth_pct")]
    assert f"{abs(rev):.1f}%" in r["answer"] and f"{abs(exp_):.1f}%" in r["answer"]


def test_rate_change_in_percentage_points(assistant):
    r = assistant.ask("2025年第三季度GDP增速同比", as_of=AS_OF)
    assert "个百分点" in r["answer"]


def test_share_against_total_row(assistant):
    r = assistant.ask("2022年广东教育支出占全国的比重", as_of=AS_OF)
    assert len(r["rows"]) == 1
    names = [c["name"] for c in r["columns"]]
    assert abs(r["rows"][0][names.index("share_pct")] - 3871.14 / 37923.33 * 100) < 1e-6


@pytest.mark.parametrize("question", ["将2021年GDP设为800亿", "新增3笔支付给张三", "统一社会信用码是多少",
                                      "What was general budget revenue in 2021?", "撤销上个月金额最大的那笔支付"])
def test_more_refusals(assistant, question):
    assert assistant.ask(question, as_of=AS_OF)["status"] == "refused"


def test_json_errors_are_answer_objects(small_db, tmp_path):
    for args in (["--db", str(tmp_path)], ["--db", str(small_db), "--role", "garbage"],
                 ["--db", str(small_db), "--as-of", "2026-13-45"]):
        out = subprocess.run([sys.executable, "-m", "assistant.cli", "ask", "2021年一般公共预算收入", "--json", *args],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        obj = json.loads(out.stdout)
        assert obj["status"] == "error" and obj["error"] and "Traceback" not in out.stderr
