"""Every gold SQL of eval/questions.jsonl runs on a small demo warehouse and returns data.

A broken gold item (SQL error, no rows, only NULLs) is a bug in the question set, not in the
product: fix the question. Uses the shared ``small_db`` fixture (tests/conftest.py) when there
is one, else builds its own small warehouse once for this module.
"""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from eval.scoring import execute_gold

QUESTIONS = Path(__file__).resolve().parents[1] / "eval" / "questions.jsonl"
SCALE = 0.05


def _items() -> list[dict]:
    return [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def gold_db(request, tmp_path_factory) -> Path:
    try:
        db = request.getfixturevalue("small_db")
    except pytest.FixtureLookupError:
        db = None
    if db is not None:
        return Path(db) if not isinstance(db, duckdb.DuckDBPyConnection) else db
    build = pytest.importorskip("warehouse.build")
    path = tmp_path_factory.mktemp("gold") / "gold.duckdb"
    build.build_warehouse(path, scale=SCALE, progress=lambda *a, **k: None)
    return path


@pytest.fixture(scope="module")
def con(gold_db):
    if isinstance(gold_db, duckdb.DuckDBPyConnection):
        yield gold_db
        return
    c = duckdb.connect(str(gold_db), read_only=True)
    yield c
    c.close()


def test_every_gold_sql_executes_and_returns_data(con):
    problems = []
    n = 0
    for item in _items():
        if item["expect"] != "answer":
            continue
        for k, sql in enumerate([item["gold_sql"]] + list(item.get("gold_sql_alt") or [])):
            n += 1
            res = execute_gold(con, sql)
            if not res.ok:
                problems.append(f"{item['id']}{'' if k == 0 else f' (alt {k})'} {item['question']}: {res.error}")
            elif any(v is None for row in res.rows for v in row) and len(res.rows) == 1:
                problems.append(f"{item['id']} {item['question']}: 单行结果含 NULL {res.rows[0]}")
    assert n > 300
    assert not problems, "损坏的标准答案：\n" + "\n".join(problems)


def test_ordered_items_have_a_deterministic_order(con):
    """Ranked gold results must not depend on ties (a tie would make 'ordered' scoring arbitrary)."""
    problems = []
    for item in _items():
        if item["expect"] != "answer" or not item.get("ordered"):
            continue
        res = execute_gold(con, item["gold_sql"])
        if not res.ok or len(res.rows) < 2:
            continue
        numeric = [j for j, v in enumerate(res.rows[0]) if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not numeric:
            continue
        key = [row[numeric[-1]] for row in res.rows]
        if len(set(key)) != len(key):
            problems.append(f"{item['id']} {item['question']}: 排序值有并列 {key}")
    assert not problems, "\n".join(problems)


def test_published_figures_hold(con):
    """The real published 2021 figures the question set relies on."""
    by_q = {x["question"]: x for x in _items()}
    expect = {
        "2021年一般公共预算收入": 209900.0,
        "2021年GDP是多少": 721.3,
        "2021年GDP增长多少": 8.4,
        "2021年五大主导产业营业收入": 13586000.0,
        "2021年新增一套表法人单位多少家": 159,
        "2021年新增法人单位比2020年多多少": 69,
    }
    for question, value in expect.items():
        res = execute_gold(con, by_q[question]["gold_sql"])
        assert res.ok and res.rows[0][0] == pytest.approx(value), question
    res = execute_gold(con, by_q["2021年一般公共预算收入同比增长多少"]["gold_sql"])
    assert round(res.rows[0][0], 1) == 15.1
    res = execute_gold(con, by_q["2021年主导产业营业收入同比增长多少"]["gold_sql"])
    assert round(res.rows[0][0], 1) == 11.9
