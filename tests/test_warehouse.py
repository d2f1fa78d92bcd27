"""The demo warehouse: contract tables, real figures, internal consistency, determinism, atomicity."""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from warehouse import generator
from warehouse.build import build_warehouse

SCHEMA = {
    "dim_subject": {"subject_code": "VARCHAR", "subject_name": "VARCHAR", "parent_code": "VARCHAR",
                    "level": "INTEGER", "direction": "VARCHAR", "budget_type": "VARCHAR"},
    "dim_department": {"dept_code": "VARCHAR", "dept_name": "VARCHAR", "dept_type": "VARCHAR"},
    "dim_industry": {"industry_code": "VARCHAR", "industry_name": "VARCHAR",
                     "is_leading": "BOOLEAN", "sector": "VARCHAR"},
    "dim_enterprise": {"enterprise_id": "INTEGER", "enterprise_name": "VARCHAR",
                       "credit_code": "VARCHAR", "industry_code": "VARCHAR", "scale": "VARCHAR",
                       "ownership": "VARCHAR", "is_above_scale": "BOOLEAN",
                       "established_date": "DATE", "registered_capital_wan": "DOUBLE",
                       "status": "VARCHAR"},
    "dim_project": {"project_id": "VARCHAR", "project_name": "VARCHAR", "dept_code": "VARCHAR",
                    "subject_code": "VARCHAR", "project_type": "VARCHAR", "start_year": "INTEGER",
                    "total_budget_wan": "DOUBLE"},
    "fact_budget_revenue": {"year": "INTEGER", "month": "INTEGER", "subject_code": "VARCHAR",
                            "amount_wan": "DOUBLE"},
    "fact_budget_expenditure": {"year": "INTEGER", "month": "INTEGER", "dept_code": "VARCHAR",
                                "subject_code": "VARCHAR", "economic_class": "VARCHAR",
                                "amount_wan": "DOUBLE"},
    "fact_budget_plan": {"year": "INTEGER", "budget_type": "VARCHAR", "direction": "VARCHAR",
                         "subject_code": "VARCHAR", "dept_code": "VARCHAR", "plan_type": "VARCHAR",
                         "amount_wan": "DOUBLE"},
    "fact_tax_payment": {"year": "INTEGER", "month": "INTEGER", "enterprise_id": "INTEGER",
                         "subject_code": "VARCHAR", "amount_yuan": "DOUBLE"},
    "fact_enterprise_operation": {"year": "INTEGER", "month": "INTEGER",
                                  "enterprise_id": "INTEGER", "revenue_wan": "DOUBLE",
                                  "industrial_output_wan": "DOUBLE", "employees": "INTEGER"},
    "fact_gdp": {"year": "INTEGER", "quarter": "INTEGER", "sector": "VARCHAR",
                 "value_yi_ytd": "DOUBLE", "growth_pct_ytd": "DOUBLE"},
    "fact_legal_entity": {"year": "INTEGER", "month": "INTEGER", "industry_code": "VARCHAR",
                          "new_count": "INTEGER"},
    "fact_payment": {"payment_id": "VARCHAR", "pay_date": "DATE", "dept_code": "VARCHAR",
                     "project_id": "VARCHAR", "subject_code": "VARCHAR",
                     "economic_class": "VARCHAR", "payee_name": "VARCHAR",
                     "payee_type": "VARCHAR", "amount_yuan": "DOUBLE", "purpose": "VARCHAR"},
    "fact_project_performance": {"project_id": "VARCHAR", "year": "INTEGER",
                                 "budget_wan": "DOUBLE", "spent_wan": "DOUBLE",
                                 "self_score": "DOUBLE", "grade": "VARCHAR"},
    "meta_planted_anomalies": {"payment_id": "VARCHAR", "kind": "VARCHAR", "note": "VARCHAR"},
    "v_budget_plan_effective": {"year": "INTEGER", "budget_type": "VARCHAR",
                                "direction": "VARCHAR", "subject_code": "VARCHAR",
                                "dept_code": "VARCHAR", "amount_wan": "DOUBLE"},
}

MONEY = [("fact_budget_revenue", "amount_wan"), ("fact_budget_expenditure", "amount_wan"),
         ("fact_budget_plan", "amount_wan"), ("fact_tax_payment", "amount_yuan"),
         ("fact_enterprise_operation", "revenue_wan"),
         ("fact_enterprise_operation", "industrial_output_wan"), ("fact_gdp", "value_yi_ytd"),
         ("fact_payment", "amount_yuan"), ("fact_project_performance", "budget_wan"),
         ("fact_project_performance", "spent_wan"), ("dim_project", "total_budget_wan"),
         ("dim_enterprise", "registered_capital_wan")]

FULL_YEARS = list(range(2018, 2026))

GENERAL_REVENUE_SQL = """
    SELECT r.year, sum(r.amount_wan) AS amt
    FROM fact_budget_revenue r JOIN dim_subject s USING (subject_code)
    WHERE s.budget_type = '一般公共预算' {where}
    GROUP BY r.year ORDER BY r.year"""

RULES = {
    "large_individual_payment": """
        SELECT payment_id FROM fact_payment
        WHERE payee_type = '个人' AND amount_yuan >= 100000""",
    "split_below_threshold": """
        SELECT payment_id FROM (
            SELECT payment_id, count(*) OVER (PARTITION BY dept_code, payee_name, pay_date) AS n
            FROM fact_payment WHERE amount_yuan >= 45000 AND amount_yuan < 50000)
        WHERE n >= 3""",
    "payment_after_budget_spent": """
        WITH p AS (
            SELECT payment_id, project_id, year(pay_date) AS year,
                   sum(amount_yuan) OVER (PARTITION BY project_id, year(pay_date)
                                          ORDER BY pay_date, payment_id
                                          ROWS UNBOUNDED PRECEDING) AS cum
            FROM fact_payment WHERE project_id IS NOT NULL)
        SELECT payment_id FROM p JOIN fact_project_performance pp USING (project_id, year)
        WHERE p.cum > pp.budget_wan * 10000""",
}

DECEMBER_SPIKE_SQL = """
    SELECT year(pay_date) AS year, dept_code, subject_code
    FROM fact_payment WHERE year(pay_date) <= 2025
    GROUP BY ALL
    HAVING sum(amount_yuan) FILTER (WHERE month(pay_date) = 12) > 0.5 * sum(amount_yuan)"""


@pytest.fixture(scope="module")
def db_copy(small_db, tmp_path_factory):
    """A private copy: other modules keep the session db open with their own DuckDB config."""
    path = tmp_path_factory.mktemp("warehouse_copy") / "small.duckdb"
    shutil.copyfile(small_db, path)
    return path


@pytest.fixture(scope="module")
def con(db_copy):
    c = duckdb.connect(str(db_copy), read_only=True)
    yield c
    c.close()


@pytest.fixture(scope="module")
def scale(con):
    return con.execute("SELECT scale FROM meta_build").fetchone()[0]


def q(con, sql, *params):
    return con.execute(sql, list(params)).fetchall()


def one(con, sql, *params):
    return con.execute(sql, list(params)).fetchone()[0]


# ------------------------------------------------------------------------------------- schema
def test_tables_and_columns_match_the_contract(con):
    for table, cols in SCHEMA.items():
        got = dict(q(con, "SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_name = ?", table))
        assert got, f"{table} missing"
        for col, typ in cols.items():
            assert got.get(col) == typ, f"{table}.{col}: {got.get(col)} != {typ}"


def test_meta_build(con, scale):
    seed, as_of, counts = con.execute(
        "SELECT seed, data_as_of::VARCHAR, row_counts FROM meta_build").fetchone()
    assert seed == generator.DEFAULT_SEED and as_of == "2026-11-15"
    assert '"fact_tax_payment"' in counts
    assert 0 < scale < 1


def test_time_ranges(con):
    for table in ("fact_budget_revenue", "fact_budget_expenditure", "fact_tax_payment",
                  "fact_enterprise_operation", "fact_legal_entity"):
        lo, hi = con.execute(f"SELECT min(year * 100 + month), max(year * 100 + month) "
                             f"FROM {table}").fetchone()
        assert (lo, hi) == (201801, 202610), table
    assert one(con, "SELECT count(DISTINCT year * 100 + month) FROM fact_tax_payment") == 106
    assert con.execute("SELECT min(pay_date)::VARCHAR < '2018-01-08', max(pay_date)::VARCHAR "
                       "FROM fact_payment").fetchone()[1] <= "2026-10-31"
    assert q(con, "SELECT min(year * 10 + quarter), max(year * 10 + quarter) FROM fact_gdp") == \
        [(20181, 20263)]
    assert q(con, "SELECT min(year), max(year) FROM fact_budget_plan") == [(2018, 2026)]


# ------------------------------------------------------------------------------- real figures
def test_real_gdp_2021(con):
    v, g = con.execute("SELECT value_yi_ytd, growth_pct_ytd FROM fact_gdp "
                       "WHERE year = 2021 AND quarter = 4 AND sector = '合计'").fetchone()
    assert round(v, 2) == 721.3 and round(g, 2) == 8.4


def test_real_general_budget_revenue(con):
    got = {y: round(a, 2) for y, a in q(con, GENERAL_REVENUE_SQL.format(where=""))}
    assert got[2021] == 209900.0
    assert got[2020] == 182363.0


def test_real_leading_industry_revenue(con):
    got = dict(q(con, """
        SELECT o.year, round(sum(o.revenue_wan), 2)
        FROM fact_enterprise_operation o JOIN dim_enterprise e USING (enterprise_id)
        JOIN dim_industry i USING (industry_code)
        WHERE i.is_leading GROUP BY o.year"""))
    assert got[2021] == 13586000.0
    assert got[2020] == 12141000.0


def test_real_legal_entities(con):
    got = dict(q(con, "SELECT year, sum(new_count) FROM fact_legal_entity GROUP BY year"))
    assert got[2021] == 159 and got[2020] == 90


def test_tax_record_counts_follow_scale(con, scale):
    n21 = one(con, "SELECT count(*) FROM fact_tax_payment WHERE year = 2021")
    assert abs(n21 - 690_000 * scale) <= 0.01 * 690_000 * scale
    assert one(con, "SELECT count(*) FROM fact_tax_payment") >= 1_800_000 * scale
    per_year = dict(q(con, "SELECT year, count(*) FROM fact_tax_payment GROUP BY year"))
    assert per_year[2025] > per_year[2021] > per_year[2018]


# ---------------------------------------------------------------------------------- relations
def test_tax_revenue_is_local_share_of_tax_payments(con):
    shares = generator.TAX_SHARE
    case = " ".join(f"WHEN '{c}' THEN {s}" for c, s in shares.items())
    codes = ", ".join(f"'{c}'" for c in shares)
    rows = q(con, f"""
        WITH t AS (SELECT year, month, subject_code,
                          (CASE subject_code {case} END) * sum(amount_yuan) / 10000 AS expect
                   FROM fact_tax_payment GROUP BY year, month, subject_code),
             r AS (SELECT year, month, subject_code, sum(amount_wan) AS amt
                   FROM fact_budget_revenue WHERE subject_code IN ({codes}) GROUP BY ALL)
        SELECT coalesce(t.year, r.year), coalesce(t.month, r.month),
               coalesce(t.subject_code, r.subject_code),
               coalesce(r.amt, 0) AS amt, coalesce(t.expect, 0) AS expect
        FROM t FULL OUTER JOIN r USING (year, month, subject_code)""")
    assert len(rows) >= 106 * 5
    bad = [r for r in rows if abs(r[3] - r[4]) > 0.0051]
    assert not bad, bad[:5]
    # every tax subject of the contract is collected at some point
    assert {r[2] for r in rows} == set(shares)


def test_tax_share_of_general_revenue_is_plausible(con):
    for y, total, tax in q(con, """
            SELECT r.year, sum(amount_wan), sum(amount_wan) FILTER (WHERE s.parent_code = '101')
            FROM fact_budget_revenue r JOIN dim_subject s USING (subject_code)
            WHERE s.budget_type = '一般公共预算' GROUP BY r.year"""):
        assert 0.72 <= tax / total <= 0.86, (y, tax / total)


def test_expenditure_is_sum_of_payments(con):
    rows = q(con, """
        WITH p AS (SELECT year(pay_date) AS year, month(pay_date) AS month, dept_code,
                          subject_code, economic_class, sum(amount_yuan) / 10000 AS expect
                   FROM fact_payment GROUP BY ALL)
        SELECT e.amount_wan, p.expect
        FROM fact_budget_expenditure e
        FULL OUTER JOIN p USING (year, month, dept_code, subject_code, economic_class)""")
    bad = [r for r in rows if r[0] is None or r[1] is None or abs(r[0] - r[1]) > 0.0051]
    assert not bad, bad[:5]


def test_project_spent_is_sum_of_payments(con):
    bad = q(con, """
        SELECT pp.project_id, pp.year, pp.spent_wan, s.spent
        FROM fact_project_performance pp
        LEFT JOIN (SELECT project_id, year(pay_date) AS year, sum(amount_yuan) / 10000 AS spent
                   FROM fact_payment WHERE project_id IS NOT NULL GROUP BY ALL) s
        USING (project_id, year)
        WHERE s.spent IS NULL OR abs(pp.spent_wan - s.spent) > 0.0051""")
    assert not bad, bad[:5]


def test_gdp_sectors_add_up(con):
    bad = q(con, """
        SELECT year, quarter,
               round(sum(value_yi_ytd) FILTER (WHERE sector = '合计'), 2) AS total,
               round(sum(value_yi_ytd) FILTER (WHERE sector <> '合计'), 2) AS parts
        FROM fact_gdp GROUP BY ALL HAVING total <> parts OR count(*) <> 4""")
    assert not bad
    # growth: real rates, 2020 clearly lower
    g = dict(q(con, "SELECT year, growth_pct_ytd FROM fact_gdp WHERE quarter = 4 AND sector = '合计'"))
    assert g[2020] < min(v for y, v in g.items() if y != 2020)


def test_foreign_keys_and_levels(con):
    checks = {
        "tax enterprise": "SELECT count(*) FROM fact_tax_payment t ANTI JOIN dim_enterprise "
                          "USING (enterprise_id)",
        "operation enterprise": "SELECT count(*) FROM fact_enterprise_operation ANTI JOIN "
                                "dim_enterprise USING (enterprise_id)",
        "revenue subject": "SELECT count(*) FROM fact_budget_revenue r ANTI JOIN "
                           "(SELECT subject_code FROM dim_subject WHERE is_leaf AND direction = '收入') "
                           "USING (subject_code)",
        "expenditure 款": "SELECT count(*) FROM fact_budget_expenditure ANTI JOIN "
                         "(SELECT subject_code FROM dim_subject WHERE level = 2 AND direction = '支出') "
                         "USING (subject_code)",
        "payment 款": "SELECT count(*) FROM fact_payment ANTI JOIN "
                     "(SELECT subject_code FROM dim_subject WHERE level = 2 AND direction = '支出') "
                     "USING (subject_code)",
        "payment project": "SELECT count(*) FROM fact_payment WHERE project_id IS NOT NULL AND "
                           "project_id NOT IN (SELECT project_id FROM dim_project)",
        "payment dept": "SELECT count(*) FROM fact_payment ANTI JOIN dim_department USING (dept_code)",
        "project 款": "SELECT count(*) FROM dim_project ANTI JOIN "
                     "(SELECT subject_code FROM dim_subject WHERE level = 2 AND direction = '支出') "
                     "USING (subject_code)",
        "tax before establishment": """
            SELECT count(*) FROM fact_tax_payment t JOIN dim_enterprise e USING (enterprise_id)
            WHERE make_date(t.year, t.month, 28) < date_trunc('month', e.established_date)""",
        "plan subject": "SELECT count(*) FROM fact_budget_plan ANTI JOIN dim_subject USING (subject_code)",
        "legal industry": "SELECT count(*) FROM fact_legal_entity ANTI JOIN dim_industry "
                          "USING (industry_code)",
    }
    for name, sql in checks.items():
        assert one(con, sql) == 0, name


def test_no_negative_money(con):
    for table, col in MONEY:
        assert one(con, f"SELECT count(*) FROM {table} WHERE {col} < 0") == 0, (table, col)
    assert one(con, "SELECT count(*) FROM fact_enterprise_operation WHERE employees < 1") == 0


def test_yearly_growth_within_bounds(con):
    def check(series, label):
        ys = sorted(series)
        for a, b in zip(ys, ys[1:]):
            g = series[b] / series[a] - 1
            assert -0.10 <= g <= 0.25, (label, b, round(g, 4))

    full = "AND r.year <= 2025"
    check(dict(q(con, GENERAL_REVENUE_SQL.format(where=full))), "一般公共预算收入")
    jan_oct = dict(q(con, GENERAL_REVENUE_SQL.format(where="AND r.month <= 10 AND r.year >= 2025")))
    check(jan_oct, "一般公共预算收入 1-10月")
    check(dict(q(con, "SELECT year, sum(amount_wan) FROM fact_budget_expenditure "
                      "WHERE year <= 2025 GROUP BY year")), "一般公共预算支出")
    check(dict(q(con, """SELECT r.year, sum(amount_wan) FROM fact_budget_revenue r
                         JOIN dim_subject s USING (subject_code)
                         WHERE s.budget_type = '政府性基金预算' AND r.year <= 2025 GROUP BY 1""")),
          "政府性基金收入")
    check(dict(q(con, "SELECT year, sum(amount_yuan) FROM fact_tax_payment "
                      "WHERE year <= 2025 GROUP BY year")), "全口径税收")
    check(dict(q(con, "SELECT year, value_yi_ytd FROM fact_gdp WHERE quarter = 4 "
                      "AND sector = '合计'")), "GDP")
    check(dict(q(con, """SELECT o.year, sum(revenue_wan) FROM fact_enterprise_operation o
                         JOIN dim_enterprise e USING (enterprise_id)
                         WHERE o.year <= 2025 GROUP BY 1""")), "企业营业收入")


def test_december_expenditure_peak(con):
    for y in FULL_YEARS:
        months = dict(q(con, "SELECT month, sum(amount_wan) FROM fact_budget_expenditure "
                             "WHERE year = ? GROUP BY month", y))
        assert max(months, key=months.get) == 12, y
        assert months[12] > 1.3 * max(v for m, v in months.items() if m != 12), y


def test_monthly_seasonality(con):
    # revenue of enterprises: February (Spring Festival) below the yearly average
    for y, feb, avg in q(con, """
            SELECT year, sum(revenue_wan) FILTER (WHERE month = 2),
                   sum(revenue_wan) / 12 FROM fact_enterprise_operation
            WHERE year <= 2025 GROUP BY year"""):
        assert feb < avg, y


def test_budget_plans(con):
    adjusted = {y for (y,) in q(con, "SELECT DISTINCT year FROM fact_budget_plan "
                                     "WHERE plan_type = '调整预算'")}
    assert adjusted == set(generator.ADJUSTED_YEARS)
    assert one(con, "SELECT count(*) FROM fact_budget_plan WHERE direction = '收入' "
                    "AND dept_code IS NOT NULL") == 0
    assert one(con, "SELECT count(*) FROM fact_budget_plan WHERE direction = '支出' "
                    "AND dept_code IS NULL") == 0
    # every year has a 年初预算; the view takes the 调整预算 where there is one
    for y in range(2018, 2027):
        assert one(con, "SELECT count(*) FROM fact_budget_plan WHERE year = ? "
                        "AND plan_type = '年初预算'", y) > 0
    n_keys = one(con, "SELECT count(*) FROM (SELECT DISTINCT year, budget_type, direction, "
                      "subject_code, dept_code FROM fact_budget_plan)")
    assert one(con, "SELECT count(*) FROM v_budget_plan_effective") == n_keys
    y = generator.ADJUSTED_YEARS[0]
    assert one(con, """
        SELECT sum(amount_wan) FROM v_budget_plan_effective WHERE year = ? AND direction = '支出'
        """, y) == one(con, """
        SELECT sum(amount_wan) FROM fact_budget_plan WHERE year = ? AND direction = '支出'
          AND plan_type = '调整预算'""", y)
    # execution rate of the totals
    for y in FULL_YEARS:
        plan_rev = one(con, "SELECT sum(amount_wan) FROM v_budget_plan_effective WHERE year = ? "
                            "AND direction = '收入' AND budget_type = '一般公共预算'", y)
        act_rev = dict(q(con, GENERAL_REVENUE_SQL.format(where="")))[y]
        assert 0.9 <= act_rev / plan_rev <= 1.08, (y, act_rev / plan_rev)
        plan_exp = one(con, "SELECT sum(amount_wan) FROM v_budget_plan_effective WHERE year = ? "
                            "AND direction = '支出'", y)
        act_exp = one(con, "SELECT sum(amount_wan) FROM fact_budget_expenditure WHERE year = ?", y)
        assert 0.85 <= act_exp / plan_exp <= 1.08, (y, act_exp / plan_exp)


# ------------------------------------------------------------------------------- dimensions
def test_dimensions(con):
    names = {r[0] for r in q(con, "SELECT dept_name FROM dim_department")}
    assert {"党政办公室", "财政金融局", "经济发展局", "科技创新局", "建设局", "城市管理局", "社会事业局",
            "应急管理局", "市场监督管理局", "公安分局"} <= names
    assert 15 <= len(names) <= 20
    assert {r[0] for r in q(con, "SELECT DISTINCT dept_type FROM dim_department")} == \
        {"行政单位", "事业单位"}
    leading = {r[0] for r in q(con, "SELECT industry_name FROM dim_industry WHERE is_leading")}
    assert leading == {"电子信息", "新能源汽车及汽车零部件", "医药食品", "新材料", "家电"}
    others = {r[0] for r in q(con, "SELECT industry_name FROM dim_industry WHERE NOT is_leading")}
    assert {"装备制造", "建筑业", "房地产业", "批发和零售业", "软件和信息技术服务业", "金融业"} <= others
    subjects = dict(q(con, "SELECT subject_code, subject_name FROM dim_subject"))
    required = {
        "101": "税收收入", "10101": "增值税", "10104": "企业所得税", "10106": "个人所得税",
        "10109": "城市维护建设税", "10110": "房产税", "10111": "印花税", "10112": "城镇土地使用税",
        "10113": "土地增值税", "10114": "车船税", "10118": "耕地占用税", "10119": "契税",
        "10121": "环境保护税", "10199": "其他税收收入", "103": "非税收入", "10302": "专项收入",
        "10304": "行政事业性收费收入", "10305": "罚没收入", "10307": "国有资源(资产)有偿使用收入",
        "10399": "其他收入", "10301": "政府性基金收入", "1030148": "国有土地使用权出让收入",
        "1030199": "其他政府性基金收入", "201": "一般公共服务支出", "204": "公共安全支出",
        "205": "教育支出", "20502": "普通教育", "20503": "职业教育", "206": "科学技术支出",
        "207": "文化旅游体育与传媒支出", "208": "社会保障和就业支出", "210": "卫生健康支出",
        "211": "节能环保支出", "212": "城乡社区支出", "213": "农林水支出", "214": "交通运输支出",
        "215": "资源勘探工业信息等支出", "216": "商业服务业等支出", "221": "住房保障支出",
        "224": "灾害防治及应急管理支出", "229": "其他支出", "232": "债务付息支出",
    }
    for code, name in required.items():
        assert subjects.get(code) == name, code
    assert q(con, "SELECT budget_type FROM dim_subject WHERE subject_code IN "
                  "('10301', '1030148', '1030199') GROUP BY ALL") == [("政府性基金预算",)]
    # every expenditure 类 has 款, and parents exist
    assert one(con, """SELECT count(*) FROM dim_subject c WHERE level = 1 AND direction = '支出'
                       AND NOT EXISTS (SELECT 1 FROM dim_subject k WHERE k.parent_code = c.subject_code)""") == 0
    assert one(con, """SELECT count(*) FROM dim_subject k WHERE parent_code IS NOT NULL
                       AND parent_code NOT IN (SELECT subject_code FROM dim_subject)""") == 0


def test_enterprises(con, scale):
    n, names, codes = con.execute("SELECT count(*), count(DISTINCT enterprise_name), "
                                  "count(DISTINCT credit_code) FROM dim_enterprise").fetchone()
    assert n == names == codes >= 200
    assert n == max(200, round(12000 * scale))
    chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    for (code,) in q(con, "SELECT credit_code FROM dim_enterprise"):
        assert len(code) == 18 and code.startswith("9136")
        s = sum(chars.index(c) * pow(3, i, 31) for i, c in enumerate(code[:17]))
        assert code[17] == chars[(31 - s % 31) % 31], code
    assert one(con, "SELECT count(*) FROM dim_enterprise WHERE enterprise_name NOT LIKE '%公司'") == 0
    assert {r[0] for r in q(con, "SELECT DISTINCT status FROM dim_enterprise")} <= {"存续", "注销"}
    assert {r[0] for r in q(con, "SELECT DISTINCT scale FROM dim_enterprise")} <= \
        {"大型", "中型", "小型", "微型"}
    # industrial output only for industry (第二产业 except 建筑业)
    assert one(con, """
        SELECT count(*) FROM fact_enterprise_operation o JOIN dim_enterprise e USING (enterprise_id)
        JOIN dim_industry i USING (industry_code)
        WHERE (o.industrial_output_wan IS NULL) =
              (i.sector = '第二产业' AND i.industry_name <> '建筑业')""") == 0


def test_projects(con):
    n = one(con, "SELECT count(*) FROM dim_project")
    assert 200 <= n <= 900
    assert one(con, "SELECT count(DISTINCT project_name) FROM dim_project") == n
    assert {r[0] for r in q(con, "SELECT DISTINCT project_type FROM dim_project")} == \
        {"基本建设", "产业扶持", "民生保障", "运转保障"}
    assert {r[0] for r in q(con, "SELECT DISTINCT grade FROM fact_project_performance "
                                 "WHERE grade IS NOT NULL")} <= {"优", "良", "中", "差"}
    assert one(con, "SELECT count(*) FROM fact_project_performance WHERE year <= 2025 "
                    "AND (self_score IS NULL OR self_score NOT BETWEEN 0 AND 100)") == 0


# -------------------------------------------------------------------------------- payments
def test_payments_basic(con):
    n, ids = con.execute("SELECT count(*), count(DISTINCT payment_id) FROM fact_payment").fetchone()
    assert n == ids
    assert {r[0] for r in q(con, "SELECT DISTINCT payee_type FROM fact_payment")} == \
        {"企业", "个人", "单位"}
    assert {r[0] for r in q(con, "SELECT DISTINCT economic_class FROM fact_payment")} == \
        set(generator.ECON)
    # payees that are enterprises are enterprises of dim_enterprise
    assert one(con, """SELECT count(*) FROM fact_payment WHERE payee_type = '企业'
                       AND payee_name NOT IN (SELECT enterprise_name FROM dim_enterprise)""") == 0
    assert one(con, "SELECT count(*) FROM fact_payment WHERE dayofweek(pay_date) IN (0, 6)") == 0


def test_planted_anomalies_exist_every_year(con):
    per_year = q(con, """
        SELECT year(f.pay_date) AS y, a.kind, count(*)
        FROM meta_planted_anomalies a JOIN fact_payment f USING (payment_id) GROUP BY ALL""")
    assert len({r[0] for r in per_year}) == 9  # every year 2018..2026
    kinds = {}
    for y, kind, c in per_year:
        kinds.setdefault(y, set()).add(kind)
    for y in FULL_YEARS:
        assert kinds[y] == set(generator.ANOMALY_KINDS), y
    total = one(con, "SELECT count(*) FROM meta_planted_anomalies")
    assert 9 * 15 <= total <= 9 * 80
    assert one(con, "SELECT count(*) FROM meta_planted_anomalies ANTI JOIN fact_payment "
                    "USING (payment_id)") == 0


@pytest.mark.parametrize("kind", sorted(RULES))
def test_monitoring_rules_find_exactly_the_planted_payments(con, kind):
    found = {r[0] for r in q(con, RULES[kind])}
    planted = {r[0] for r in q(con, "SELECT payment_id FROM meta_planted_anomalies "
                                    "WHERE kind = ?", kind)}
    assert planted and found == planted


def test_december_spike_rule_finds_exactly_the_planted_units(con):
    found = set(q(con, DECEMBER_SPIKE_SQL))
    planted = set(q(con, """
        SELECT DISTINCT year(pay_date), dept_code, subject_code
        FROM meta_planted_anomalies JOIN fact_payment USING (payment_id)
        WHERE kind = 'december_spike'"""))
    assert planted and found == planted


# ------------------------------------------------------------------ determinism / atomicity
def _checksums(path: Path) -> dict:
    c = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in c.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_name NOT IN ('meta_build') ORDER BY 1").fetchall()]
        return {t: c.execute(f'SELECT count(*), sum(hash(t)) FROM "{t}" t').fetchone()
                for t in tables}
    finally:
        c.close()


def test_deterministic(db_copy, scale, tmp_path):
    other = tmp_path / "again.duckdb"
    build_warehouse(other, scale=scale, progress=None)
    a, b = _checksums(db_copy), _checksums(other)
    assert set(a) >= set(SCHEMA) - {"v_budget_plan_effective"}
    assert a == b


def test_different_seed_differs(tmp_path):
    c1, c2 = duckdb.connect(), duckdb.connect()
    r1 = generator.generate(c1, scale=0.005, seed=1)
    r2 = generator.generate(c2, scale=0.005, seed=2)
    h = "SELECT sum(hash(t)) FROM fact_tax_payment t"
    assert c1.execute(h).fetchone() != c2.execute(h).fetchone()
    # the real figures hold whatever the seed
    for c in (c1, c2):
        assert round(c.execute(GENERAL_REVENUE_SQL.format(where="AND r.year = 2021"))
                     .fetchone()[1], 2) == 209900.0
    assert r1["row_counts"]["fact_tax_payment"] > 0 and r2["anomalies"]


def test_failed_build_leaves_previous_file_intact(db_copy, tmp_path, monkeypatch):
    target = tmp_path / "w.duckdb"
    shutil.copyfile(db_copy, target)
    before = target.read_bytes()
    real = generator.generate

    def failing(con, *args, **kwargs):
        con.execute("CREATE TABLE half_done AS SELECT 1 AS x")
        real(con, scale=0.005, seed=7)
        raise RuntimeError("boom")

    monkeypatch.setattr(generator, "generate", failing)
    with pytest.raises(RuntimeError, match="boom"):
        build_warehouse(target, scale=0.005, progress=None)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.duckdb"]


def test_failed_first_build_leaves_nothing(tmp_path, monkeypatch):
    def failing(con, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generator, "generate", failing)
    with pytest.raises(KeyboardInterrupt):
        build_warehouse(tmp_path / "new.duckdb", scale=0.005, progress=None)
    assert list(tmp_path.iterdir()) == []


def test_build_reports_progress_in_chinese(tmp_path):
    lines: list[str] = []
    result = build_warehouse(tmp_path / "p.duckdb", scale=0.005, progress=lines.append)
    text = "\n".join(lines)
    assert "生成企业纳税明细" in text and "行" in text and "s]" in text
    c = duckdb.connect(str(tmp_path / "p.duckdb"), read_only=True)
    assert result["row_counts"]["fact_tax_payment"] == \
        c.execute("SELECT count(*) FROM fact_tax_payment").fetchone()[0]
    c.close()
    assert {a["kind"] for a in result["anomalies"]} == set(generator.ANOMALY_KINDS)
