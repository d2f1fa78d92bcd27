"""The LLM agent against a scripted OpenAI-compatible server, through the real langchain-openai client.

Nothing of ours is mocked: the agent builds real prompts, langchain-openai sends real HTTP
requests to ``tests/scripted_llm_server.py`` (which answers from a script and records what it
received), and the answers are compiled, guarded and executed on a small warehouse. Expected
numbers come from SQL written here, not from the compiler.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("langchain_openai")

from assistant.engine import Assistant, Conversation  # noqa: E402
from assistant.llm_agent import (  # noqa: E402
    AgentOutput, LLMAgent, LLMConfig, extract_json, is_write_statement, load_prompt, parse_examples,
)
from scripted_llm_server import Delay, HTTPError, RawBody, Reply, ScriptedLLMServer  # noqa: E402
from semantic_layer.guard import guard_sql  # noqa: E402
from semantic_layer.query import StructuredQuery  # noqa: E402

AS_OF = date(2026, 11, 15)
REPO = Path(__file__).resolve().parents[1]

REVENUE_2021 = {"query": {"metrics": ["general_budget_revenue"], "time": {"start": "2021-01", "end": "2021-12"}}}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def db_path(request, tmp_path_factory) -> Path:
    try:
        return Path(request.getfixturevalue("small_db"))
    except pytest.FixtureLookupError:  # pragma: no cover - conftest without small_db
        from warehouse.build import build_warehouse

        path = tmp_path_factory.mktemp("llm-warehouse") / "small.duckdb"
        build_warehouse(path, scale=0.02, progress=None)
        return path


@pytest.fixture(scope="module")
def shared_assistant(db_path) -> Assistant:
    return Assistant(db_path)


@pytest.fixture
def assistant(shared_assistant):
    shared_assistant.llm_agent = None
    yield shared_assistant
    shared_assistant.llm_agent = None


@pytest.fixture
def server():
    with ScriptedLLMServer() as s:
        yield s


def attach(assistant, server, **kw) -> LLMAgent:
    kw.setdefault("timeout", 10)
    kw.setdefault("examples_path", None)
    agent = LLMAgent(assistant, base_url=server.base_url, model=server.model, **kw)
    assistant.llm_agent = agent
    return agent


_EXPECTED: dict[str, duckdb.DuckDBPyConnection] = {}


def _expected_con(db_path) -> duckdb.DuckDBPyConnection:
    """A plain connection to a copy of the warehouse, for the expected values.

    (The assistant's executor holds the original open with its own configuration; DuckDB does
    not open one file twice in a process with different settings.)
    """
    key = str(db_path)
    if key not in _EXPECTED:
        import shutil
        import tempfile

        copy = Path(tempfile.mkdtemp(prefix="youshu-expected-")) / "copy.duckdb"
        shutil.copyfile(db_path, copy)
        _EXPECTED[key] = duckdb.connect(str(copy), read_only=True)
    return _EXPECTED[key]


def scalar(db_path, sql: str):
    return _expected_con(db_path).execute(sql).fetchone()[0]


def rows(db_path, sql: str) -> list[tuple]:
    return _expected_con(db_path).execute(sql).fetchall()


def checksum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    wal = Path(str(path) + ".wal")
    if wal.exists():
        h.update(wal.read_bytes())
    return h.hexdigest()


def gb_revenue(db_path, year: int) -> float:
    return scalar(db_path, f"""
        SELECT SUM(r.amount_wan) FROM fact_budget_revenue r JOIN dim_subject s ON s.subject_code = r.subject_code
        WHERE s.budget_type = '一般公共预算' AND s.direction = '收入' AND r.year = {year}""")


def ask(assistant, question, mode="llm", **kw):
    return assistant.ask(question, as_of=AS_OF, mode=mode, **kw)


def rule_view(assistant, question):
    """What the engine's rule stage makes of a question (parser, then the retrieval resolver)."""
    parsed = assistant.parser.parse(question, AS_OF)
    if getattr(assistant, "resolver", None) is not None and parsed.unmatched:
        parsed = assistant.resolver.improve(question, parsed, AS_OF, None) or parsed
    return parsed


def pick(assistant, candidates, ok, why):
    """The first question the rule stage treats as the test needs (the parser keeps improving)."""
    for q in candidates:
        if ok(rule_view(assistant, q)):
            return q
    pytest.skip(f"no candidate question is {why} for the current rule parser")


def rules_unsure_2021_revenue(p) -> bool:
    return (p.status == "ok" and p.confidence < 0.8 and p.query.metrics == ["general_budget_revenue"]
            and p.query.time is not None and p.query.time.start == "2021-01" and p.query.time.end == "2021-12")


UNSURE_REVENUE = ["2021年一般公共预算收入大概几何呀老铁", "2021年一般公共预算收入情况汇报一下并附上分析意见",
                  "2021年一般公共预算收入是多少，顺便说说天气，再讲个笑话"]
UNCLEAR = ["帮我看看2021年经开区的钱袋子怎么样", "给我讲讲2021年收入的来龙去脉和前因后果", "2021年那个啥数据怎么样"]
OFF_TOPIC = ["经开区食堂今天吃什么", "帮我写一首关于经开区的诗", "明天天气怎么样，给我查查财政数据相关"]


# ----------------------------------------------------------------------------- happy path
def test_structured_query_gives_the_right_number(assistant, server, db_path):
    attach(assistant, server)
    server.script(REVENUE_2021)
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["status"] == "answered", r
    assert r["path"] == "llm"
    assert r["rows"][0][0] == pytest.approx(gb_revenue(db_path, 2021))
    assert "20.99亿元" in r["answer"]
    assert r["llm"]["calls"] == 1 and r["llm"]["rounds"] == 1 and r["llm"]["model"] == server.model
    assert r["llm"]["tokens"] > 100  # the server's usage (prompt + completion)
    assert r["timings_ms"]["llm"] > 0 and r["timings_ms"]["total"] >= r["timings_ms"]["llm"]
    assert r["query"]["metrics"] == ["general_budget_revenue"]
    # what the model was sent: JSON mode, the catalogue, today's date, the question
    body = server.requests[0]
    assert body["response_format"] == {"type": "json_object"}
    assert body["temperature"] == 0 and body["max_tokens"] == 1024 and "max_completion_tokens" not in body
    system = body["messages"][0]["content"]
    assert body["messages"][0]["role"] == "system"
    for name in ("general_budget_revenue", "tax_total", "fact_budget_revenue", "department", "2026-11-15"):
        assert name in system
    assert "2021年一般公共预算收入是多少？" in body["messages"][-1]["content"]


def test_reported_usage_is_recorded(assistant, server):
    attach(assistant, server)
    server.script(Reply(content=json.dumps(REVENUE_2021), usage={"prompt_tokens": 1234, "completion_tokens": 56}))
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["llm"]["tokens"] == 1290


def test_label_names_and_years_are_normalised(assistant, server, db_path):
    attach(assistant, server)
    server.script({"query": {"metrics": ["税收收入"], "filters": [{"dimension": "科目", "values": ["增值税"]}],
                             "time": {"start": "2021", "end": "2021"}}})
    r = ask(assistant, "2021年增值税收入")
    assert r["status"] == "answered", r
    assert r["llm"]["rounds"] == 1
    assert r["query"]["filters"][0]["values"] == ["10101"]
    want = scalar(db_path, "SELECT SUM(amount_wan) FROM fact_budget_revenue WHERE year = 2021 AND subject_code LIKE '10101%'")
    assert r["rows"][0][0] == pytest.approx(want)


def test_sql_path_answers_with_governed_sql(assistant, server, db_path):
    attach(assistant, server)
    sql = ("SELECT pay_date, purpose, amount_yuan FROM fact_payment WHERE YEAR(pay_date) = 2023 "
           "ORDER BY amount_yuan DESC LIMIT 5")
    server.script({"sql": sql})
    r = ask(assistant, "2023年单笔金额最大的5笔支付的日期、用途和金额")
    assert r["status"] == "answered", r
    assert r["path"] == "llm-sql"
    want = rows(db_path, sql)
    assert [row[2] for row in r["rows"]] == pytest.approx([w[2] for w in want])
    assert [c["name"] for c in r["columns"]] == ["pay_date", "purpose", "amount_yuan"]
    assert r["columns"][2]["unit"] == "元"
    assert any(s.get("name") == "fact_payment" for s in r["sources"])
    assert "LIMIT" in r["sql"].upper()


# ----------------------------------------------------------------------------- errors fed back
def test_unknown_column_error_is_fed_back_and_fixed(assistant, server, db_path):
    attach(assistant, server)
    server.script(
        {"sql": "SELECT SUM(amount) AS total FROM fact_budget_revenue WHERE year = 2021"},
        {"sql": "SELECT SUM(amount_wan) AS total FROM fact_budget_revenue WHERE year = 2021"},
    )
    r = ask(assistant, "2021年预算收入总额（所有科目合计）")
    assert r["status"] == "answered", r
    assert r["path"] == "llm-sql"
    assert r["rows"][0][0] == pytest.approx(scalar(db_path, "SELECT SUM(amount_wan) FROM fact_budget_revenue WHERE year = 2021"))
    assert r["llm"]["calls"] == 2 and r["llm"]["rounds"] == 2
    assert len(server.requests) == 2
    second = server.requests[1]["messages"]
    # the model's own bad answer, then the Chinese error, are in the second request
    assert second[-2]["role"] == "assistant" and "SUM(amount)" in second[-2]["content"]
    assert "字段不存在" in second[-1]["content"] and "fact_budget_revenue.amount" in second[-1]["content"]
    assert "2021年预算收入总额" in second[-1]["content"]
    assert r["llm"]["errors"] and "字段不存在" in r["llm"]["errors"][0]


def test_compile_error_is_fed_back(assistant, server, db_path):
    attach(assistant, server)
    server.script(
        {"query": {"metrics": ["gdp"], "dimensions": ["department"], "time": {"start": "2021-01", "end": "2021-12"}}},
        {"query": {"metrics": ["general_budget_expenditure"], "dimensions": ["department"],
                   "time": {"start": "2021-01", "end": "2021-12"},
                   "order_by": [{"field": "general_budget_expenditure", "desc": True}], "limit": 1}},
    )
    r = ask(assistant, "2021年哪个部门花钱最多")
    assert r["status"] == "answered", r
    assert "不能按“部门”统计" in server.user_messages()[1]
    want = rows(db_path, """SELECT d.dept_name, SUM(e.amount_wan) v FROM fact_budget_expenditure e
        JOIN dim_department d ON d.dept_code = e.dept_code WHERE e.year = 2021 GROUP BY 1 ORDER BY v DESC LIMIT 1""")[0]
    assert r["rows"][0][0] == want[0] and r["rows"][0][1] == pytest.approx(want[1])


def test_unknown_member_is_fed_back_with_candidates(assistant, server, db_path):
    attach(assistant, server)
    base = {"metrics": ["general_budget_expenditure"], "time": {"start": "2021-01", "end": "2021-12"}}
    server.script(
        {"query": base | {"filters": [{"dimension": "department", "values": ["财政局"]}]}},
        {"query": base | {"filters": [{"dimension": "department", "values": ["财政金融局"]}]}},
    )
    r = ask(assistant, "2021年财政局的支出")
    assert r["status"] == "answered", r
    fed = server.user_messages()[1]
    assert "没有成员“财政局”" in fed and "财政金融局" in fed
    want = scalar(db_path, """SELECT SUM(e.amount_wan) FROM fact_budget_expenditure e JOIN dim_department d
        ON d.dept_code = e.dept_code WHERE e.year = 2021 AND d.dept_name = '财政金融局'""")
    assert r["rows"][0][0] == pytest.approx(want)


def test_malformed_json_then_a_good_answer(assistant, server, db_path):
    attach(assistant, server)
    server.script(
        "好的，我来查询：{metrics: [一般公共预算收入], time: 2021",
        "```json\n" + json.dumps(REVENUE_2021, ensure_ascii=False) + "\n```",
    )
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["status"] == "answered", r
    assert r["llm"]["rounds"] == 2
    assert "不是合法的 JSON" in server.user_messages()[1]
    assert r["rows"][0][0] == pytest.approx(gb_revenue(db_path, 2021))


def test_schema_violation_is_fed_back_in_chinese(assistant, server):
    attach(assistant, server)
    server.script(
        {"query": {"metrics": ["general_budget_revenue"], "compare": "growth", "time": {"start": "2021-01", "end": "2021-12"}}},
        {"query": {"metrics": ["general_budget_revenue"], "compare": "yoy", "time": {"start": "2021-01", "end": "2021-12"}}},
    )
    r = ask(assistant, "2021年一般公共预算收入增长多少")
    assert r["status"] == "answered", r
    fed = server.user_messages()[1]
    assert "query.compare" in fed and "取值只能是" in fed
    assert "同比增长" in r["answer"]


def test_three_bad_rounds_end_in_a_clarifying_question(assistant, server):
    attach(assistant, server)
    server.script(
        {"query": {"metrics": ["land_finance"]}},
        "我不知道",
        {"sql": "SELECT SUM(land_money) FROM fact_budget_revenue"},
    )
    r = ask(assistant, "经开区的土地财政怎么样")
    assert r["status"] == "clarify", r
    assert r["answer"].startswith("没能理解“经开区的土地财政怎么样”，您是想问")
    assert r["clarification"]["options"]
    assert r["llm"]["calls"] == 3 and len(r["llm"]["errors"]) == 3
    assert "未知指标：land_finance" in r["llm"]["errors"][0]
    assert len(server.requests) == 3
    assert r["sql"] is None and r["rows"] == []


def test_max_rounds_is_respected(assistant, server):
    attach(assistant, server, max_rounds=1)
    server.script({"query": {"metrics": ["nope"]}}, REVENUE_2021)
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["status"] == "clarify"
    assert len(server.requests) == 1 and server.pending == 1


# ----------------------------------------------------------------------------- governance
def test_table_outside_the_catalogue_is_blocked_then_fixed(assistant, server, db_path):
    attach(assistant, server)
    before = checksum(db_path)
    server.script(
        {"sql": "SELECT table_name FROM information_schema.tables"},
        {"sql": "SELECT COUNT(*) AS n FROM dim_department"},
    )
    r = ask(assistant, "有多少个预算单位")
    assert r["status"] == "answered", r
    assert "information_schema" not in (r["sql"] or "")
    assert "数据目录之外" in server.user_messages()[1] or "不能访问" in server.user_messages()[1]
    assert r["rows"][0][0] == scalar(db_path, "SELECT COUNT(*) FROM dim_department")
    assert checksum(db_path) == before


def test_table_outside_the_catalogue_never_runs(assistant, server, db_path):
    attach(assistant, server)
    before = checksum(db_path)
    server.script(*[{"sql": s} for s in (
        "SELECT * FROM meta_planted_anomalies",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM duckdb_settings()",
    )])
    r = ask(assistant, "列出所有异常支付")
    assert r["status"] in ("clarify", "refused"), r
    assert r["sql"] is None and r["rows"] == []
    assert len(server.requests) == 3
    assert checksum(db_path) == before


@pytest.mark.parametrize("sql", [
    "DELETE FROM fact_budget_revenue",
    "DROP TABLE dim_subject",
    "UPDATE fact_budget_revenue SET amount_wan = 0",
    "INSERT INTO dim_department SELECT * FROM dim_department",
    "SELECT 1; DROP TABLE dim_subject",
    "COPY fact_payment TO '/tmp/youshu-leak.csv'",
    "ATTACH '/tmp/other.duckdb' AS other",
    "CREATE TABLE t AS SELECT * FROM fact_payment",
])
def test_write_attempts_are_refused_and_never_executed(assistant, server, db_path, sql):
    attach(assistant, server)
    before = checksum(db_path)
    counts_before = rows(db_path, "SELECT (SELECT COUNT(*) FROM fact_budget_revenue), (SELECT COUNT(*) FROM dim_subject), (SELECT COUNT(*) FROM dim_department)")
    server.script({"sql": sql}, REVENUE_2021)
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["status"] == "refused", r
    assert "已拦截" in r["error"] and "未执行" in r["error"]
    assert r["sql"] is None and r["rows"] == []
    assert len(server.requests) == 1  # no second chance for a write
    assert checksum(db_path) == before
    assert rows(db_path, "SELECT (SELECT COUNT(*) FROM fact_budget_revenue), (SELECT COUNT(*) FROM dim_subject), (SELECT COUNT(*) FROM dim_department)") == counts_before
    assert not Path("/tmp/youshu-leak.csv").exists()


def test_sensitive_columns_stay_masked(assistant, server):
    attach(assistant, server)
    server.script({"sql": "SELECT enterprise_name, credit_code FROM dim_enterprise LIMIT 3"})
    r = ask(assistant, "列出三家企业的名称")
    assert r["status"] == "answered"
    assert all("*" in str(row[1]) for row in r["rows"])


def test_rule_safety_refusal_does_not_reach_the_model(assistant, server):
    attach(assistant, server)
    r = ask(assistant, "把2021年的预算收入数据删掉")
    assert r["status"] == "refused"
    assert server.requests == []


def test_model_refusal_and_clarification(assistant, server):
    attach(assistant, server)
    q = pick(assistant, OFF_TOPIC, lambda p: not (p.status == "refuse" and p.confidence >= 0.8), "left to the model")
    server.when(q, {"refuse": "这个问题与财政数据无关。"})
    server.when("收入多少", {"clarify": {"question": "您要查询哪种收入？", "options": ["一般公共预算收入", "营业收入"]}})
    r = ask(assistant, q)
    assert r["status"] == "refused" and r["error"] == "这个问题与财政数据无关。"
    assert r["path"] == "llm" and r["llm"]["calls"] == 1
    r = ask(assistant, "收入多少")
    assert r["status"] == "clarify"
    assert r["clarification"]["options"] == ["一般公共预算收入", "营业收入"]
    assert len(r["clarification"]["refined_questions"]) == 2


# ----------------------------------------------------------------------------- the endpoint failing
def test_timeout_is_a_clear_chinese_error_and_the_process_lives_on(assistant, server, db_path):
    attach(assistant, server, timeout=1)
    server.script(Delay(4, REVENUE_2021), REVENUE_2021)
    t0 = time.perf_counter()
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert time.perf_counter() - t0 < 3.5
    assert r["status"] == "error"
    assert r["error"].startswith("大模型服务暂时不可用：请求超时（1秒）")
    assert r["llm"]["calls"] == 1
    # the same assistant and agent go on answering
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["status"] == "answered", r
    assert r["rows"][0][0] == pytest.approx(gb_revenue(db_path, 2021))


@pytest.mark.parametrize("reply, words", [
    (HTTPError(500, "boom"), "HTTP 500"),
    (HTTPError(503, "overloaded"), "HTTP 503"),
    (HTTPError(429, "slow down"), "HTTP 429"),
    (HTTPError(401, "bad key"), "HTTP 401"),
    (RawBody("<html>gateway</html>", 200, "text/html"), "大模型服务暂时不可用"),
])
def test_http_errors_are_clear_chinese_errors(assistant, server, reply, words):
    attach(assistant, server)
    server.script(reply, REVENUE_2021)
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["status"] == "error", r
    assert r["error"].startswith("大模型服务暂时不可用") and words in r["error"]
    assert len(server.requests) == 1  # no retries
    assert ask(assistant, "2021年一般公共预算收入是多少？")["status"] == "answered"


def test_hybrid_timeout_falls_back_to_the_rule_answer(assistant, server):
    attach(assistant, server, timeout=1)
    server.script(Delay(4, REVENUE_2021))
    q = pick(assistant, UNCLEAR, lambda p: p.status == "clarify", "answered by the rules with a clarifying question")
    r = ask(assistant, q, mode="hybrid")
    assert len(server.requests) == 1
    assert r["status"] == "clarify" and r["path"] == "rule"
    assert any(n.startswith("大模型服务暂时不可用：请求超时") and n.endswith("已改用规则解析") for n in r["notes"]), r.get("notes")


def test_hybrid_http_500_falls_back_to_the_rule_answer(assistant, server, db_path):
    attach(assistant, server)
    server.script(HTTPError(500))
    q = pick(assistant, UNSURE_REVENUE, rules_unsure_2021_revenue, "parsed with low confidence")
    r = ask(assistant, q, mode="hybrid")
    assert len(server.requests) == 1
    assert r["status"] == "answered" and r["path"] == "rule"
    assert r["rows"][0][0] == pytest.approx(gb_revenue(db_path, 2021))
    assert any("大模型服务暂时不可用" in n and "HTTP 500" in n and "已改用规则解析" in n for n in r["notes"])


def test_hybrid_uses_the_model_when_the_rules_are_unsure(assistant, server, db_path):
    attach(assistant, server)
    server.script({"query": {"metrics": ["gov_fund_revenue"], "filters": [{"dimension": "subject", "values": ["国有土地使用权出让收入"]}],
                             "time": {"start": "2021-01", "end": "2021-12"}}})
    q = pick(assistant, UNSURE_REVENUE + UNCLEAR, lambda p: p.status == "clarify" or p.confidence < 0.8, "uncertain")
    r = ask(assistant, q, mode="hybrid")
    assert r["status"] == "answered" and r["path"] == "llm", r
    assert r["query"]["filters"][0]["values"] == ["1030148"]
    want = scalar(db_path, "SELECT SUM(amount_wan) FROM fact_budget_revenue WHERE year = 2021 AND subject_code LIKE '1030148%'")
    assert r["rows"][0][0] == pytest.approx(want)
    # a question the rules are sure about never reaches the model
    r = ask(assistant, "2021年一般公共预算收入是多少？", mode="hybrid")
    assert r["path"] == "rule" and len(server.requests) == 1


def test_hybrid_bad_rounds_fall_back_to_the_rule_answer(assistant, server, db_path):
    attach(assistant, server)
    server.script({"query": {"metrics": ["nope"]}}, "???", {"sql": "SELECT nope FROM fact_gdp"})
    q = pick(assistant, UNSURE_REVENUE, rules_unsure_2021_revenue, "parsed with low confidence")
    r = ask(assistant, q, mode="hybrid")
    assert len(server.requests) == 3
    assert r["status"] == "answered" and r["path"] == "rule"
    assert r["rows"][0][0] == pytest.approx(gb_revenue(db_path, 2021))
    assert any("3次尝试未得到有效查询" in n and "已使用规则解析结果" in n for n in r["notes"])
    assert r["llm"]["calls"] == 3


def test_repeated_failures_open_the_circuit(assistant):
    from scripted_llm_server import _free_port

    agent = LLMAgent(assistant, base_url=f"http://127.0.0.1:{_free_port()}/v1", model="down", timeout=2,
                     examples_path=None)
    assistant.llm_agent = agent
    for _ in range(3):
        r = ask(assistant, "2021年一般公共预算收入是多少？")
        assert r["status"] == "error" and "无法连接" in r["error"]
        assert r["llm"]["calls"] == 1
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["status"] == "error" and "连续失败" in r["error"] and r["llm"]["calls"] == 0


# ----------------------------------------------------------------------------- structured-output methods
def test_function_calling_method(assistant, server, db_path):
    attach(assistant, server, structured="function_calling")
    server.script(REVENUE_2021)  # sent back as a tool call, since the request has tools
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["status"] == "answered", r
    body = server.requests[0]
    assert body["tools"][0]["function"]["name"] == "AgentOutput"
    assert r["rows"][0][0] == pytest.approx(gb_revenue(db_path, 2021))


def test_json_schema_method(assistant, server, db_path):
    attach(assistant, server, structured="json_schema")
    server.script(REVENUE_2021)
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["status"] == "answered", r
    fmt = server.requests[0]["response_format"]
    assert fmt["type"] == "json_schema" and "query" in json.dumps(fmt["json_schema"]["schema"])


def test_json_schema_unsupported_falls_back_to_json_mode(assistant, server):
    agent = attach(assistant, server, structured="json_schema")
    # what llama-cpp-python's server answers to an OpenAI json_schema response_format
    server.script(HTTPError(500, "1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                                 "'msg': \"Input should be 'text' or 'json_object'\"}"), REVENUE_2021, REVENUE_2021)
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["status"] == "answered", r
    assert [b["response_format"]["type"] for b in server.requests] == ["json_schema", "json_object"]
    assert r["llm"]["calls"] == 2 and r["llm"]["rounds"] == 1
    assert "端点不支持 json_schema，已改用 json_mode" in r["notes"]
    assert agent.method == "json_mode"
    ask(assistant, "2021年一般公共预算收入是多少？")
    assert server.requests[2]["response_format"]["type"] == "json_object"


def test_function_calling_unsupported_falls_back_to_json_mode(assistant, server):
    attach(assistant, server, structured="function_calling")
    server.script(HTTPError(400, "tool_choice is not supported by this model"), REVENUE_2021)
    r = ask(assistant, "2021年一般公共预算收入是多少？")
    assert r["status"] == "answered", r
    assert "tools" in server.requests[0] and "tools" not in server.requests[1]


# ----------------------------------------------------------------------------- conversations
RULE_CONVERSATIONS = [
    (["2021年一般公共预算收入是多少？", "那2020年呢？"],
     """SELECT SUM(r.amount_wan) FROM fact_budget_revenue r JOIN dim_subject s ON s.subject_code = r.subject_code
        WHERE s.budget_type = '一般公共预算' AND s.direction = '收入' AND r.year = 2020"""),
    (["2021年各产业营业收入", "只看前五"],
     """SELECT i.industry_name, SUM(o.revenue_wan) v FROM fact_enterprise_operation o
        JOIN dim_enterprise e ON e.enterprise_id = o.enterprise_id JOIN dim_industry i ON i.industry_code = e.industry_code
        WHERE o.year = 2021 GROUP BY 1 ORDER BY v DESC LIMIT 5"""),
    (["2021年税收收入是多少", "其中增值税呢"],
     "SELECT SUM(amount_wan) FROM fact_budget_revenue WHERE year = 2021 AND subject_code LIKE '10101%'"),
    (["2021年全口径税收是多少", "按产业拆分", "只看前三"],
     """SELECT i.industry_name, SUM(t.amount_yuan) v FROM fact_tax_payment t
        JOIN dim_enterprise e ON e.enterprise_id = t.enterprise_id JOIN dim_industry i ON i.industry_code = e.industry_code
        WHERE t.year = 2021 GROUP BY 1 ORDER BY v DESC LIMIT 3"""),
    (["2022年一般公共预算支出是多少", "按部门", "那2023年呢？"],
     """SELECT d.dept_name, SUM(x.amount_wan) v FROM fact_budget_expenditure x JOIN dim_department d ON d.dept_code = x.dept_code
        WHERE x.year = 2023 GROUP BY 1 ORDER BY v DESC"""),
]


def _same_result(got_rows, want_rows) -> None:
    assert len(got_rows) == len(want_rows)
    for g, w in zip(got_rows, want_rows):
        assert [str(x) for x in g[:-1]] == [str(x) for x in w[:-1]]
        assert g[-1] == pytest.approx(w[-1])


@pytest.mark.parametrize("turns, sql", RULE_CONVERSATIONS, ids=[c[0][-1] for c in RULE_CONVERSATIONS])
def test_rule_follow_ups(assistant, db_path, turns, sql):
    conv = Conversation()
    for q in turns:
        r = assistant.ask(q, as_of=AS_OF, conversation=conv)  # rule mode, no model
        assert r["status"] == "answered", (q, r)
    assert r["path"] == "rule"
    assert len(conv.history) == len(turns)
    _same_result(r["rows"], rows(db_path, sql))


def _q(metrics, year, **kw) -> dict:
    return {"metrics": metrics, "time": {"start": f"{year}-01", "end": f"{year}-12"}, **kw}


LLM_CONVERSATIONS = [
    ([("2021年一般公共预算收入是多少？", _q(["general_budget_revenue"], 2021)),
      ("那2020年呢？", _q(["general_budget_revenue"], 2020))],
     RULE_CONVERSATIONS[0][1]),
    ([("2021年各产业营业收入", _q(["enterprise_revenue"], 2021, dimensions=["industry"])),
      ("只看前五", _q(["enterprise_revenue"], 2021, dimensions=["industry"],
                      order_by=[{"field": "enterprise_revenue", "desc": True}], limit=5))],
     RULE_CONVERSATIONS[1][1]),
    ([("2021年税收收入是多少", _q(["tax_revenue_local"], 2021)),
      ("其中增值税呢", _q(["tax_revenue_local"], 2021, filters=[{"dimension": "subject", "values": ["10101"]}]))],
     RULE_CONVERSATIONS[2][1]),
    ([("2021年全口径税收是多少", _q(["tax_total"], 2021)),
      ("按产业拆分", _q(["tax_total"], 2021, dimensions=["industry"])),
      ("只看前三", _q(["tax_total"], 2021, dimensions=["industry"],
                      order_by=[{"field": "tax_total", "desc": True}], limit=3))],
     RULE_CONVERSATIONS[3][1]),
    ([("2022年一般公共预算支出是多少", _q(["general_budget_expenditure"], 2022)),
      ("按部门", _q(["general_budget_expenditure"], 2022, dimensions=["department"])),
      ("那2023年呢？", _q(["general_budget_expenditure"], 2023, dimensions=["department"]))],
     RULE_CONVERSATIONS[4][1]),
]


@pytest.mark.parametrize("turns, sql", LLM_CONVERSATIONS, ids=[c[0][-1][0] for c in LLM_CONVERSATIONS])
def test_llm_follow_ups(assistant, server, db_path, turns, sql):
    attach(assistant, server)
    for q, reply in turns:
        server.when(f"用户问题：{q}", {"query": reply})
    conv = Conversation()
    for i, (q, reply) in enumerate(turns):
        r = assistant.ask(q, as_of=AS_OF, conversation=conv, mode="llm")
        assert r["status"] == "answered" and r["path"] == "llm", (q, r)
        user = server.requests[i]["messages"][-1]["content"]
        if i == 0:
            assert "上一轮的查询" not in user
        else:  # the previous turn's structured query is in the prompt, as JSON
            prev = StructuredQuery.model_validate(turns[i - 1][1]).describe()
            assert "上一轮的查询" in user and json.dumps(prev["metrics"], ensure_ascii=False) in user
            assert f'"start": "{prev["time"]["start"]}"' in user
    assert len(server.requests) == len(turns)
    _same_result(r["rows"], rows(db_path, sql))


# ----------------------------------------------------------------------------- CLI and eval
def _cli_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOUSHU_LLM_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def test_cli_hybrid_without_llm_falls_back_and_says_so(assistant, db_path):
    q = pick(assistant, UNCLEAR + UNSURE_REVENUE, lambda p: not (p.status in ("ok", "refuse") and p.confidence >= 0.8),
             "one the hybrid mode would pass to a model")
    out = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "ask", q, "--db", str(db_path),
         "--as-of", "2026-11-15", "--mode", "hybrid", "--json", "--no-audit"],
        capture_output=True, text=True, env=_cli_env(), cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["path"] == "rule"
    assert any("未配置大模型" in n and "规则解析" in n for n in r["notes"]), r


def test_cli_llm_mode_uses_the_endpoint_from_the_environment(db_path, server):
    server.script(REVENUE_2021)
    out = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "ask", "2021年一般公共预算收入是多少？", "--db", str(db_path),
         "--as-of", "2026-11-15", "--mode", "llm", "--json", "--no-audit"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=_cli_env(YOUSHU_LLM_BASE_URL=server.base_url, YOUSHU_LLM_MODEL=server.model, YOUSHU_LLM_TIMEOUT="10",
                     YOUSHU_LLM_EXAMPLES="none"))
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["status"] == "answered" and r["path"] == "llm" and r["llm"]["calls"] == 1
    assert "20.99亿元" in r["answer"]
    assert len(server.requests) == 1


def test_cli_eval_run_llm_mode(db_path, server, tmp_path):
    gold = ("SELECT SUM(r.amount_wan) AS amount_wan FROM fact_budget_revenue r JOIN dim_subject s "
            "ON s.subject_code = r.subject_code WHERE s.budget_type = '一般公共预算' AND s.direction = '收入' AND r.year = 2021")
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join(json.dumps(i, ensure_ascii=False) for i in [
        {"id": "e1", "question": "2021年一般公共预算收入是多少？", "as_of": "2026-11-15", "expect": "answer", "gold_sql": gold},
        {"id": "e2", "question": "2021年财政收入怎么样", "as_of": "2026-11-15", "expect": "answer", "gold_sql": gold},
    ]), encoding="utf-8")
    server.when("用户问题：2021年一般公共预算收入是多少？", REVENUE_2021)
    server.when("2021年财政收入怎么样", "不是 JSON", REVENUE_2021)  # the fix prompt repeats the question
    out = tmp_path / "pred.jsonl"
    res = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "eval", "run", "--questions", str(qfile), "--out", str(out),
         "--db", str(db_path), "--mode", "llm"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env=_cli_env(YOUSHU_LLM_BASE_URL=server.base_url, YOUSHU_LLM_MODEL=server.model, YOUSHU_LLM_EXAMPLES="none"))
    assert res.returncode == 0, res.stderr
    preds = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [p["status"] for p in preds] == ["answered", "answered"]
    assert [p["llm"]["calls"] for p in preds] == [1, 2]
    report = json.loads(out.with_name("pred.report.json").read_text(encoding="utf-8"))
    assert "1.0" in json.dumps(report) or "100" in res.stdout


def test_eval_runner_goes_through_the_agent(assistant, server, tmp_path):
    from eval.runner import answer_all

    attach(assistant, server)
    server.when("用户问题：2021年一般公共预算收入是多少？", REVENUE_2021)
    server.when("用户问题：经开区的土地财政", HTTPError(500))
    items = [{"id": "a", "question": "2021年一般公共预算收入是多少？", "as_of": "2026-11-15"},
             {"id": "b", "question": "经开区的土地财政", "as_of": "2026-11-15"}]
    out = tmp_path / "pred.jsonl"
    with out.open("w", encoding="utf-8") as fh:
        preds = answer_all(assistant, items, mode="llm", out=fh)
    assert [p["status"] for p in preds] == ["answered", "error"]
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["id"] == "a" and lines[0]["llm"]["calls"] == 1


# ----------------------------------------------------------------------------- configuration, prompts, parsing
def test_config_from_env():
    assert LLMConfig.from_env({}) is None
    assert LLMConfig.from_env({"YOUSHU_LLM_BASE_URL": "http://x/v1"}) is None  # model missing
    c = LLMConfig.from_env({"YOUSHU_LLM_BASE_URL": "http://vllm:8000/v1/", "YOUSHU_LLM_MODEL": "qwen"})
    assert (c.base_url, c.model, c.api_key, c.timeout, c.structured, c.max_rounds) == (
        "http://vllm:8000/v1", "qwen", None, 30.0, "json_mode", 3)
    c = LLMConfig.from_env({"YOUSHU_LLM_BASE_URL": "https://api.deepseek.com/v1", "YOUSHU_LLM_MODEL": "deepseek-chat",
                            "YOUSHU_LLM_API_KEY": "k", "YOUSHU_LLM_TIMEOUT": "12.5",
                            "YOUSHU_LLM_STRUCTURED": "function_calling", "YOUSHU_LLM_MAX_ROUNDS": "2"})
    assert (c.api_key, c.timeout, c.structured, c.max_rounds) == ("k", 12.5, "function_calling", 2)
    c = LLMConfig.from_env({"YOUSHU_LLM_BASE_URL": "http://x/v1", "YOUSHU_LLM_MODEL": "m", "YOUSHU_LLM_TIMEOUT": "abc",
                            "YOUSHU_LLM_STRUCTURED": "xml", "YOUSHU_LLM_MAX_ROUNDS": "0"})
    assert (c.timeout, c.structured, c.max_rounds) == (30.0, "json_mode", 3) and len(c.warnings) == 3


def test_from_env_without_configuration_is_none(assistant, monkeypatch):
    for k in ("YOUSHU_LLM_BASE_URL", "YOUSHU_LLM_MODEL"):
        monkeypatch.delenv(k, raising=False)
    assert LLMAgent.from_env(assistant) is None
    r = ask(assistant, "2021年一般公共预算收入是多少？", mode="llm")
    assert r["status"] == "answered" and r["path"] == "rule"
    assert any("未配置大模型" in n for n in r["notes"])


def test_prompt_templates_are_package_data():
    for name in ("agent_system.md", "agent_user.md", "agent_fix.md", "agent_examples.md"):
        assert load_prompt(name).strip()
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'prompts = ["*.md"' in pyproject


def test_prompt_covers_the_catalogue_and_stays_compact(assistant, server):
    agent = attach(assistant, server)
    text = agent.catalogue_summary()
    cat = assistant.catalogue
    for m in cat.metrics.values():
        assert m.name in text and m.label in text
    for d in cat.dimensions.values():
        assert d.name in text
    for t in cat.tables.values():
        assert t.name in text
    assert "credit_code*" in text and "payee_name*" in text
    sizes = agent.prompt_sizes()  # estimated: one token per CJK character, one per 4 other characters
    assert sizes["catalogue"] < 2500, sizes
    assert sizes["system"] < 4500, sizes


def test_hand_written_examples_are_valid(assistant):
    examples = parse_examples(load_prompt("agent_examples.md"))
    assert len(examples) >= 6
    kinds = set()
    for ex in examples:
        out = AgentOutput.model_validate(ex["answer"])
        kinds.add(out.kind)
        if out.kind == "query":
            assistant.compiler.compile(out.query)
        elif out.kind == "sql":
            guard_sql(out.sql, assistant.catalogue)
        if ex.get("context"):
            StructuredQuery.model_validate(ex["context"])
    assert kinds == {"query", "sql", "clarify", "refuse"}


def test_examples_come_from_the_train_split_only(assistant, server, tmp_path):
    qfile = tmp_path / "questions.jsonl"
    gold = ("SELECT SUM(r.amount_wan) AS amount_wan FROM fact_budget_revenue r JOIN dim_subject s ON s.subject_code = r.subject_code "
            "WHERE s.budget_type = '一般公共预算' AND s.direction = '收入' AND r.year = {y}")
    items = [
        {"id": "t1", "question": "训练题：2019年一般公共预算收入", "split": "train", "expect": "answer", "gold_sql": gold.format(y=2019), "as_of": "2026-11-15"},
        {"id": "t2", "question": "训练题：2018年各部门一般公共预算支出的明细清单", "split": "train", "expect": "answer",
         "gold_sql": "SELECT dept_code, SUM(amount_wan) AS amount_wan FROM fact_budget_expenditure WHERE year = 2018 GROUP BY dept_code"},
        {"id": "d1", "question": "开发题：2019年一般公共预算收入", "split": "dev", "expect": "answer", "gold_sql": gold.format(y=2019)},
        {"id": "x1", "question": "测试题：2019年一般公共预算收入", "split": "test", "expect": "answer", "gold_sql": gold.format(y=2019)},
    ]
    qfile.write_text("\n".join(json.dumps(i, ensure_ascii=False) for i in items), encoding="utf-8")
    agent = attach(assistant, server, examples_path=qfile)
    server.script(REVENUE_2021)
    ask(assistant, "2019年一般公共预算收入是多少")
    system = server.requests[0]["messages"][0]["content"]
    assert "训练题：2019年一般公共预算收入" in system
    assert "开发题" not in system and "测试题" not in system
    # a train question the rules reproduce exactly is shown as a structured query …
    ex = agent._example_for(items[0])
    assert ex["answer"] == {"query": {"metrics": ["general_budget_revenue"], "time": {"start": "2019-01", "end": "2019-12"}}}
    # … otherwise as its gold SQL
    ex = agent._example_for(items[1])
    assert "sql" in ex["answer"]


def test_default_examples_file_has_train_items(assistant, server):
    qfile = REPO / "eval" / "questions.jsonl"
    if not qfile.exists():
        pytest.skip("eval/questions.jsonl not present")
    agent = attach(assistant, server, examples_path=qfile)
    items = [json.loads(line) for line in qfile.read_text(encoding="utf-8").splitlines() if line.strip()]
    non_train = {i["question"] for i in items if i.get("split") != "train"}
    train = {i["question"] for i in items if i.get("split") == "train"}
    for q in ["2021年一般公共预算收入是多少？", "各部门支出排名", "2023年GDP增速"]:
        shown = agent.train_examples(q)
        assert shown, q
        for ex in shown:
            assert ex["question"] in train and ex["question"] not in non_train


@pytest.mark.parametrize("text, want", [
    ('{"refuse": "不行"}', {"refuse": "不行"}),
    ('```json\n{"sql": "SELECT 1"}\n```', {"sql": "SELECT 1"}),
    ('好的，结果如下：\n{"query": {"metrics": ["gdp"]}}\n以上。', {"query": {"metrics": ["gdp"]}}),
    ('<think>先想一想 {不是JSON}</think>{"refuse": "x"}', {"refuse": "x"}),
])
def test_extract_json(text, want):
    assert extract_json(text) == want


def test_extract_json_rejects_prose():
    from assistant.llm_agent import _RoundError

    with pytest.raises(_RoundError, match="不是合法的 JSON"):
        extract_json("我无法回答")


@pytest.mark.parametrize("sql, write", [
    ("SELECT 1", False),
    ("WITH a AS (SELECT 1 AS x) SELECT x FROM a", False),
    ("SELECT 1 UNION ALL SELECT 2", False),
    ("DELETE FROM t", True),
    ("SELECT 1; DROP TABLE t", True),
    ("PRAGMA database_list", True),
    ("COPY t TO 'x.csv'", True),
    ("INSTALL httpfs", True),
    ("SET threads = 1", True),
])
def test_is_write_statement(sql, write):
    assert is_write_statement(sql) is write


# ----------------------------------------------------------------------------- a real endpoint
def _real_endpoint():
    """(base_url, model, api_key) named by the environment, else a local llama.cpp server, else skip."""
    url = os.environ.get("YOUSHU_TEST_LLM_BASE_URL") or os.environ.get("YOUSHU_LLM_BASE_URL")
    if url:
        model = os.environ.get("YOUSHU_TEST_LLM_MODEL") or os.environ.get("YOUSHU_LLM_MODEL") or "default"
        yield url, model, os.environ.get("YOUSHU_TEST_LLM_API_KEY") or os.environ.get("YOUSHU_LLM_API_KEY")
        return
    from llm_server import DEFAULT_MODEL_PATH, MODEL_ALIAS, llama_cpp_available, local_llama_server

    if not DEFAULT_MODEL_PATH.is_file():
        pytest.skip(f"no endpoint in YOUSHU_TEST_LLM_BASE_URL / YOUSHU_LLM_BASE_URL and no model file {DEFAULT_MODEL_PATH} "
                    "(run scripts/setup_local_llm.sh)")
    if not llama_cpp_available():
        pytest.skip("no endpoint in YOUSHU_TEST_LLM_BASE_URL / YOUSHU_LLM_BASE_URL and llama-cpp-python[server] is not "
                    "installed (run scripts/setup_local_llm.sh)")
    with local_llama_server(DEFAULT_MODEL_PATH, n_ctx=8192) as url:
        yield url, MODEL_ALIAS, None


@pytest.fixture(scope="module")
def real_endpoint():
    yield from _real_endpoint()


@pytest.mark.realllm
def test_same_client_talks_to_a_real_endpoint(shared_assistant, real_endpoint):
    url, model, key = real_endpoint
    structured = os.environ.get("YOUSHU_LLM_STRUCTURED", "json_mode")
    # a 0.5B model on two CPU cores reads the ~4k-token prompt in tens of seconds (minutes when busy)
    agent = LLMAgent(shared_assistant, base_url=url, model=model, api_key=key, timeout=900,
                     structured=structured, max_rounds=1, examples_path=None)
    shared_assistant.llm_agent = agent
    try:
        r = shared_assistant.ask("2021年一般公共预算收入是多少？", as_of=AS_OF, mode="llm")
    finally:
        shared_assistant.llm_agent = None
    # a small local model may not get the query right; the plumbing must work end to end
    assert r["status"] in ("answered", "clarify", "refused"), r
    assert r["llm"]["calls"] >= 1 and r["llm"]["tokens"] > 0 and r["timings_ms"]["llm"] > 0
    if r["status"] == "answered":
        assert r["path"] in ("llm", "llm-sql") and r["sql"]
