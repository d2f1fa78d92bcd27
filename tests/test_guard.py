"""Governance: the SQL guard (attack suite, roles, masking), the read-only executor, the audit log.

Runs against a tiny DuckDB built here with the contract tables' columns (plus a table outside
the catalogue, ``zz_secret``, that no query may ever read), so it does not depend on the
warehouse generator.
"""
from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import sqlglot
from sqlglot import exp

from semantic_layer.audit import AuditLog, audit_main
from semantic_layer.catalogue import load_catalogue
from semantic_layer.executor import READ_ONLY_CONFIG, Executor, QueryError, QueryTimeout
from semantic_layer.guard import (
    GuardError,
    GuardedSQL,
    RoleContext,
    function_denied,
    guard_sql,
    parse_role,
)

CAT = load_catalogue()
ANALYST = RoleContext("分析师")
LEADER = RoleContext("领导")
AUDITOR = RoleContext("审计")
DEPT = RoleContext("部门用户", "004")
ALL_ROLES = [ANALYST, LEADER, AUDITOR, DEPT]

# ----------------------------------------------------------------------------- tiny warehouse
DDL = {
    "dim_subject": "subject_code VARCHAR, subject_name VARCHAR, parent_code VARCHAR, level INTEGER, direction VARCHAR, budget_type VARCHAR",
    "dim_department": "dept_code VARCHAR, dept_name VARCHAR, dept_type VARCHAR",
    "dim_industry": "industry_code VARCHAR, industry_name VARCHAR, is_leading BOOLEAN, sector VARCHAR",
    "dim_enterprise": "enterprise_id INTEGER, enterprise_name VARCHAR, credit_code VARCHAR, industry_code VARCHAR, scale VARCHAR, ownership VARCHAR, is_above_scale BOOLEAN, established_date DATE, registered_capital_wan DOUBLE, status VARCHAR",
    "dim_project": "project_id VARCHAR, project_name VARCHAR, dept_code VARCHAR, subject_code VARCHAR, project_type VARCHAR, start_year INTEGER, total_budget_wan DOUBLE",
    "fact_budget_revenue": "year INTEGER, month INTEGER, subject_code VARCHAR, amount_wan DOUBLE",
    "fact_budget_expenditure": "year INTEGER, month INTEGER, dept_code VARCHAR, subject_code VARCHAR, economic_class VARCHAR, amount_wan DOUBLE",
    "fact_budget_plan": "year INTEGER, budget_type VARCHAR, direction VARCHAR, subject_code VARCHAR, dept_code VARCHAR, plan_type VARCHAR, amount_wan DOUBLE",
    "fact_tax_payment": "year INTEGER, month INTEGER, enterprise_id INTEGER, subject_code VARCHAR, amount_yuan DOUBLE",
    "fact_enterprise_operation": "year INTEGER, month INTEGER, enterprise_id INTEGER, revenue_wan DOUBLE, industrial_output_wan DOUBLE, employees INTEGER",
    "fact_gdp": "year INTEGER, quarter INTEGER, sector VARCHAR, value_yi_ytd DOUBLE, growth_pct_ytd DOUBLE",
    "fact_legal_entity": "year INTEGER, month INTEGER, industry_code VARCHAR, new_count INTEGER",
    "fact_payment": "payment_id VARCHAR, pay_date DATE, dept_code VARCHAR, project_id VARCHAR, subject_code VARCHAR, economic_class VARCHAR, payee_name VARCHAR, payee_type VARCHAR, amount_yuan DOUBLE, purpose VARCHAR",
    "fact_project_performance": "project_id VARCHAR, year INTEGER, budget_wan DOUBLE, spent_wan DOUBLE, self_score DOUBLE, grade VARCHAR",
    "pub_region_budget": "year INTEGER, region VARCHAR, direction VARCHAR, item VARCHAR, value_yi DOUBLE, source_table VARCHAR",
    "zz_secret": "secret VARCHAR",
}
DEPTS = [("001", "党政办公室"), ("002", "财政金融局"), ("003", "经济发展局"), ("004", "公安分局")]
PERSONS = ["张三丰", "李四光", "王小明", "赵敏"]


def build_tiny_warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    for name, cols in DDL.items():
        con.execute(f"CREATE TABLE {name} ({cols})")
    con.execute("INSERT INTO zz_secret VALUES ('TOP-SECRET')")
    con.executemany("INSERT INTO dim_department VALUES (?, ?, '行政单位')", DEPTS)
    con.executemany(
        "INSERT INTO dim_subject VALUES (?, ?, ?, ?, ?, '一般公共预算')",
        [("101", "税收收入", None, 1, "收入"), ("10101", "增值税", "101", 2, "收入"),
         ("205", "教育支出", None, 1, "支出"), ("20502", "普通教育", "205", 2, "支出"),
         ("204", "公共安全支出", None, 1, "支出"), ("20402", "公安", "204", 2, "支出")],
    )
    con.executemany(
        "INSERT INTO dim_industry VALUES (?, ?, ?, ?)",
        [("01", "电子信息", True, "第二产业"), ("02", "家电", True, "第二产业"), ("10", "金融业", False, "第三产业")],
    )
    ents = []
    for i in range(1, 21):
        code = f"9136{i:04d}MA{i:02d}X{i:05d}"[:18].ljust(18, "K")
        ents.append((i, f"江西测试{i}科技有限公司", code, ["01", "02", "10"][i % 3], "小型", "民营", i % 2 == 0,
                     f"2015-01-{i:02d}", 100.0 * i, "存续"))
    con.executemany("INSERT INTO dim_enterprise VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ents)
    projects, payments, expend, plans = [], [], [], []
    n = 0
    for code, _ in DEPTS:
        for k in range(3):
            pid = f"P{code}{k}"
            projects.append((pid, f"项目{code}-{k}", code, "20502", "民生保障", 2020, 1000.0 + k))
        for k in range(12):
            n += 1
            individual = k % 3 == 0
            payee = PERSONS[k % len(PERSONS)] if individual else f"江西测试{k + 1}科技有限公司"
            payments.append((f"PAY{n:05d}", f"2021-{k + 1:02d}-15", code, f"P{code}{k % 3}", "20502", "商品和服务支出",
                             payee, "个人" if individual else "企业", 1000.0 * (k + 1) + int(code), f"用途{k}"))
            expend.append((2021, k + 1, code, "20502", "商品和服务支出", 10.0 * (k + 1) + int(code)))
        plans.append((2021, "一般公共预算", "支出", "20502", code, "年初预算", 500.0 + int(code)))
    plans.append((2021, "一般公共预算", "收入", "10101", None, "年初预算", 9999.0))
    con.executemany("INSERT INTO dim_project VALUES (?, ?, ?, ?, ?, ?, ?)", projects)
    con.executemany("INSERT INTO fact_payment VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", payments)
    con.executemany("INSERT INTO fact_budget_expenditure VALUES (?, ?, ?, ?, ?, ?)", expend)
    con.executemany("INSERT INTO fact_budget_plan VALUES (?, ?, ?, ?, ?, ?, ?)", plans)
    con.executemany("INSERT INTO fact_budget_revenue VALUES (2021, ?, '10101', ?)", [(m, 100.0 * m) for m in range(1, 13)])
    con.executemany("INSERT INTO fact_tax_payment VALUES (2021, ?, ?, '10101', ?)", [(m, (m % 20) + 1, 1e4 * m) for m in range(1, 13)])
    con.executemany("INSERT INTO fact_enterprise_operation VALUES (2021, ?, ?, ?, NULL, 10)", [(m, (m % 20) + 1, 50.0 * m) for m in range(1, 13)])
    con.executemany("INSERT INTO fact_gdp VALUES (2021, ?, '合计', ?, 8.4)", [(q, 180.0 * q) for q in range(1, 5)])
    con.executemany("INSERT INTO fact_legal_entity VALUES (2021, ?, '01', ?)", [(m, m) for m in range(1, 13)])
    con.execute("INSERT INTO fact_project_performance VALUES ('P0010', 2021, 100, 90, 88.5, '良')")
    con.execute("INSERT INTO pub_region_budget VALUES (2021, '北京', '支出', '教育支出', 1234.5, '7-6')")
    con.execute(
        """CREATE VIEW v_budget_plan_effective AS
        SELECT year, budget_type, direction, subject_code, dept_code, amount_wan FROM (
          SELECT *, row_number() OVER (PARTITION BY year, budget_type, direction, subject_code, dept_code
                                       ORDER BY plan_type = '调整预算' DESC) AS rn
          FROM fact_budget_plan) WHERE rn = 1"""
    )
    con.close()


@pytest.fixture(scope="module")
def db_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("governance") / "tiny.duckdb"
    build_tiny_warehouse(path)
    return path


@pytest.fixture(scope="module")
def executor(db_path) -> Executor:
    ex = Executor(db_path)
    yield ex
    ex.close()


def run(executor: Executor, sql: str, role: RoleContext, **kw):
    g = guard_sql(sql, CAT, role, **kw)
    return g, executor.run(g.sql)


# ----------------------------------------------------------------------------- attack suite
# (kind, sql, mutating?) — every one must raise GuardError for every role.
ATTACKS: list[tuple[str, str, bool]] = [
    # writes: DDL / DML
    ("ddl", "DROP TABLE fact_payment", True),
    ("ddl", "dRoP TaBlE fact_payment", True),
    ("ddl", "drop\n\t  table\n   fact_payment", True),
    ("dml", "DELETE FROM fact_payment", True),
    ("dml", "UPDATE dim_enterprise SET credit_code = 'x'", True),
    ("dml", "UPDATE fact_payment SET amount_yuan = 0 WHERE dept_code = '004'", True),
    ("dml", "INSERT INTO dim_department VALUES ('999', '黑客', '行政单位')", True),
    ("dml", "INSERT INTO dim_department SELECT * FROM dim_department", True),
    ("ddl", "CREATE TABLE stolen AS SELECT * FROM dim_enterprise", True),
    ("ddl", "CREATE OR REPLACE TABLE dim_department AS SELECT 1 AS a", True),
    ("ddl", "CREATE VIEW v AS SELECT * FROM fact_payment", True),
    ("ddl", "CREATE TEMP TABLE t AS SELECT 1", True),
    ("ddl", "CREATE MACRO evil() AS 1", True),
    ("ddl", "CREATE SEQUENCE s", True),
    ("ddl", "ALTER TABLE dim_department ADD COLUMN x INTEGER", True),
    ("ddl", "ALTER TABLE dim_department RENAME TO d2", True),
    ("ddl", "TRUNCATE fact_payment", True),
    ("dml", "MERGE INTO dim_department d USING dim_department s ON d.dept_code = s.dept_code WHEN MATCHED THEN DELETE", True),
    ("into", "SELECT * INTO stolen FROM fact_payment", True),
    ("cte-dml", "WITH x AS (SELECT 1) DELETE FROM fact_payment", True),
    ("cte-dml", "WITH x AS (DELETE FROM fact_payment RETURNING *) SELECT * FROM x", True),
    ("subquery-dml", "SELECT * FROM (DELETE FROM fact_payment RETURNING *) t", True),
    ("subquery-dml", "SELECT * FROM fact_payment WHERE dept_code IN (INSERT INTO dim_department VALUES ('1','2','3') RETURNING dept_code)", True),
    ("ddl", "CREATE SECRET s (TYPE S3, KEY_ID 'x', SECRET 'y')", True),
    # several statements, comment tricks
    ("multi", "SELECT 1; DROP TABLE fact_payment", True),
    ("multi", "SELECT 1;DELETE FROM fact_payment;", True),
    ("multi", "SELECT 1; SELECT 2", False),
    ("comment", "SELECT 1; -- ", False),
    ("comment", "SELECT 1; -- \nDROP TABLE fact_payment", True),
    ("comment", "SELECT 1 --\n; DROP TABLE dim_department", True),
    ("comment", "/* */ DROP TABLE fact_payment", True),
    ("comment", "/* SELECT */ DELETE FROM fact_payment", True),
    ("comment", "-- 只是查询\nDELETE FROM fact_payment", True),
    ("comment", "SELECT 1 /* ; */; DROP TABLE dim_department", True),
    ("comment", "SELECT '1'';DROP TABLE x;--'; DROP TABLE dim_department", True),
    ("multi", ";;DROP TABLE fact_payment", True),
    ("multi", "SELECT 1\n;\nUPDATE fact_payment SET amount_yuan = 0", True),
    # commands
    ("pragma", "PRAGMA table_info('fact_payment')", False),
    ("pragma", "PRAGMA database_list", False),
    ("pragma", "pragma enable_profiling", True),
    ("attach", "ATTACH '/tmp/youshu_evil.db' AS evil", True),
    ("attach", "ATTACH ':memory:' AS m", True),
    ("attach", "DETACH evil", True),
    ("copy", "COPY fact_payment TO '/tmp/youshu_evil.csv'", True),
    ("copy", "COPY (SELECT * FROM dim_enterprise) TO '/tmp/youshu_evil.parquet' (FORMAT PARQUET)", True),
    ("copy", "COPY dim_department FROM '/etc/passwd'", True),
    ("install", "INSTALL httpfs", True),
    ("install", "LOAD httpfs", True),
    ("install", "FORCE INSTALL httpfs FROM community", True),
    ("install", "LOAD '/tmp/evil.duckdb_extension'", True),
    ("set", "SET threads = 1", True),
    ("set", "SET enable_external_access = true", True),
    ("set", "SET GLOBAL access_mode = 'READ_WRITE'", True),
    ("set", "RESET threads", True),
    ("set", "SET VARIABLE x = 1", True),
    ("export", "EXPORT DATABASE '/tmp/youshu_evil_dump'", True),
    ("export", "IMPORT DATABASE '/tmp/youshu_evil_dump'", True),
    ("call", "CALL pragma_version()", False),
    ("call", "CALL start_ui()", True),
    ("use", "USE main", True),
    ("checkpoint", "CHECKPOINT", True),
    ("checkpoint", "FORCE CHECKPOINT", True),
    ("vacuum", "VACUUM", True),
    ("vacuum", "VACUUM ANALYZE fact_payment", True),
    ("transaction", "BEGIN TRANSACTION", True),
    ("transaction", "COMMIT", True),
    ("describe", "DESCRIBE fact_payment", False),
    ("describe", "SHOW TABLES", False),
    ("describe", "SHOW ALL TABLES", False),
    ("describe", "SUMMARIZE fact_payment", False),
    ("prepare", "PREPARE p AS SELECT 1", True),
    ("prepare", "EXECUTE p", True),
    ("prepare", "DEALLOCATE p", True),
    ("other", "VALUES (1), (2)", False),
    ("other", "PIVOT fact_payment ON dept_code USING sum(amount_yuan)", False),
    # files and network
    ("file", "SELECT * FROM read_csv('/etc/passwd')", False),
    ("file", "SELECT * FROM read_csv_auto('/etc/passwd')", False),
    ("file", "select * from READ_CSV('/etc/passwd', header=false)", False),
    ("file", "SELECT * FROM '/etc/passwd'", False),
    ("file", "SELECT * FROM 'data/youshu.duckdb'", False),
    ("file", "FROM '/etc/passwd'", False),
    ("file", "SELECT * FROM read_parquet('s3://bucket/x.parquet')", False),
    ("file", "SELECT * FROM parquet_scan('x.parquet')", False),
    ("file", "SELECT * FROM parquet_metadata('x.parquet')", False),
    ("network", "SELECT * FROM read_json_auto('https://example.com/x.json')", False),
    ("file", "SELECT * FROM read_json('/etc/passwd')", False),
    ("file", "SELECT * FROM read_text('/etc/passwd')", False),
    ("file", "SELECT * FROM read_blob('/etc/shadow')", False),
    ("file", "SELECT * FROM glob('/*')", False),
    ("file", "SELECT * FROM sniff_csv('/etc/passwd')", False),
    ("file", "SELECT (SELECT content FROM read_text('/etc/passwd'))", False),
    ("file", "SELECT * FROM fact_payment WHERE payee_name IN (SELECT * FROM read_csv('/etc/passwd'))", False),
    ("file", "SELECT * FROM fact_payment, LATERAL read_csv('/etc/passwd')", False),
    ("file", "SELECT ReAd_CsV('/etc/passwd')", False),
    ('file', 'SELECT "read_csv"(\'/etc/passwd\')', False),
    ("file", "WITH x AS (SELECT * FROM read_parquet('/tmp/x.parquet')) SELECT * FROM x", False),
    ("file", "SELECT payee_name FROM fact_payment UNION ALL SELECT * FROM read_text('/etc/passwd')", False),
    ("file", "SELECT * FROM iceberg_scan('s3://x')", False),
    ("file", "SELECT * FROM sqlite_scan('/tmp/x.db', 't')", False),
    ("file", "SELECT * FROM delta_scan('/tmp/x')", False),
    ("network", "SELECT * FROM postgres_scan('host=evil', 'public', 't')", False),
    ("network", "SELECT * FROM http_get('http://example.com')", False),
    ("env", "SELECT getenv('HOME')", False),
    ("env", "SELECT 'HOME'.getenv()", False),
    ("env", "SELECT GETENV('AWS_SECRET_ACCESS_KEY') AS k FROM dim_department", False),
    ("env", "SELECT current_setting('home_directory')", False),
    ("env", "SELECT getvariable('x')", False),
    ("exec", "SELECT * FROM query('SELECT * FROM zz_secret')", False),
    ("exec", "SELECT * FROM query_table('zz_secret')", False),
    ("exec", "SELECT json_execute_serialized_sql('{}')", False),
    ("exec", "SELECT * FROM fact_payment WHERE dept_code = (SELECT json_execute_serialized_sql('{}'))", False),
    ("system", "SELECT * FROM duckdb_tables()", False),
    ("system", "SELECT * FROM duckdb_settings()", False),
    ("system", "SELECT * FROM duckdb_secrets()", False),
    ("system", "SELECT * FROM duckdb_extensions()", False),
    ("system", "SELECT * FROM pragma_table_info('fact_payment')", False),
    ("system", "SELECT nextval('s')", False),
    ("tablefn", "SELECT * FROM range(1000000000)", False),
    ("tablefn", "SELECT * FROM generate_series(1, 10)", False),
    ("tablefn", "SELECT * FROM unnest(['a', 'b'])", False),
    ("tablefn", "SELECT * FROM test_all_types()", False),
    # system catalogs and tables outside the catalogue
    ("catalog", "SELECT * FROM information_schema.tables", False),
    ("catalog", "SELECT column_name FROM information_schema.columns WHERE table_name = 'zz_secret'", False),
    ("catalog", "SELECT * FROM INFORMATION_SCHEMA.SCHEMATA", False),
    ("catalog", "SELECT * FROM sqlite_master", False),
    ("catalog", "SELECT * FROM pg_catalog.pg_class", False),
    ("catalog", "SELECT * FROM pg_tables", False),
    ("catalog", "SELECT * FROM duckdb_tables", False),
    ("catalog", "SELECT * FROM main.duckdb_tables", False),
    ("catalog", "SELECT * FROM system.main.duckdb_settings", False),
    ("outside", "SELECT * FROM zz_secret", False),
    ("outside", "SELECT * FROM main.zz_secret", False),
    ("outside", 'SELECT * FROM "ZZ_SECRET"', False),
    ("outside", "SELECT * FROM evil.main.fact_payment", False),
    ("outside", "SELECT * FROM temp.main.t", False),
    ("outside", "SELECT * FROM fact_payment f JOIN zz_secret s ON true", False),
    ("outside", "SELECT * FROM fact_payment WHERE EXISTS (SELECT 1 FROM zz_secret)", False),
    ("cte-scope", "WITH a AS (SELECT * FROM zz_secret), zz_secret AS (SELECT 1 AS x) SELECT * FROM a", False),
    ("cte-scope", "WITH zz_secret AS (SELECT * FROM zz_secret) SELECT * FROM zz_secret", False),
    ("cte-scope", "WITH RECURSIVE zz_secret AS (SELECT * FROM zz_secret) SELECT * FROM zz_secret", False),
    ("cte-scope", "SELECT * FROM (WITH zz_secret AS (SELECT 1 AS x) SELECT * FROM zz_secret) t, zz_secret", False),
    ("cte-scope", "WITH fact_payment AS (SELECT * FROM fact_payment) SELECT * FROM fact_payment", False),
    ("cte-scope", "WITH duckdb_settings AS (SELECT 1) SELECT * FROM duckdb_settings", False),
    # columns outside the catalogue
    ("column", "SELECT foo FROM fact_payment", False),
    ("column", "SELECT f.nonexistent FROM fact_payment f", False),
    ("column", "SELECT dept_code FROM fact_payment UNION SELECT secret FROM dim_department", False),
    # unicode and invisible characters
    ("unicode", "SELECT 1\u200b; DROP TABLE fact_payment", True),
    ("unicode", "SELECT 1\uff1b DROP TABLE fact_payment", True),
    ("unicode", "SELECT * FROM \uff46act_payment", False),
    ("unicode", "SELECT * FROM fact_payment\u202e", False),
    ("unicode", "DRO\u0000P TABLE fact_payment", True),
    ("unicode", "SELECT 1\u0000; DROP TABLE fact_payment", True),
    ("unicode", "\uff24\uff32\uff2f\uff30 TABLE fact_payment", True),
    ("unicode", "SELECT * FROM zz_secret\u2060", False),
    ("empty", "", False),
    ("empty", "   \n\t ", False),
    ("empty", "-- nothing", False),
    ("empty", ";", False),
]


def test_attack_suite_is_large_enough():
    assert len(ATTACKS) >= 60
    kinds = {k for k, _, _ in ATTACKS}
    assert {"ddl", "dml", "multi", "comment", "file", "network", "env", "catalog", "attach", "copy", "pragma",
            "set", "install", "unicode", "cte-scope", "tablefn"} <= kinds


@pytest.mark.parametrize("kind,sql,mutating", ATTACKS, ids=[f"{i:03d}-{k}" for i, (k, _, _) in enumerate(ATTACKS)])
@pytest.mark.parametrize("role", ALL_ROLES, ids=str)
def test_attack_rejected(kind, sql, mutating, role):
    with pytest.raises(GuardError) as info:
        guard_sql(sql, CAT, role)
    msg = str(info.value)
    assert msg and re.search(r"[\u4e00-\u9fff]", msg), msg  # a Chinese message for the user


def test_attack_messages():
    def msg(sql):
        with pytest.raises(GuardError) as info:
            guard_sql(sql, CAT, ANALYST)
        return str(info.value)

    assert "只允许查询（SELECT）语句" in msg("DELETE FROM fact_payment")
    assert "不能访问数据目录之外的表：zz_secret" in msg("SELECT * FROM zz_secret")
    assert "系统目录" in msg("SELECT * FROM information_schema.tables")
    assert "字段不存在：fact_payment.foo" in msg("SELECT foo FROM fact_payment")
    assert "字段不存在：fact_payment.foo" in msg("SELECT f.foo FROM fact_payment f JOIN dim_department d ON f.dept_code = d.dept_code")
    assert "不允许使用读取文件或网络的函数：read_csv" in msg("SELECT * FROM read_csv('/etc/passwd')")
    assert "不允许使用读取文件或网络的函数：read_text" in msg("SELECT * FROM fact_payment, LATERAL read_text('/etc/passwd')")
    assert "表函数" in msg("SELECT * FROM range(10)")
    assert "getenv" in msg("SELECT getenv('HOME')")
    assert "一条" in msg("SELECT 1; DROP TABLE x")


def test_attacks_leave_database_unchanged(db_path, tmp_path):
    """Everything through guard+executor, then the mutating ones straight into the executor."""
    with Executor(db_path) as ex:
        before = ex.table_checksums()
        for _, sql, _ in ATTACKS:
            for role in ALL_ROLES:
                try:
                    g = guard_sql(sql, CAT, role)
                except GuardError:
                    continue
                ex.run(g.sql, timeout_s=2)  # pragma: no cover - would be a guard failure
                pytest.fail(f"guard let through: {sql!r}")
        # second line of defence: the read-only executor alone refuses every write
        for _, sql, mutating in ATTACKS:
            if not mutating:
                continue
            sql = sql.replace("/tmp/", f"{tmp_path}/")
            try:
                ex.run(sql, timeout_s=2)
            except QueryError:
                pass
        after = ex.table_checksums()
    assert before == after
    assert "zz_secret" in before and "fact_payment" in before and "__schema__" in before
    assert not list(tmp_path.iterdir()), "a file was written"


# ----------------------------------------------------------------------------- what passes
def test_plain_queries_pass_and_run(executor):
    for sql in [
        "SELECT 1",
        "SELECT 1;",
        "SELECT count(*) FROM fact_payment -- 注释\n",
        "/* 按部门 */ SELECT d.dept_name, sum(f.amount_yuan) AS amt FROM fact_payment f JOIN dim_department d ON d.dept_code = f.dept_code GROUP BY 1 ORDER BY 2 DESC",
        "WITH t AS (SELECT dept_code, sum(amount_wan) AS s FROM fact_budget_expenditure GROUP BY ALL) SELECT * FROM t WHERE s > 0",
        "SELECT year, sum(amount_wan) FROM fact_budget_revenue GROUP BY year UNION ALL SELECT year, sum(amount_wan) FROM fact_budget_expenditure GROUP BY year",
        "SELECT * FROM v_budget_plan_effective",
        "FROM dim_department",
        "SELECT * EXCLUDE (credit_code) FROM dim_enterprise",
        "SELECT e.enterprise_name, t.amount_yuan FROM fact_tax_payment t JOIN dim_enterprise e USING (enterprise_id) QUALIFY row_number() OVER (ORDER BY t.amount_yuan DESC) <= 3",
        "SELECT x FROM (VALUES (1), (2)) AS v(x)",
        "SELECT current_date, strftime(DATE '2021-01-01', '%Y年%m月')",
        "(SELECT dept_code FROM dim_department) LIMIT 3",
        "SELECT \"dept_name\" FROM \"DIM_DEPARTMENT\"",
        "SELECT * FROM main.dim_department",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
        "SELECT list_transform([1, 2], x -> x + 1)",
    ]:
        for role in ALL_ROLES:
            g = guard_sql(sql, CAT, role)
            assert isinstance(g, GuardedSQL)
            executor.run(g.sql)


def test_limit_added_lowered_or_kept():
    g = guard_sql("SELECT * FROM dim_department", CAT, ANALYST, max_rows=50)
    assert g.limited and g.sql.endswith("LIMIT 50")
    g = guard_sql("SELECT * FROM dim_department LIMIT 100000", CAT, ANALYST, max_rows=50)
    assert g.limited and "LIMIT 50" in g.sql and "100000" not in g.sql
    g = guard_sql("SELECT * FROM dim_department LIMIT 5", CAT, ANALYST, max_rows=50)
    assert not g.limited and g.sql.endswith("LIMIT 5")
    g = guard_sql("SELECT 1 AS a UNION SELECT 2", CAT, ANALYST, max_rows=7)
    assert g.limited and g.sql.endswith("LIMIT 7")
    g = guard_sql("SELECT * FROM dim_department LIMIT 10 PERCENT", CAT, ANALYST, max_rows=7)
    assert g.limited and g.sql.endswith("LIMIT 7")
    # inner limits stay as written, only the outermost counts
    g = guard_sql("SELECT * FROM (SELECT * FROM dim_department LIMIT 99999) t", CAT, ANALYST, max_rows=7)
    assert "LIMIT 99999" in g.sql and g.sql.endswith("LIMIT 7")
    assert g.tables == ["dim_department"]


def test_limit_is_enforced_when_running(executor):
    _, res = run(executor, "SELECT * FROM fact_payment", ANALYST, max_rows=5)
    assert len(res.rows) == 5


def test_output_is_regenerated_single_select():
    g = guard_sql("select /* hi */ dept_name from dim_department -- bye", CAT, ANALYST)
    assert "hi" not in g.sql and "bye" not in g.sql
    parsed = sqlglot.parse(g.sql, read="duckdb")
    assert len(parsed) == 1 and isinstance(parsed[0], exp.Select)


def test_compiled_queries_pass_the_guard(executor):
    """The compiler's SQL (every metric, with and without breakdowns) passes and runs for every role."""
    from semantic_layer.compiler import Compiler
    from semantic_layer.query import StructuredQuery, TimeRange

    comp = Compiler(CAT)
    checked = 0
    for name, metric in CAT.metrics.items():
        variants = [
            dict(metrics=[name], time=TimeRange(start="2021-01", end="2021-12")),
            dict(metrics=[name], time=TimeRange(start="2021-01", end="2021-12", grain="year"), compare="yoy"),
        ]
        for dim in CAT.dimensions_for(name)[:1]:
            if not CAT.dimensions[dim].sensitive:
                variants.append(dict(metrics=[name], dimensions=[dim], time=TimeRange(start="2021-01", end="2021-12")))
        for v in variants:
            try:
                compiled = comp.compile(StructuredQuery(**v))
            except Exception:
                continue
            for role in ALL_ROLES:
                g = guard_sql(compiled.sql, CAT, role)
                if role in (DEPT, ANALYST):
                    executor.run(g.sql)  # the rewritten SQL binds and runs
                checked += 1
    assert checked >= 20


# ----------------------------------------------------------------------------- roles
def test_parse_role():
    assert parse_role("领导") == RoleContext("领导")
    assert parse_role("leader").role == "领导"
    assert parse_role("analyst").role == "分析师"
    assert parse_role("Auditor").role == "审计"
    assert parse_role("审计").role == "审计"
    assert parse_role("部门用户:004") == RoleContext("部门用户", "004")
    assert parse_role("部门用户：004").dept_code == "004"
    assert parse_role("dept:001") == RoleContext("部门用户", "001")
    assert parse_role("", user="u").role == CAT.default_role
    for bad in ("root", "admin", "部门用户", "dept", "部门用户:公安分局", "管理员"):
        with pytest.raises(GuardError):
            parse_role(bad)


def test_parse_role_resolves_department_names(db_path, executor):
    con = duckdb.connect(str(db_path), read_only=True, config=READ_ONLY_CONFIG)
    try:
        assert parse_role("部门用户:公安分局", con) == RoleContext("部门用户", "004")
        assert parse_role("dept:002", con).dept_code == "002"
        with pytest.raises(GuardError):
            parse_role("部门用户:不存在局", con)
        with pytest.raises(GuardError):
            parse_role("部门用户:999", con)
    finally:
        con.close()
    assert parse_role("部门用户:公安分局", executor, user="zhang") == RoleContext("部门用户", "004", "zhang")


def test_unknown_role_rejected():
    with pytest.raises(GuardError):
        guard_sql("SELECT 1", CAT, RoleContext("超级管理员"))
    with pytest.raises(GuardError):
        guard_sql("SELECT 1", CAT, RoleContext("部门用户"))  # no department


ESCAPES = [
    "SELECT dept_code FROM fact_payment",
    "SELECT dept_code FROM fact_payment WHERE dept_code = '001' OR 1 = 1",
    "SELECT dept_code FROM fact_payment WHERE true OR dept_code <> '004'",
    "SELECT dept_code FROM (SELECT * FROM fact_payment) t",
    "SELECT dept_code FROM (SELECT * FROM (SELECT * FROM fact_payment) a) b",
    "WITH x AS (SELECT * FROM fact_payment) SELECT dept_code FROM x",
    "WITH x AS (SELECT * FROM fact_payment), y AS (SELECT * FROM x) SELECT dept_code FROM y",
    "SELECT dept_code FROM fact_payment UNION ALL SELECT dept_code FROM fact_budget_expenditure",
    "SELECT '004' AS dept_code UNION ALL SELECT dept_code FROM main.fact_payment",
    "SELECT dept_code FROM fact_budget_plan WHERE dept_code IS NOT NULL",
    "SELECT dept_code FROM v_budget_plan_effective WHERE dept_code IS NOT NULL",
    "SELECT dept_code FROM dim_project",
    "SELECT f.dept_code FROM fact_payment f JOIN dim_project p ON p.project_id = f.project_id",
    "SELECT p.dept_code FROM dim_department d JOIN dim_project p ON p.dept_code = d.dept_code",
    "SELECT dept_code FROM \"FACT_PAYMENT\"",
    "SELECT dept_code FROM FACT_PAYMENT AS dim_department",
    "SELECT dept_code FROM (fact_payment f JOIN dim_department d USING (dept_code))",
    "SELECT dept_code FROM fact_payment f WHERE EXISTS (SELECT 1 FROM fact_payment g WHERE g.dept_code <> f.dept_code) OR true",
    "SELECT (SELECT max(dept_code) FROM fact_payment) AS dept_code",
    "SELECT (SELECT min(dept_code) FROM fact_budget_expenditure) AS dept_code",
    "SELECT dept_code FROM dim_department WHERE dept_code IN (SELECT dept_code FROM fact_payment)",
    "SELECT x.dept_code FROM fact_payment AS x(payment_id, pay_date, dept_code)",
    "SELECT fact_payment.dept_code, l.dept_code AS d2 FROM fact_payment, LATERAL (SELECT * FROM fact_budget_expenditure e WHERE e.dept_code = fact_payment.dept_code) l",
    "SELECT f.dept_code, e.dept_code AS d2 FROM fact_payment f POSITIONAL JOIN fact_budget_expenditure e",
    "WITH RECURSIVE r(d, n) AS (SELECT dept_code, 1 FROM fact_payment UNION ALL SELECT d, n + 1 FROM r WHERE n < 2) SELECT d AS dept_code FROM r",
    "SELECT dept_code FROM fact_payment INTERSECT SELECT dept_code FROM fact_budget_expenditure",
    "SELECT dept_code FROM fact_budget_expenditure EXCEPT SELECT '001'",
    "SELECT fact_payment.dept_code FROM fact_payment",
    "SELECT dept_code FROM fact_payment TABLESAMPLE 100%",
]


@pytest.mark.parametrize("sql", ESCAPES)
def test_dept_user_sees_only_own_rows(sql, executor):
    g, res = run(executor, sql, DEPT)
    cols = [i for i, c in enumerate(res.columns) if c in ("dept_code", "d2")]
    values = {r[i] for r in res.rows for i in cols}
    assert values and values <= {"004"}, (g.sql, values)
    # the same SQL for an analyst sees other departments wherever the table has them
    _, res_all = run(executor, sql, ANALYST)
    if "'004'" not in sql and "<>" not in sql and "min(" not in sql and "max(" not in sql:
        assert {r[res_all.columns.index("dept_code")] for r in res_all.rows} >= values


def test_dept_user_aggregates_are_restricted(executor, db_path):
    # raw values straight from the (unguarded) executor: DuckDB refuses a second connection to the
    # same file with another configuration in one process
    own = tuple(executor.run("SELECT count(*), sum(amount_yuan) FROM fact_payment WHERE dept_code = '004'").rows[0])
    total = tuple(executor.run("SELECT count(*), sum(amount_yuan) FROM fact_payment").rows[0])
    for sql in [
        "SELECT count(*) AS n, sum(amount_yuan) AS s FROM fact_payment",
        "SELECT (SELECT count(*) FROM fact_payment) AS n, (SELECT sum(amount_yuan) FROM fact_payment) AS s",
        "WITH a AS (SELECT * FROM fact_payment) SELECT count(*) AS n, sum(amount_yuan) AS s FROM a",
    ]:
        _, res = run(executor, sql, DEPT)
        assert tuple(res.rows[0]) == own
        _, res = run(executor, sql, ANALYST)
        assert tuple(res.rows[0]) == total
    g = guard_sql("SELECT * FROM fact_payment", CAT, DEPT)
    assert "dept_code = '004'" in g.sql and g.row_filtered == ["fact_payment"]


def test_dept_filter_value_cannot_inject():
    g = guard_sql("SELECT dept_code FROM fact_payment", CAT, RoleContext("部门用户", "004' OR '1'='1"))
    assert "'004'' OR ''1''=''1'" in g.sql  # a quoted literal, never SQL


MASKED_CODE = re.compile(r"^.{4}\*{10}.{4}$")


@pytest.mark.parametrize("role", [ANALYST, LEADER, DEPT], ids=str)
def test_credit_code_masked(role, executor, db_path):
    raw = {r[0]: r[1] for r in executor.run("SELECT enterprise_id, credit_code FROM dim_enterprise").rows}
    _, res = run(executor, "SELECT enterprise_id, credit_code FROM dim_enterprise", role)
    assert res.rows
    for eid, code in res.rows:
        assert MASKED_CODE.match(code) and code != raw[eid]
        assert code[:4] == raw[eid][:4] and code[-4:] == raw[eid][-4:]
    leaks = [
        "SELECT * FROM dim_enterprise",
        "SELECT upper(credit_code) AS c FROM dim_enterprise",
        "SELECT substr(credit_code, 5, 10) AS c FROM dim_enterprise",
        "SELECT credit_code || '' AS c FROM dim_enterprise e",
        "SELECT e.credit_code FROM fact_tax_payment t JOIN dim_enterprise e ON e.enterprise_id = t.enterprise_id",
        "WITH x AS (SELECT * FROM dim_enterprise) SELECT credit_code FROM x",
        "SELECT credit_code FROM (SELECT credit_code FROM dim_enterprise) UNION ALL SELECT 'x'",
        "SELECT max(credit_code) FROM dim_enterprise",
        "SELECT e FROM dim_enterprise e",
        "SELECT to_json(e) FROM dim_enterprise e",
        "SELECT list(credit_code) FROM dim_enterprise",
        "SELECT string_agg(credit_code, ',') FROM dim_enterprise",
        "SELECT (SELECT credit_code FROM dim_enterprise LIMIT 1)",
        "SELECT COLUMNS('credit.*') FROM dim_enterprise",
    ]
    raw_values = set(raw.values())
    for sql in leaks:
        _, res = run(executor, sql, role)
        text = json.dumps(res.rows, ensure_ascii=False)
        for code in raw_values:
            assert code not in text and code[4:14] not in text, (sql, text)
    # no oracle on the hidden characters
    some = next(iter(raw_values))
    for sql in [
        f"SELECT count(*) FROM dim_enterprise WHERE credit_code = '{some}'",
        f"SELECT count(*) FROM dim_enterprise WHERE credit_code LIKE '{some[:8]}%'",
    ]:
        _, res = run(executor, sql, role)
        assert res.rows[0][0] == 0


@pytest.mark.parametrize("role", [ANALYST, LEADER, DEPT], ids=str)
def test_individual_payee_masked(role, executor):
    _, res = run(executor, "SELECT payee_type, payee_name FROM fact_payment", role)
    assert res.rows
    for ptype, name in res.rows:
        if ptype == "个人":
            assert name.endswith("**") and len(name) == 3 and name not in PERSONS
        else:
            assert name.endswith("有限公司")  # companies are not masked
    for sql in ["SELECT string_agg(payee_name, ',') FROM fact_payment", "SELECT p FROM fact_payment p",
                "SELECT count(*) FROM fact_payment WHERE payee_name = '张三丰'"]:
        _, res = run(executor, sql, role)
        text = json.dumps(res.rows, ensure_ascii=False)
        assert not any(p in text for p in PERSONS), (sql, text)
        if "count" in sql:
            assert res.rows[0][0] == 0


def test_auditor_sees_raw_values(executor):
    g, res = run(executor, "SELECT credit_code FROM dim_enterprise", AUDITOR)
    assert not g.masked and all("*" not in r[0] and len(r[0]) == 18 for r in res.rows)
    _, res = run(executor, "SELECT payee_name FROM fact_payment WHERE payee_type = '个人'", AUDITOR)
    assert {r[0] for r in res.rows} <= set(PERSONS) and res.rows
    _, res = run(executor, "SELECT DISTINCT dept_code FROM fact_payment ORDER BY 1", AUDITOR)
    assert [r[0] for r in res.rows] == [c for c, _ in DEPTS]


def test_guarded_sql_reports_masks():
    g = guard_sql("SELECT e.enterprise_name FROM dim_enterprise e", CAT, LEADER)
    assert g.masked == ["dim_enterprise.credit_code"] and g.tables == ["dim_enterprise"]
    assert "REPLACE" in g.sql and ") AS e" in g.sql


# ----------------------------------------------------------------------------- property-based
SOUP = [
    "SELECT", "FROM", "WHERE", "WITH", "AS", "UNION", "ALL", "JOIN", "ON", "LIMIT", "GROUP", "BY", "ORDER",
    "DROP", "TABLE", "DELETE", "INSERT", "INTO", "UPDATE", "SET", "COPY", "TO", "ATTACH", "PRAGMA", "INSTALL",
    "LOAD", "CALL", "VALUES", "(", ")", ",", ";", "*", "=", "<", "1", "0", "'x'", "'/etc/passwd'", "--", "/*", "*/",
    "\n", "fact_payment", "dim_enterprise", "dim_department", "zz_secret", "information_schema.tables",
    "credit_code", "payee_name", "dept_code", "amount_yuan", "f", "e", "f.dept_code", "read_csv", "getenv",
    "query", "duckdb_tables", "range", "sum", "count", "count(*)", "x", "RECURSIVE", "LATERAL", "EXISTS", "IN",
    "NOT", "OR", "AND", "CASE", "WHEN", "THEN", "END", "'004'", "||", ".", "\"", "$$", "?", "$1", ":=", "->",
]


FILTERED = {t.lower() for t in CAT.roles["部门用户"].row_filters}
SENSITIVE = {t for t, cols in CAT.sensitive_columns().items() if cols}


def _assert_guard_contract(sql: str, role: RoleContext):
    """Either GuardError, or one query whose every source of raw rows is filtered and masked."""
    try:
        g = guard_sql(sql, CAT, role, max_rows=100)
    except GuardError:
        return None
    parsed = [p for p in sqlglot.parse(g.sql, read="duckdb") if p is not None]
    assert len(parsed) == 1
    root = parsed[0]
    assert isinstance(root, (exp.Select, exp.SetOperation)), g.sql
    assert isinstance(root.args.get("limit"), exp.Limit), g.sql
    ctes = {c.alias_or_name.lower() for c in root.find_all(exp.CTE)}
    for node in root.walk():
        assert not isinstance(node, (exp.DDL, exp.DML, exp.Command, exp.Into, exp.Copy, exp.Pragma, exp.Set, exp.Attach))
        if isinstance(node, exp.Anonymous):
            assert not function_denied(node.name), g.sql
        if isinstance(node, exp.Table):
            name = node.name.lower()
            assert isinstance(node.this, exp.Identifier), g.sql
            assert name in CAT.tables or (name in ctes and not node.db), g.sql
            if name not in CAT.tables:
                continue
            select = node.parent.parent if isinstance(node.parent, exp.From) else None
            needs_mask = role.role != "审计" and name in SENSITIVE
            needs_filter = role.role == "部门用户" and name in FILTERED
            if needs_mask or needs_filter:
                assert isinstance(select, exp.Select) and isinstance(select.parent, exp.Subquery), g.sql
            if needs_mask:
                star = select.expressions[0]
                assert isinstance(star, exp.Star) and star.args.get("replace"), g.sql
            if needs_filter:
                assert select.args.get("where") is not None and f"dept_code = '{role.dept_code}'" in select.args["where"].sql("duckdb"), g.sql
    return g


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_property_random_text(text):
    _assert_guard_contract(text, ANALYST)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(SOUP), min_size=1, max_size=25), st.sampled_from(ALL_ROLES))
def test_property_token_soup(tokens, role):
    _assert_guard_contract(" ".join(tokens), role)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.sampled_from(SOUP), min_size=1, max_size=12),
    st.sampled_from(["SELECT dept_code FROM fact_payment", "SELECT * FROM dim_enterprise e", "SELECT 1"]),
    st.sampled_from(ALL_ROLES),
)
def test_property_suffixes_run_safely(executor, tokens, base, role):
    """Base query + random suffix: either refused, or runs read-only without reaching raw rows."""
    g = _assert_guard_contract(base + " " + " ".join(tokens), role)
    if g is None:
        return
    try:
        res = executor.run(g.sql, timeout_s=2)
    except QueryError:
        return
    text = json.dumps(res.rows, ensure_ascii=False)
    assert "TOP-SECRET" not in text
    if role is not AUDITOR:
        assert not any(p in text for p in PERSONS)
    if role is DEPT and "dept_code" in res.columns and g.tables:  # "SELECT 1 dept_code" reads no table
        assert {r[res.columns.index("dept_code")] for r in res.rows} <= {"004", None}


GRAMMAR_TABLES = ["fact_payment", "dim_enterprise", "fact_budget_plan", "dim_project", "fact_budget_expenditure",
                  "v_budget_plan_effective", "zz_secret", "dim_department", "FACT_PAYMENT", "main.fact_payment"]


@st.composite
def nested_queries(draw, depth=0):
    """Small random SELECTs nesting subqueries, CTEs, UNIONs and joins over catalogue tables."""
    kind = draw(st.sampled_from(["table", "table", "sub", "cte", "union", "join"] if depth < 3 else ["table"]))
    where = draw(st.sampled_from(["", " WHERE true", " WHERE dept_code <> '004' OR 1 = 1", " WHERE 1 = 1"]))
    if kind == "table":
        t = draw(st.sampled_from(GRAMMAR_TABLES))
        alias = draw(st.sampled_from(["", " AS x", " t"]))
        return f"SELECT * FROM {t}{alias}" + (where if t.lower().endswith(("payment", "plan", "project", "expenditure", "effective")) else "")
    if kind == "sub":
        return f"SELECT * FROM ({draw(nested_queries(depth + 1))}) AS s{depth}"
    if kind == "cte":
        return f"WITH c{depth} AS ({draw(nested_queries(depth + 1))}) SELECT * FROM c{depth}"
    if kind == "union":
        op = draw(st.sampled_from(["UNION ALL", "UNION", "EXCEPT", "INTERSECT"]))
        return f"{draw(nested_queries(depth + 1))} {op} {draw(nested_queries(depth + 1))}"
    return f"SELECT * FROM ({draw(nested_queries(depth + 1))}) a{depth} CROSS JOIN ({draw(nested_queries(depth + 1))}) b{depth}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(nested_queries(), st.sampled_from(ALL_ROLES))
def test_property_nested_queries_never_reach_raw_rows(executor, sql, role):
    g = _assert_guard_contract(sql, role)
    if g is None:
        assert "zz_secret" in sql or "EXCEPT" in sql or "INTERSECT" in sql or "UNION" in sql or "JOIN" in sql, sql
        return
    try:
        res = executor.run(g.sql, timeout_s=5)
    except QueryError:
        return
    text = json.dumps(res.rows, ensure_ascii=False)
    assert "TOP-SECRET" not in text
    if role is not AUDITOR:
        assert not any(p in text for p in PERSONS), g.sql
        assert not re.search(r"9136\d{4}MA", text), g.sql
    if role is DEPT and "dim_department" not in sql:  # the department list itself is not restricted
        others = {c for c, _ in DEPTS} - {"004"}
        # (UNION aligns columns by position, so look at every string value, not just dept_code)
        assert not others & {v for r in res.rows for v in r if isinstance(v, str)}, g.sql


def test_function_denylist_patterns():
    for name in ["read_csv", "READ_CSV_AUTO", "read_ndjson", "parquet_scan", "glob", "getenv", "current_setting",
                 "duckdb_tables", "pragma_table_info", "query", "query_table", "http_get", "sniff_csv",
                 "read_text", "read_blob", "json_execute_serialized_sql", "sqlite_scan", "postgres_query",
                 "load_aws_credentials", "iceberg_scan", "st_read", "some_future_scan", "read_anything_new"]:
        assert function_denied(name), name
    for name in ["sum", "count", "left", "right", "strftime", "date_trunc", "coalesce", "round", "current_date",
                 "list_transform", "string_agg", "regexp_matches", "year", "month", "nullif"]:
        assert not function_denied(name), name


# ----------------------------------------------------------------------------- the real demo warehouse
GOLD = Path(__file__).resolve().parents[1] / "eval" / "questions.jsonl"


@pytest.fixture(scope="module")
def demo_executor(request, tmp_path_factory):
    """An executor on a private copy of the shared small warehouse (conftest ``small_db``)."""
    try:
        src = request.getfixturevalue("small_db")
    except pytest.FixtureLookupError:
        pytest.skip("no small_db fixture")
    import shutil

    copy = tmp_path_factory.mktemp("governance_demo") / "demo.duckdb"
    shutil.copyfile(src, copy)  # a private copy: no clash with other modules' connections
    ex = Executor(copy)
    yield ex
    ex.close()


def test_gold_sql_passes_the_guard_on_the_demo_warehouse(demo_executor):
    """Every hand-written gold SQL of the benchmark passes; the auditor gets exactly the raw result."""
    if not GOLD.exists():
        pytest.skip("no question set")
    items = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    sqls = sorted({it["gold_sql"] for it in items if it.get("gold_sql")})
    assert len(sqls) > 50
    for sql in sqls:
        raw = demo_executor.run(sql, timeout_s=60)
        audited = demo_executor.run(guard_sql(sql, CAT, AUDITOR).sql, timeout_s=60)
        assert sorted(map(repr, audited.rows)) == sorted(map(repr, raw.rows)), sql
        demo_executor.run(guard_sql(sql, CAT, DEPT).sql, timeout_s=60)


def test_demo_warehouse_governance(demo_executor):
    before = demo_executor.table_checksums()
    for sql in ["SELECT * FROM meta_planted_anomalies", "SELECT * FROM meta_build", "DROP TABLE fact_payment"]:
        with pytest.raises(GuardError):
            guard_sql(sql, CAT, AUDITOR)
    _, res = run(demo_executor, "SELECT DISTINCT dept_code FROM fact_payment", DEPT)
    assert [r[0] for r in res.rows] == ["004"]
    _, res = run(demo_executor, "SELECT credit_code FROM dim_enterprise", ANALYST)
    assert res.rows and all(MASKED_CODE.match(r[0]) for r in res.rows)
    _, res = run(demo_executor, "SELECT payee_name FROM fact_payment WHERE payee_type = '个人'", LEADER)
    assert res.rows and all(r[0].endswith("**") for r in res.rows)
    for _, sql, mutating in ATTACKS:
        if mutating and "/tmp/" not in sql:
            try:  # straight into the executor: read-only refuses writes (temp objects die with the cursor)
                demo_executor.run(sql, timeout_s=2)
            except QueryError:
                pass
    assert demo_executor.table_checksums() == before


# ----------------------------------------------------------------------------- executor
def test_executor_is_read_only(db_path):
    with Executor(db_path) as ex:
        for sql in ["CREATE TABLE x (a INT)", "DELETE FROM fact_payment", "SET threads = 1",
                    "SELECT * FROM read_csv('/etc/passwd')", "ATTACH ':memory:' AS m", "INSTALL httpfs"]:
            with pytest.raises(QueryError) as info:
                ex.run(sql)
            assert re.search(r"[\u4e00-\u9fff]", str(info.value))


def test_executor_converts_values(executor):
    res = executor.run(
        "SELECT 1.25::DECIMAL(10,2) AS d, DATE '2021-03-04' AS dt, TIMESTAMP '2021-03-04 05:06:07' AS ts, "
        "'nan'::DOUBLE AS n, [1, 2] AS l, {'a': 1.5::DECIMAL(4,2)} AS s, NULL AS z, 12::HUGEINT AS h"
    )
    assert res.columns == ["d", "dt", "ts", "n", "l", "s", "z", "h"]
    assert res.rows == [[1.25, "2021-03-04", "2021-03-04T05:06:07", None, [1, 2], {"a": 1.5}, None, 12]]
    json.dumps(res.rows)
    assert res.elapsed_ms >= 0


def test_executor_errors_are_chinese(executor):
    with pytest.raises(QueryError) as info:
        executor.run("SELECT nope FROM fact_payment")
    assert "字段" in str(info.value) or "不存在" in str(info.value)


def test_executor_timeout_interrupts_slow_query(executor):
    t0 = time.perf_counter()
    with pytest.raises(QueryTimeout) as info:
        executor.run(
            "SELECT count(*) FROM range(100000000) a CROSS JOIN range(100000000) b WHERE a.range + b.range = -1",
            timeout_s=0.5,
        )
    assert time.perf_counter() - t0 < 10
    assert "超时" in str(info.value)
    assert executor.run("SELECT count(*) FROM dim_department").rows == [[4]]  # still usable


def test_executor_slow_guarded_cross_join_times_out(executor):
    g = guard_sql(
        "SELECT count(*) FROM fact_payment a, fact_payment b, fact_payment c, fact_payment d, fact_payment e, "
        "fact_payment f, fact_payment g WHERE a.amount_yuan + b.amount_yuan + c.amount_yuan + d.amount_yuan "
        "+ e.amount_yuan + f.amount_yuan + g.amount_yuan = 50000.5",
        CAT,
        ANALYST,
    )
    with pytest.raises(QueryTimeout):
        executor.run(g.sql, timeout_s=0.5)


def test_executor_threads_share_one_connection(executor):
    errors: list[Exception] = []
    results: list[int] = []

    def work(i: int) -> None:
        try:
            for _ in range(10):
                res = executor.run(f"SELECT count(*) + {i} FROM fact_payment")
                results.append(res.rows[0][0] - i)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 80 and set(results) == {48}


def test_executor_shared_instance(db_path):
    a = Executor.shared(db_path)
    assert Executor.shared(str(db_path)) is a
    assert a.run("SELECT count(*) FROM dim_department").rows == [[4]]
    a.close()
    assert Executor.shared(db_path) is not a
    Executor.shared(db_path).close()


def test_executor_max_rows(executor):
    res = executor.run("SELECT * FROM fact_payment", max_rows=3)
    assert len(res.rows) == 3 and res.truncated


# ----------------------------------------------------------------------------- audit log
def test_audit_concurrent_appends(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")

    def work(t: int) -> None:
        for i in range(50):
            log.append({"user": f"u{t}", "role": "分析师", "question": f"问题 {t}-{i} " + "长" * 500,
                        "status": "ok", "sql": "SELECT 1", "row_count": i, "timings_ms": {"total": 1.5}})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1000
    recs = [json.loads(line) for line in lines]
    assert {(r["user"], r["row_count"]) for r in recs} == {(f"u{t}", i) for t in range(20) for i in range(50)}
    # each thread's own records are in order
    for t in range(20):
        assert [r["row_count"] for r in recs if r["user"] == f"u{t}"] == list(range(50))


def test_audit_query_filters(tmp_path, monkeypatch):
    monkeypatch.setenv("YOUSHU_AUDIT_LOG", str(tmp_path / "env.jsonl"))
    log = AuditLog()
    assert log.path == tmp_path / "env.jsonl"
    log.append({"ts": "2026-11-01T09:00:00+08:00", "user": "wang", "role": "领导", "question": "2021年财政收入多少",
                "status": "ok", "sql": "SELECT sum(amount_wan) FROM fact_budget_revenue", "row_count": 1})
    log.append({"ts": "2026-11-02T09:00:00+08:00", "user": "li", "role": RoleContext("部门用户", "004"),
                "question": "本单位支出", "status": "ok", "sql": "SELECT 1", "row_count": 3})
    log.append({"ts": "2026-11-03T09:00:00+08:00", "user": "li", "role": "分析师", "question": "DROP TABLE",
                "status": "refused", "error": "只允许查询（SELECT）语句"})
    assert len(log.query()) == 3
    assert [r["user"] for r in log.query()] == ["li", "li", "wang"]  # newest first
    assert [r["status"] for r in log.query(user="li")] == ["refused", "ok"]
    assert len(log.query(role="部门用户")) == 1 and log.query(role="部门用户")[0]["role"] == "部门用户:004"
    assert len(log.query(status="refused")) == 1
    assert len(log.query(since="2026-11-02")) == 2
    assert len(log.query(since="2026-11-02T10:00:00+08:00")) == 1
    assert len(log.query(contains="fact_budget_revenue")) == 1
    assert len(log.query(contains="只允许")) == 1
    assert len(log.query(limit=1)) == 1
    rec = log.query(user="wang")[0]
    assert set(rec) >= {"ts", "user", "role", "question", "status", "interpretation", "sql", "row_count", "timings_ms", "error"}


def test_audit_is_append_only_and_skips_torn_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.append({"user": "a", "status": "ok"})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"user": "torn", "sta')  # a crash mid-line
    log.append({"user": "b", "status": "ok"})
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert json.loads(first)["user"] == "a"
    assert {r["user"] for r in log.query()} >= {"a"}


def test_audit_main_prints_table(tmp_path):
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.append({"user": "wang", "role": "领导", "question": "2021年一般公共预算收入是多少？", "status": "ok",
                "row_count": 1, "timings_ms": {"parse": 3, "sql": 12}})
    log.append({"user": "li", "role": "分析师", "question": "删表", "status": "refused", "error": "只允许查询"})
    out = io.StringIO()
    assert audit_main(["--log", str(path), "--user", "wang"], out=out) == 0
    text = out.getvalue()
    assert "wang" in text and "2021年一般公共预算收入" in text and "li " not in text and "共 1 条" in text
    out = io.StringIO()
    assert audit_main(["--log", str(path), "--status", "refused", "--json"], out=out) == 0
    assert json.loads(out.getvalue().splitlines()[0])["user"] == "li"
    assert audit_main(["--log", str(path), "--since", "not-a-date"], out=io.StringIO()) == 2
