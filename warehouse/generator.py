"""Deterministic generator of the demo warehouse (南昌经开区-style fiscal data).

``generate(con, scale, seed)`` creates and fills every table of the warehouse contract except
``pub_region_budget`` (that one comes from ``warehouse.yearbook``).  Everything is vectorised with
numpy and loaded into DuckDB from pandas frames; the same seed and scale give identical tables.

Real published 2021 figures (GDP, 一般公共预算收入 2020/2021, 主导产业营业收入 2020/2021, 2021 涉税
记录数, 新增一套表法人单位 2020/2021) hold exactly at every scale; everything else is invented but
internally consistent:

* ``fact_budget_revenue`` tax rows are derived from ``fact_tax_payment`` (地方留成 share × 全口径 / 10000,
  rounded to 0.01 万元); non-tax revenue fills the rest of the yearly 一般公共预算 target.
* ``fact_budget_expenditure`` is the sum of ``fact_payment`` per (year, month, dept, 款, 经济分类),
  rounded to 0.01 万元.
* ``fact_project_performance.spent_wan`` is the sum of the project's payments in that year.
* Planted anomalies are listed in ``meta_planted_anomalies``; the natural data is kept clean of
  the patterns the simple monitoring rules look for (see ``ANOMALY_RULES``).
"""
from __future__ import annotations

import datetime as _dt
import time
import zlib
from typing import Callable

import duckdb
import numpy as np
import pandas as pd

__all__ = [
    "generate",
    "DEFAULT_SEED",
    "DATA_AS_OF",
    "TAX_SHARE",
    "ADJUSTED_YEARS",
    "ANOMALY_RULES",
    "GENERATED_TABLES",
]

GENERATOR_VERSION = "1.0"
DEFAULT_SEED = 20211231
DATA_AS_OF = "2026-11-15"
FIRST_YEAR = 2018
LAST_YEAR = 2026
LAST_MONTH = 10  # last month with data in LAST_YEAR (as-of 2026-11-15)
YEARS = list(range(FIRST_YEAR, LAST_YEAR + 1))
NY = len(YEARS)
NMV = NY * 12  # "virtual" months: 2026-11/12 are simulated for full-year plans, never stored
NMR = NMV - (12 - LAST_MONTH)  # realised months: 2018-01 … 2026-10 = 106
ADJUSTED_YEARS = (2020, 2022, 2024)  # years with a 调整预算 (for every plan row of that year)

GENERATED_TABLES = [
    "dim_subject", "dim_department", "dim_industry", "dim_enterprise", "dim_project",
    "fact_budget_revenue", "fact_budget_expenditure", "fact_budget_plan", "fact_tax_payment",
    "fact_enterprise_operation", "fact_gdp", "fact_legal_entity", "fact_payment",
    "fact_project_performance", "meta_planted_anomalies",
]

# --------------------------------------------------------------------------------------------
# Subjects (政府收支分类科目)
# --------------------------------------------------------------------------------------------
TAX_SUBJECTS = [  # code, name, 地方留成 share, share of local tax revenue (base mix)
    ("10101", "增值税", 0.5, 0.360),
    ("10104", "企业所得税", 0.4, 0.150),
    ("10106", "个人所得税", 0.4, 0.035),
    ("10109", "城市维护建设税", 1.0, 0.060),
    ("10110", "房产税", 1.0, 0.050),
    ("10111", "印花税", 1.0, 0.025),
    ("10112", "城镇土地使用税", 1.0, 0.050),
    ("10113", "土地增值税", 1.0, 0.100),
    ("10114", "车船税", 1.0, 0.004),
    ("10118", "耕地占用税", 1.0, 0.010),
    ("10119", "契税", 1.0, 0.130),
    ("10121", "环境保护税", 1.0, 0.006),
    ("10199", "其他税收收入", 1.0, 0.004),
]
TAX_SHARE = {c: s for c, _, s, _ in TAX_SUBJECTS}
NONTAX_SUBJECTS = [  # code, name, share of non-tax revenue, monthly noise sigma
    ("10302", "专项收入", 0.18, 0.20),
    ("10304", "行政事业性收费收入", 0.10, 0.20),
    ("10305", "罚没收入", 0.10, 0.30),
    ("10307", "国有资源(资产)有偿使用收入", 0.45, 0.60),
    ("10399", "其他收入", 0.17, 0.40),
]
FUND_SUBJECTS = [("1030148", "国有土地使用权出让收入"), ("1030199", "其他政府性基金收入")]

EXP_CLASSES = [
    ("201", "一般公共服务支出"), ("204", "公共安全支出"), ("205", "教育支出"), ("206", "科学技术支出"),
    ("207", "文化旅游体育与传媒支出"), ("208", "社会保障和就业支出"), ("210", "卫生健康支出"),
    ("211", "节能环保支出"), ("212", "城乡社区支出"), ("213", "农林水支出"), ("214", "交通运输支出"),
    ("215", "资源勘探工业信息等支出"), ("216", "商业服务业等支出"), ("221", "住房保障支出"),
    ("224", "灾害防治及应急管理支出"), ("229", "其他支出"), ("232", "债务付息支出"),
]
EXP_KUAN = [
    ("20101", "人大事务"), ("20103", "政府办公厅（室）及相关机构事务"), ("20104", "发展与改革事务"),
    ("20106", "财政事务"), ("20108", "审计事务"), ("20111", "纪检监察事务"), ("20113", "商贸事务"),
    ("20129", "群众团体事务"), ("20131", "党委办公厅（室）及相关机构事务"), ("20132", "组织事务"),
    ("20133", "宣传事务"), ("20138", "市场监督管理事务"), ("20199", "其他一般公共服务支出"),
    ("20402", "公安"), ("20406", "司法"),
    ("20501", "教育管理事务"), ("20502", "普通教育"), ("20503", "职业教育"),
    ("20601", "科学技术管理事务"), ("20604", "技术研究与开发"), ("20607", "科学技术普及"),
    ("20699", "其他科学技术支出"),
    ("20701", "文化和旅游"), ("20703", "体育"),
    ("20801", "人力资源和社会保障管理事务"), ("20805", "行政事业单位养老支出"), ("20807", "就业补助"),
    ("20808", "抚恤"), ("20810", "社会福利"), ("20819", "最低生活保障"),
    ("20899", "其他社会保障和就业支出"),
    ("21001", "卫生健康管理事务"), ("21004", "公共卫生"), ("21011", "行政事业单位医疗"),
    ("21101", "环境保护管理事务"), ("21103", "污染防治"), ("21111", "污染减排"),
    ("21201", "城乡社区管理事务"), ("21203", "城乡社区公共设施"), ("21205", "城乡社区环境卫生"),
    ("21299", "其他城乡社区支出"),
    ("21301", "农业农村"), ("21303", "水利"),
    ("21401", "公路水路运输"),
    ("21505", "工业和信息产业监管"), ("21508", "支持中小企业发展和管理支出"),
    ("21602", "商业流通事务"), ("21606", "涉外发展服务支出"), ("21699", "其他商业服务业等支出"),
    ("22101", "保障性安居工程支出"), ("22102", "住房改革支出"),
    ("22401", "应急管理事务"), ("22402", "消防救援事务"),
    ("22999", "其他支出"),
    ("23203", "地方政府一般债务付息支出"),
]
KUAN_NAME = dict(EXP_KUAN)

ECON = ["工资福利支出", "商品和服务支出", "对个人和家庭的补助", "对企业补助", "资本性支出"]
E_SAL, E_GS, E_IND, E_ENT, E_CAP = range(5)
_ECON_ABBR = {"工": E_SAL, "商": E_GS, "个": E_IND, "企": E_ENT, "资": E_CAP}

# --------------------------------------------------------------------------------------------
# Departments: code, name, type, staff, 款 of its 行政运行, business cells (款, econ, 万元/年 in 2018)
# --------------------------------------------------------------------------------------------
DEPARTMENTS = [
    ("001", "党政办公室", "行政单位", 70, "20103",
     [("20103", "商", 2600), ("20131", "商", 700), ("20101", "商", 150), ("20406", "商", 500)]),
    ("002", "党群工作部", "行政单位", 35, "20132",
     [("20132", "商", 900), ("20133", "商", 800), ("20111", "商", 350), ("20129", "商", 300)]),
    ("003", "财政金融局", "行政单位", 45, "20106",
     [("20106", "商", 1500), ("20108", "商", 400), ("22999", "商", 2500), ("23203", "商", 7000)]),
    ("004", "经济发展局", "行政单位", 40, "20104",
     [("20104", "商", 700), ("21505", "企", 5500), ("21508", "企", 7500), ("21602", "企", 1600),
      ("21602", "商", 300)]),
    ("005", "科技创新局", "行政单位", 30, "20601",
     [("20601", "商", 500), ("20604", "企", 11000), ("20604", "商", 600), ("20607", "商", 350),
      ("20699", "个", 3200), ("20699", "企", 800)]),
    ("006", "投资促进局", "行政单位", 35, "20113",
     [("20113", "商", 1400), ("21606", "商", 700), ("21699", "企", 6500)]),
    ("007", "建设局", "行政单位", 55, "21201",
     [("21201", "商", 1200), ("21203", "资", 26000), ("21203", "商", 1800), ("21401", "资", 11000),
      ("22101", "资", 5500), ("22101", "个", 1200), ("21303", "资", 2800)]),
    ("008", "城市管理局", "行政单位", 90, "21201",
     [("21201", "商", 2200), ("21299", "商", 2800), ("21205", "商", 3200), ("21205", "资", 600)]),
    ("009", "社会事业局", "行政单位", 60, "20501",
     [("20501", "商", 450), ("20701", "商", 1100), ("20703", "商", 700), ("20703", "资", 400),
      ("20801", "商", 350), ("20808", "个", 800), ("20810", "个", 1400), ("21001", "商", 450),
      ("21004", "商", 2300), ("21301", "个", 700), ("21301", "商", 300)]),
    ("010", "应急管理局", "行政单位", 28, "22401",
     [("22401", "商", 800), ("22402", "商", 1300), ("22402", "资", 500)]),
    ("011", "市场监督管理局", "行政单位", 70, "20138", [("20138", "商", 1100)]),
    ("012", "公安分局", "行政单位", 320, "20402", [("20402", "商", 5500), ("20402", "资", 1400)]),
    ("013", "生态环境分局", "行政单位", 25, "21101",
     [("21101", "商", 450), ("21103", "资", 2800), ("21103", "商", 600), ("21111", "企", 700)]),
    ("014", "行政审批局", "行政单位", 40, "20103", [("20199", "商", 1400)]),
    ("015", "教育事业发展中心", "事业单位", 1250, "20502",
     [("20502", "商", 8500), ("20502", "资", 5500), ("20502", "个", 1400), ("20503", "商", 1600),
      ("20503", "个", 300)]),
    ("016", "社会保障服务中心", "事业单位", 30, "20801",
     [("20807", "个", 2600), ("20807", "企", 900), ("20819", "个", 2100), ("20899", "个", 1700)]),
    ("017", "重大项目服务中心", "事业单位", 35, "21201",
     [("21203", "资", 17000), ("21401", "资", 7500)]),
    ("018", "环境卫生服务中心", "事业单位", 160, "21205",
     [("21205", "商", 8200), ("21205", "资", 900)]),
]

# --------------------------------------------------------------------------------------------
# Industries: code, name, is_leading, sector, share of enterprises, 2021 revenue (万元, non-leading)
# and base yearly growth of revenue
# --------------------------------------------------------------------------------------------
INDUSTRIES = [
    ("01", "电子信息", True, "第二产业", 0.08),
    ("02", "新能源汽车及汽车零部件", True, "第二产业", 0.06),
    ("03", "医药食品", True, "第二产业", 0.05),
    ("04", "新材料", True, "第二产业", 0.05),
    ("05", "家电", True, "第二产业", 0.03),
    ("06", "装备制造", False, "第二产业", 0.07),
    ("07", "建筑业", False, "第二产业", 0.08),
    ("08", "房地产业", False, "第三产业", 0.04),
    ("09", "批发和零售业", False, "第三产业", 0.22),
    ("10", "交通运输仓储和邮政业", False, "第三产业", 0.06),
    ("11", "软件和信息技术服务业", False, "第三产业", 0.08),
    ("12", "金融业", False, "第三产业", 0.02),
    ("13", "其他服务业", False, "第三产业", 0.14),
    ("14", "农林牧渔业", False, "第一产业", 0.02),
]
NIND = len(INDUSTRIES)
IS_INDUSTRIAL = np.array([i < 6 for i in range(NIND)])  # 第二产业 except 建筑业
LEADING = np.array([r[2] for r in INDUSTRIES])
# 营业收入 of the five leading industries (万元): 2020 and 2021 are the real figures.
LEADING_REVENUE = {2018: 10_350_000, 2019: 11_420_000, 2020: 12_141_000, 2021: 13_586_000,
                   2022: 14_710_000, 2023: 15_650_000, 2024: 16_520_000, 2025: 17_480_000,
                   2026: 18_430_000}  # 2026: full-year simulation, Jan-Oct stored
LEADING_SPLIT = np.array([0.40, 0.27, 0.14, 0.11, 0.08])
# non-leading industries: 2021 营业收入 (万元) and base growth
OTHER_REVENUE_2021 = {5: (1_450_000, 0.07), 6: (1_180_000, 0.05), 7: (820_000, 0.06),
                      8: (2_650_000, 0.06), 9: (780_000, 0.07), 10: (560_000, 0.14),
                      11: (330_000, 0.06), 12: (690_000, 0.08), 13: (48_000, 0.03)}

# 一般公共预算收入 (万元): 2020 and 2021 real; 2026 is the simulated full year.
GENERAL_REVENUE = {2018: 158_600.0, 2019: 171_900.0, 2020: 182_363.0, 2021: 209_900.0,
                   2022: 196_500.0, 2023: 214_800.0, 2024: 221_300.0, 2025: 229_700.0,
                   2026: 238_900.0}
TAX_RATIO = {2018: 0.80, 2019: 0.80, 2020: 0.78, 2021: 0.80, 2022: 0.79, 2023: 0.79,
             2024: 0.78, 2025: 0.78, 2026: 0.78}  # 税收收入 / 一般公共预算收入
LAND_REVENUE = {2018: 182_000, 2019: 205_000, 2020: 231_000, 2021: 262_000, 2022: 238_000,
                2023: 216_000, 2024: 199_000, 2025: 188_000, 2026: 192_000}
OTHER_FUND_REVENUE = {y: 9_000 * 1.05 ** (y - 2018) for y in YEARS}
# 一般公共预算支出 (万元), full years (2026 simulated for the whole year)
GENERAL_EXPENDITURE = {2018: 215_000, 2019: 236_000, 2020: 259_000, 2021: 271_000,
                       2022: 284_000, 2023: 292_000, 2024: 303_000, 2025: 316_000, 2026: 328_000}
# fact_tax_payment rows at scale 1 (2026: simulated full year; Jan-Oct ≈ 610k stored)
TAX_ROWS = {2018: 360_000, 2019: 420_000, 2020: 500_000, 2021: 690_000, 2022: 700_000,
            2023: 710_000, 2024: 720_000, 2025: 730_000, 2026: 732_000}
PAYMENTS_PER_YEAR = 100_000  # fact_payment rows in 2021 at scale 1
ENTERPRISES = 12_000
MIN_ENTERPRISES = 200
# new "一套表" legal-entity units (2020, 2021 real; 2026 = Jan-Oct)
LEGAL_ENTITY_NEW = {2018: 72, 2019: 81, 2020: 90, 2021: 159, 2022: 148, 2023: 163, 2024: 171,
                    2025: 178, 2026: 146}
# GDP (亿元, current prices, full year) and real growth YTD per quarter (%)
GDP_TOTAL = {2018: 573.5, 2019: 628.0, 2020: 651.2, 2021: 721.3, 2022: 768.9, 2023: 805.1,
             2024: 842.9, 2025: 885.5, 2026: 930.0}
GDP_GROWTH = {2018: (9.3, 9.1, 9.0, 8.9), 2019: (8.5, 8.4, 8.3, 8.2),
              2020: (-6.8, -1.5, 1.8, 3.6), 2021: (19.6, 13.7, 10.5, 8.4),
              2022: (6.2, 4.1, 4.6, 5.1), 2023: (5.5, 6.3, 6.1, 6.0), 2024: (5.9, 5.7, 5.5, 5.6),
              2025: (5.6, 5.5, 5.4, 5.4), 2026: (5.3, 5.2, 5.2)}

# Monitoring rules the planted anomalies are built for (the natural data never triggers them).
ANOMALY_RULES = {
    "large_individual_payment": "payee_type = '个人' AND amount_yuan >= 100000",
    "split_below_threshold": ("同一 dept_code、payee_name、pay_date 下 amount_yuan 在 [45000, 50000) "
                              "的支付 >= 3 笔"),
    "payment_after_budget_spent": ("按 project_id、年度、pay_date、payment_id 累计支付额 > "
                                   "fact_project_performance.budget_wan * 10000"),
    "december_spike": "某单位某款 12 月支付额占全年 > 50%（完整年度）",
}
ANOMALY_KINDS = list(ANOMALY_RULES)

SPLIT_THRESHOLD_YUAN = 50_000
INDIVIDUAL_CAP_YUAN = 30_000  # natural payments to individuals never exceed this

# Monthly seasonality
SEASON_REVENUE = np.array([0.072, 0.060, 0.083, 0.082, 0.084, 0.088, 0.082, 0.083, 0.087, 0.084,
                           0.087, 0.108])
SEASON_EXP = {
    E_SAL: np.array([0.080] * 11 + [0.120]),
    E_GS: np.array([0.055, 0.060, 0.075, 0.075, 0.078, 0.085, 0.075, 0.075, 0.080, 0.080, 0.085,
                    0.177]),
    E_IND: np.array([0.100, 0.070, 0.075, 0.075, 0.075, 0.080, 0.075, 0.075, 0.080, 0.080, 0.085,
                     0.130]),
    E_ENT: np.array([0.030, 0.020, 0.050, 0.060, 0.070, 0.090, 0.080, 0.080, 0.100, 0.090, 0.120,
                     0.210]),
    E_CAP: np.array([0.030, 0.020, 0.050, 0.070, 0.080, 0.090, 0.090, 0.090, 0.100, 0.100, 0.110,
                     0.170]),
}


def _mi(year, month):
    """Month index 0 … NMV-1 (2018-01 = 0)."""
    return (np.asarray(year) - FIRST_YEAR) * 12 + np.asarray(month) - 1


def _cat(codes, categories):
    """A pandas Categorical (read by DuckDB as ENUM, cast to VARCHAR on insert)."""
    return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int32), categories=list(categories))


def _fit_total(raw, group, target):
    """Non-negative integers proportional to ``raw`` whose per-group sums equal ``target`` exactly.

    ``group`` indexes ``target``; every group with a positive target needs a positive raw sum.
    The rounding remainder (less than one unit per member) goes to the group's largest member.
    """
    raw = np.asarray(raw, dtype=np.float64)
    target = np.asarray(target, dtype=np.int64)
    ng = len(target)
    sums = np.bincount(group, weights=raw, minlength=ng)
    if np.any((target > 0) & (sums <= 0)):
        raise ValueError("group with a positive target has no weight")
    f = np.divide(target, sums, out=np.zeros(ng), where=sums > 0)
    x = np.floor(raw * f[group]).astype(np.int64)
    got = np.bincount(group, weights=x, minlength=ng).astype(np.int64)
    rest = target - got
    if np.any(rest):
        mx = np.full(ng, -np.inf)
        np.maximum.at(mx, group, raw)
        idx = np.flatnonzero(raw == mx[group])
        first = np.full(ng, -1, dtype=np.int64)
        first[group[idx][::-1]] = idx[::-1]
        ok = (rest != 0) & (first >= 0)
        x[first[ok]] += rest[ok]
    return x


def _weekday_table():
    """Weekdays of each (virtual) month as one flat array plus offsets/counts."""
    days, offs, cnts = [], [], []
    for mi in range(NMV):
        y, m = FIRST_YEAR + mi // 12, mi % 12 + 1
        start = np.datetime64(f"{y:04d}-{m:02d}-01")
        end = np.datetime64(f"{y + (m == 12):04d}-{m % 12 + 1:02d}-01")
        d = np.arange(start, end)
        d = d[np.is_busday(d)]
        offs.append(sum(len(x) for x in days))
        cnts.append(len(d))
        days.append(d)
    return np.concatenate(days), np.array(offs), np.array(cnts)


class _Gen:
    def __init__(self, con, scale, seed, progress):
        if not (scale > 0):
            raise ValueError("scale must be positive")
        self.con = con
        self.scale = float(scale)
        self.seed = int(seed)
        self.progress = progress or (lambda msg: None)
        self.counts: dict[str, int] = {}
        self.timings: dict[str, float] = {}

    # deterministic, independent random streams per component
    def rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(name.encode("utf-8"))])

    def _load(self, table: str, ddl: str, df: pd.DataFrame, select: str | None = None):
        con = self.con
        con.execute(f"CREATE TABLE {table} ({ddl})")
        con.register("_gen_df", df)
        try:
            con.execute(f"INSERT INTO {table} SELECT {select or '*'} FROM _gen_df")
        finally:
            con.unregister("_gen_df")
        n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        self.counts[table] = n
        return n

    def _step(self, label, fn):
        t = time.perf_counter()
        out = fn()
        self.timings[label] = round(time.perf_counter() - t, 3)
        return out

    # ----------------------------------------------------------------------------------------
    def run(self) -> dict:
        self._step("dims", self.dims)
        self.progress("生成科目、预算单位、产业维度 … 完成")
        self._step("enterprises", self.enterprises)
        self.progress(f"生成企业名录 … {self.counts['dim_enterprise']:,} 户")
        self._step("operations", self.operations)
        self.progress(f"生成企业经营数据 … {self.counts['fact_enterprise_operation']:,} 行")
        self._step("tax", self.tax)
        self.progress(f"生成企业纳税明细 … {self.counts['fact_tax_payment']:,} 行")
        self._step("revenue", self.revenue)
        self.progress(f"生成预算收入 … {self.counts['fact_budget_revenue']:,} 行")
        self._step("expenditure", self.expenditure_cells)
        self._step("projects", self.projects)
        self._step("payments", self.payments)
        self.progress(f"生成预算项目 … {self.counts['dim_project']:,} 个")
        self.progress(f"生成国库集中支付流水 … {self.counts['fact_payment']:,} 笔"
                      f"（其中预置异常 {self.counts['meta_planted_anomalies']:,} 笔）")
        self.progress(f"生成预算支出 … {self.counts['fact_budget_expenditure']:,} 行；"
                      f"项目绩效 … {self.counts['fact_project_performance']:,} 行")
        self._step("plans", self.plans)
        self.progress(f"生成年度预算数 … {self.counts['fact_budget_plan']:,} 行")
        self._step("gdp_legal", self.gdp_and_legal)
        self.progress(f"生成地区生产总值 … {self.counts['fact_gdp']:,} 行；"
                      f"新增法人单位 … {self.counts['fact_legal_entity']:,} 行")
        return {
            "seed": self.seed,
            "scale": self.scale,
            "data_as_of": DATA_AS_OF,
            "generator_version": GENERATOR_VERSION,
            "row_counts": dict(self.counts),
            "anomalies": self.anomalies,
            "timings": dict(self.timings),
        }

    # ----------------------------------------------------------------------------------------
    def dims(self):
        rows = []
        rows.append(("101", "税收收入", None, 1, "收入", "一般公共预算", False))
        for code, name, _, _ in TAX_SUBJECTS:
            rows.append((code, name, "101", 2, "收入", "一般公共预算", True))
        rows.append(("103", "非税收入", None, 1, "收入", "一般公共预算", False))
        rows.append(("10301", "政府性基金收入", "103", 2, "收入", "政府性基金预算", False))
        for code, name in FUND_SUBJECTS:
            rows.append((code, name, "10301", 3, "收入", "政府性基金预算", True))
        for code, name, _, _ in NONTAX_SUBJECTS:
            rows.append((code, name, "103", 2, "收入", "一般公共预算", True))
        kuan_by_class: dict[str, list] = {}
        for code, name in EXP_KUAN:
            kuan_by_class.setdefault(code[:3], []).append((code, name))
        for code, name in EXP_CLASSES:
            rows.append((code, name, None, 1, "支出", "一般公共预算", False))
            for kc, kn in kuan_by_class[code]:
                rows.append((kc, kn, code, 2, "支出", "一般公共预算", True))
        df = pd.DataFrame(rows, columns=["subject_code", "subject_name", "parent_code", "level",
                                         "direction", "budget_type", "is_leaf"])
        df = df.astype({"subject_code": object, "subject_name": object, "parent_code": object,
                        "direction": object, "budget_type": object})
        self._load("dim_subject",
                   "subject_code VARCHAR PRIMARY KEY, subject_name VARCHAR, parent_code VARCHAR, "
                   "level INTEGER, direction VARCHAR, budget_type VARCHAR, is_leaf BOOLEAN", df)

        df = pd.DataFrame([(d[0], d[1], d[2]) for d in DEPARTMENTS],
                          columns=["dept_code", "dept_name", "dept_type"], dtype=object)
        self._load("dim_department",
                   "dept_code VARCHAR PRIMARY KEY, dept_name VARCHAR, dept_type VARCHAR", df)

        df = pd.DataFrame([(r[0], r[1], r[2], r[3]) for r in INDUSTRIES],
                          columns=["industry_code", "industry_name", "is_leading", "sector"])
        df = df.astype({"industry_code": object, "industry_name": object, "sector": object})
        self._load("dim_industry",
                   "industry_code VARCHAR PRIMARY KEY, industry_name VARCHAR, is_leading BOOLEAN, "
                   "sector VARCHAR", df)

    # ----------------------------------------------------------------------------------------
    def enterprises(self):
        rng = self.rng("enterprise")
        n = max(MIN_ENTERPRISES, int(round(ENTERPRISES * self.scale)))
        w = np.array([r[4] for r in INDUSTRIES])
        ind = rng.choice(NIND, size=n, p=w / w.sum())
        k = 3 * NIND  # guarantee every industry a few long-lived enterprises
        ind[:k] = np.arange(k) % NIND
        rng.shuffle(ind)
        anchor = np.zeros(n, dtype=bool)
        # the first occurrence ×3 of each industry is an anchor
        for i in range(NIND):
            anchor[np.flatnonzero(ind == i)[:3]] = True

        # size class: 0 大型 1 中型 2 小型 3 微型
        heavy = IS_INDUSTRIAL[ind]
        u = rng.random(n)
        size = np.where(heavy,
                        np.searchsorted([0.04, 0.20, 0.60], u, side="right"),
                        np.searchsorted([0.015, 0.10, 0.45], u, side="right"))
        # establishment dates
        d0 = np.datetime64("2018-01-01")
        last = np.datetime64("2026-10-31")
        pre = (rng.random(n) < 0.71) | anchor
        years = np.arange(1993, 2018)
        yw = (years - 1990.0) ** 1.6
        pre_year = rng.choice(years, size=n, p=yw / yw.sum())
        pre_date = (pre_year - 1970).astype("datetime64[Y]").astype("datetime64[D]") + \
            rng.integers(0, 365, n).astype("timedelta64[D]")
        span = int((last - d0).astype(int))
        new_off = (np.sqrt(rng.random(n)) * 0.35 + rng.random(n) * 0.65) * span
        new_date = d0 + new_off.astype(np.int64).astype("timedelta64[D]")
        est = np.where(pre, pre_date, new_date)
        est = np.minimum(est, last)
        # deregistration (注销) between 2018 and 2026-10
        dereg_p = np.where(anchor, 0.0, 0.075)
        has_dereg = rng.random(n) < dereg_p
        lo = np.maximum(est + np.timedelta64(400, "D"), d0)
        has_dereg &= lo < last - np.timedelta64(30, "D")
        lo_i = lo.astype(np.int64)
        hi_i = (last - np.timedelta64(1, "D")).astype(np.int64)
        dd = lo_i + (rng.random(n) * np.maximum(hi_i - lo_i, 1)).astype(np.int64)
        dereg = np.where(has_dereg, dd, np.iinfo(np.int64).max)

        ownership_p = np.array([[0.20, 0.45, 0.25, 0.10],   # 大型
                                [0.08, 0.72, 0.13, 0.07],   # 中型
                                [0.03, 0.87, 0.06, 0.04],   # 小型
                                [0.01, 0.95, 0.02, 0.02]])  # 微型
        cum = ownership_p.cumsum(axis=1)[size]
        own = (rng.random(n)[:, None] > cum).sum(axis=1)
        own = np.minimum(own, 3)
        above = np.where(size <= 1, True,
                         np.where(size == 2, rng.random(n) < np.where(heavy | (ind == 8), 0.5, 0.3),
                                  False))
        cap_mu = np.array([np.log(60000), np.log(5000), np.log(500), np.log(50)])[size]
        cap = np.exp(cap_mu + rng.normal(0, 0.8, n))
        cap = _nice_amounts(cap)

        # base yearly revenue (relative units) and growth path
        rev_mu = np.array([np.log(250000), np.log(25000), np.log(2500), np.log(250)])[size]
        base = np.exp(rev_mu + rng.normal(0, 0.6, n)) * np.where(LEADING[ind], 1.5, 1.0)
        trend = np.exp(np.cumsum(rng.normal(0.0, 0.12, (n, NY)), axis=1))
        emp_mu = np.array([np.log(2500), np.log(450), np.log(80), np.log(8)])[size]
        emp_lo = np.array([1000, 300, 20, 2])[size]
        emp_hi = np.array([20000, 999, 299, 19])[size]
        employees = np.clip(np.exp(emp_mu + rng.normal(0, 0.45, n)), emp_lo, emp_hi)

        names = _enterprise_names(rng, ind, size)
        codes = _credit_codes(rng, est)
        order = np.lexsort((np.arange(n), est))  # enterprise ids in order of establishment
        ent_id = np.empty(n, dtype=np.int64)
        ent_id[order] = np.arange(1, n + 1)
        # keep arrays ordered by enterprise_id
        perm = order
        self.n_ent = n
        self.ent_id = np.arange(1, n + 1)
        self.ent_ind = ind[perm]
        self.ent_size = size[perm]
        self.ent_est = est[perm]
        self.ent_dereg = dereg[perm]
        self.ent_base = base[perm]
        self.ent_trend = trend[perm]
        self.ent_emp = employees[perm]
        self.ent_names = [names[i] for i in perm]

        sizes = ["大型", "中型", "小型", "微型"]
        owns = ["国有", "民营", "外资", "港澳台"]
        dereg_p_ = dereg[perm]
        dereg_dates = np.where(dereg_p_ == np.iinfo(np.int64).max, np.datetime64("NaT"),
                               dereg_p_.astype("datetime64[D]"))
        df = pd.DataFrame({
            "enterprise_id": self.ent_id.astype(np.int32),
            "enterprise_name": pd.Series([names[i] for i in perm], dtype=object),
            "credit_code": pd.Series([codes[i] for i in perm], dtype=object),
            "industry_code": _cat(ind[perm], [r[0] for r in INDUSTRIES]),
            "scale": _cat(size[perm], sizes),
            "ownership": _cat(own[perm], owns),
            "is_above_scale": above[perm],
            "established_date": est[perm],
            "registered_capital_wan": cap[perm],
            "status": _cat(np.where(has_dereg[perm], 1, 0), ["存续", "注销"]),
            "deregistered_date": dereg_dates,
        })
        self._load(
            "dim_enterprise",
            "enterprise_id INTEGER PRIMARY KEY, enterprise_name VARCHAR, credit_code VARCHAR, "
            "industry_code VARCHAR, scale VARCHAR, ownership VARCHAR, is_above_scale BOOLEAN, "
            "established_date DATE, registered_capital_wan DOUBLE, status VARCHAR, "
            "deregistered_date DATE",
            df,
            "enterprise_id, enterprise_name, credit_code, industry_code::VARCHAR, scale::VARCHAR, "
            "ownership::VARCHAR, is_above_scale, established_date::DATE, registered_capital_wan, "
            "status::VARCHAR, deregistered_date::DATE")

        # month range in which each enterprise is active (virtual months included)
        est_mi = _date_mi(self.ent_est)
        dereg_mi = np.where(dereg_p_ == np.iinfo(np.int64).max, NMV - 1,
                            _date_mi(np.minimum(dereg_p_, 10**6).astype("datetime64[D]")))
        self.ent_first_mi = np.maximum(est_mi, 0)
        self.ent_last_mi = np.minimum(dereg_mi, NMV - 1)

    # ----------------------------------------------------------------------------------------
    def operations(self):
        rng = self.rng("operation")
        first, last = self.ent_first_mi, self.ent_last_mi
        per_month = [np.flatnonzero((first <= m) & (last >= m)) for m in range(NMV)]
        ent = np.concatenate(per_month)
        mi = np.repeat(np.arange(NMV), [len(x) for x in per_month])
        yi = mi // 12
        month = mi % 12 + 1
        ind = self.ent_ind[ent]

        est_year = self.ent_est.astype("datetime64[Y]").astype(int) + 1970
        age = FIRST_YEAR + yi - est_year[ent]
        ramp = np.where(age <= 0, 0.35, np.where(age == 1, 0.75, 1.0))
        dereg_mi = self.ent_last_mi[ent]
        fading = np.where((dereg_mi < NMV - 1) & (dereg_mi - mi < 6), 0.6, 1.0)
        raw = (self.ent_base[ent] * self.ent_trend[ent, yi] * SEASON_REVENUE[month - 1] * ramp
               * fading * np.exp(rng.normal(0, 0.08, len(ent))))

        # yearly targets per industry (万元 -> cents)
        targets = np.zeros((NIND, NY))
        for j, y in enumerate(YEARS):
            tot = LEADING_REVENUE[y]
            split = LEADING_SPLIT * np.array([1 + 0.012 * (y - 2018), 1 - 0.004 * (y - 2018),
                                              1.0, 1 + 0.01 * (y - 2018), 1.0])
            split = split / split.sum()
            cents = np.floor(split * tot * 100).astype(np.int64)
            cents[0] += tot * 100 - cents.sum()
            targets[:5, j] = cents
        for i, (v21, g) in OTHER_REVENUE_2021.items():
            series = {2021: float(v21)}
            growth = {2019: g, 2020: g - 0.05, 2021: g + 0.04}
            for y in range(2022, 2027):
                growth[y] = (g if i != 7 else -0.07)
            for y in (2020, 2019, 2018):
                series[y] = series[y + 1] / (1 + growth[y + 1])
            for y in range(2022, 2027):
                series[y] = series[y - 1] * (1 + growth[y])
            for j, y in enumerate(YEARS):
                targets[i, j] = round(series[y] * 100)
        group = ind * NY + yi
        rev_c = _fit_total(raw, group, targets.reshape(-1).astype(np.int64))

        output = np.where(IS_INDUSTRIAL[ind],
                          rev_c * (0.92 + 0.16 * self.rng("output").random(self.n_ent))[ent]
                          * np.exp(rng.normal(0, 0.03, len(ent))), np.nan)
        output = np.round(output) / 100.0
        emp = self.ent_emp[ent] * self.ent_trend[ent, yi] ** 0.35 * ramp ** 0.5 * \
            np.exp(rng.normal(0, 0.02, len(ent)))
        emp = np.maximum(np.round(emp), 1).astype(np.int32)

        # keep for the tax generator (virtual months included)
        self.op_ent, self.op_mi, self.op_rev = ent, mi, rev_c
        keep = mi < NMR
        df = pd.DataFrame({
            "year": (FIRST_YEAR + yi[keep]).astype(np.int32),
            "month": month[keep].astype(np.int32),
            "enterprise_id": self.ent_id[ent[keep]].astype(np.int32),
            "revenue_wan": rev_c[keep] / 100.0,
            "industrial_output_wan": output[keep],
            "employees": emp[keep],
        })
        self._load("fact_enterprise_operation",
                   "year INTEGER, month INTEGER, enterprise_id INTEGER, revenue_wan DOUBLE, "
                   "industrial_output_wan DOUBLE, employees INTEGER", df)

    # ----------------------------------------------------------------------------------------
    def tax(self):
        rng = self.rng("tax")
        ns = len(TAX_SUBJECTS)
        share = np.array([t[2] for t in TAX_SUBJECTS])
        p_base = np.array([0.93, 1.0, 0.85, 0.88, 1.0, 0.50, 1.0, 1.0, 0.02, 0.001, 0.01, 1.0,
                           0.003])
        pm = np.ones((ns, 12))
        q = np.array([1, 4, 7, 10]) - 1
        pm[1, :] = 0.03
        pm[1, q] = 0.85
        pm[1, 4] = 0.55
        for s in (4, 6):
            pm[s, :] = 0.04
            pm[s, [3, 9]] = 0.55
        pm[11, :] = 0.0
        pm[11, q] = 0.35
        pi = np.ones((ns, NIND))
        pi[7, :] = 0.002
        pi[7, 7] = 0.45
        pi[10, 7] = 15.0
        pi[10, 6] = 2.0
        pi[9, [6, 7]] = 10.0
        pi[11, :] = 0.0
        pi[11, :6] = 1.0
        pi[0, 13] = 0.5
        mult_w = np.array([0.22, 0.04, 0.30, 0.16, 0.01, 0.24, 0.01, 0.0, 0.0, 0.0, 0.01, 0.0,
                           0.01])
        sigma = np.array([0.35, 0.8, 0.3, 0.35, 0.5, 0.9, 0.5, 1.2, 0.6, 1.0, 1.2, 0.6, 1.0])
        # month factor of amounts (EIT: quarterly prepayment + May settlement; semi-annual taxes)
        am = np.ones((ns, 12))
        am[1, :] = 0.3
        am[1, q] = 1.0
        am[1, 4] = 1.2
        profit = np.exp(rng.normal(0, 0.7, self.n_ent))  # EIT depends on profitability

        base_mix = np.array([t[3] for t in TAX_SUBJECTS])
        # filing probability by (month, industry) -> subject, one gather per year
        ptab = np.clip(pm.T[:, None, :] * pi.T[None, :, :] * p_base[None, None, :], 0, 1)
        ptab = ptab.reshape(12 * NIND, ns)
        pow_sub = np.isin(np.arange(ns), (4, 6, 8))  # property-type taxes: less than linear
        years_out = []
        local_wc = np.zeros((NY, 12, ns), dtype=np.int64)  # local tax, 0.01 万元
        for j, y in enumerate(YEARS):
            sel = slice(*np.searchsorted(self.op_mi, [j * 12, j * 12 + 12]))
            E = self.op_ent[sel]
            M = self.op_mi[sel] - j * 12  # 0..11
            R = self.op_rev[sel].astype(np.float64)
            IND = self.ent_ind[E]
            P = ptab[M * NIND + IND]  # (nem, ns)
            N = int(round(TAX_ROWS[y] * self.scale))
            expected = P.sum()
            if expected > N:  # thin so that about N rows are drawn
                P *= N / expected
            hit = rng.random(P.shape) < P
            em_idx, s_idx = np.nonzero(hit)
            K = len(em_idx)
            if K > N:  # drop a few at random
                drop = rng.choice(K, size=K - N, replace=False)
                keep = np.ones(K, dtype=bool)
                keep[drop] = False
                em_idx, s_idx = em_idx[keep], s_idx[keep]
            elif K < N:  # second declarations of the same tax in the month
                ks = rng.multinomial(N - K, mult_w / mult_w.sum())
                extra = []
                for sj in np.flatnonzero(ks):
                    rows_s = np.flatnonzero(s_idx == sj)
                    if len(rows_s) == 0:
                        rows_s = np.arange(K)
                    extra.append(rows_s[rng.integers(0, len(rows_s), ks[sj])])
                extra = np.sort(np.concatenate(extra))
                em_idx = np.concatenate([em_idx, em_idx[extra]])
                s_idx = np.concatenate([s_idx, s_idx[extra]])
            e = E[em_idx]
            m = M[em_idx]
            rev = R[em_idx]
            sel = pow_sub[s_idx]
            rev[sel] = rev[sel] ** 0.7
            raw = rev * am[s_idx, m] * np.exp(rng.standard_normal(len(s_idx)) * sigma[s_idx])
            sel = s_idx == 1
            raw[sel] *= profit[e[sel]]
            # gross (全口径) targets per subject so that the local share hits the tax target
            mix = base_mix.copy()
            mix[[7, 10]] *= (1 + 0.05 * (y - 2018)) if y <= 2021 else 1.15 * 0.88 ** (y - 2021)
            if y == 2022:
                mix[0] *= 0.85
            if y == 2020:
                mix[1] *= 0.92
            mix = mix * np.exp(rng.normal(0, 0.03, ns))
            mix /= mix.sum()
            ratio = TAX_RATIO[y] + rng.uniform(-0.004, 0.004)
            local_target_wan = GENERAL_REVENUE[y] * ratio * mix
            gross_cents = local_target_wan / share * 1e6  # 万元 -> yuan cents
            sums = np.bincount(s_idx, weights=raw, minlength=ns)
            fac = np.divide(gross_cents, sums, out=np.zeros(ns), where=sums > 0)
            cents = np.rint(raw * fac[s_idx])
            cents = np.maximum(cents, 100).astype(np.int64)  # at least 1 元
            gross_ms = np.bincount(m * ns + s_idx, weights=cents, minlength=12 * ns).reshape(12, ns)
            local_wc[j] = np.rint(gross_ms * share[None, :] / 1e4).astype(np.int64)
            # order by month, subject, enterprise (em index is ordered by month, enterprise)
            o1 = np.argsort(em_idx, kind="stable")
            o2 = np.argsort((m[o1] * ns + s_idx[o1]).astype(np.int16), kind="stable")
            o = o1[o2]
            if y == LAST_YEAR:
                o = o[m[o] < LAST_MONTH]
            years_out.append((y, m[o] + 1, self.ent_id[e[o]], s_idx[o], cents[o]))
        self.tax_local_wc = local_wc
        year = np.concatenate([np.full(len(t[1]), t[0], np.int32) for t in years_out])
        df = pd.DataFrame({
            "year": year,
            "month": np.concatenate([t[1] for t in years_out]).astype(np.int32),
            "enterprise_id": np.concatenate([t[2] for t in years_out]).astype(np.int32),
            "subject_code": _cat(np.concatenate([t[3] for t in years_out]),
                                 [t[0] for t in TAX_SUBJECTS]),
            "amount_yuan": np.concatenate([t[4] for t in years_out]) / 100.0,
        })
        del years_out
        self._load("fact_tax_payment",
                   "year INTEGER, month INTEGER, enterprise_id INTEGER, subject_code VARCHAR, "
                   "amount_yuan DOUBLE", df,
                   "year, month, enterprise_id, subject_code::VARCHAR, amount_yuan")
        self.tax_rows_by_year = {y: int((year == y).sum()) for y in YEARS}

    # ----------------------------------------------------------------------------------------
    def revenue(self):
        rng = self.rng("revenue")
        ns = len(TAX_SUBJECTS)
        codes = ([t[0] for t in TAX_SUBJECTS] + [t[0] for t in NONTAX_SUBJECTS]
                 + [t[0] for t in FUND_SUBJECTS])
        nn = len(NONTAX_SUBJECTS)
        amount = np.zeros((NY, 12, len(codes)), dtype=np.int64)  # 0.01 万元
        amount[:, :, :ns] = self.tax_local_wc
        nt_share = np.array([t[2] for t in NONTAX_SUBJECTS])
        nt_sigma = np.array([t[3] for t in NONTAX_SUBJECTS])
        dec = np.ones(12)
        dec[11] = 1.3
        for j, y in enumerate(YEARS):
            target = int(round(GENERAL_REVENUE[y] * 100))
            tax = int(self.tax_local_wc[j].sum())
            nontax = target - tax
            if not (0.1 * target < nontax < 0.35 * target):
                raise RuntimeError(f"{y}: 非税收入占比异常 ({nontax / target:.1%})")
            sh = nt_share * np.exp(rng.normal(0, 0.08, nn))
            w = (sh[None, :] * dec[:, None] * np.exp(rng.normal(0, nt_sigma[None, :], (12, nn))))
            amount[j, :, ns:ns + nn] = _fit_total(w.reshape(-1), np.zeros(12 * nn, np.int64),
                                                  np.array([nontax])).reshape(12, nn)
            # 政府性基金: land sales in a handful of auction months, other funds monthly
            k = int(rng.integers(5, 9))
            mw = np.array([0.6, 0.3, 0.8, 0.9, 1.0, 1.4, 0.9, 0.8, 1.1, 1.0, 1.1, 1.8])
            months = rng.choice(12, size=k, replace=False, p=mw / mw.sum())
            lw = np.zeros(12)
            lw[months] = np.exp(rng.normal(0, 0.5, k))
            amount[j, :, ns + nn] = _fit_total(lw, np.zeros(12, np.int64),
                                               np.array([round(LAND_REVENUE[y] * 100)]))
            ow = SEASON_REVENUE * np.exp(rng.normal(0, 0.3, 12))
            amount[j, :, ns + nn + 1] = _fit_total(ow, np.zeros(12, np.int64),
                                                   np.array([round(OTHER_FUND_REVENUE[y] * 100)]))
        self.revenue_full = amount  # full years (2026 simulated) for plans
        yy, mm, ss = np.meshgrid(np.arange(NY), np.arange(12), np.arange(len(codes)), indexing="ij")
        a = amount.reshape(-1)
        yy, mm, ss = yy.reshape(-1), mm.reshape(-1), ss.reshape(-1)
        keep = (a > 0) & (yy * 12 + mm < NMR)
        order = np.lexsort((np.array(codes)[ss[keep]], mm[keep], yy[keep]))
        df = pd.DataFrame({
            "year": (FIRST_YEAR + yy[keep][order]).astype(np.int32),
            "month": (mm[keep][order] + 1).astype(np.int32),
            "subject_code": _cat(ss[keep][order], codes),
            "amount_wan": a[keep][order] / 100.0,
        })
        self._load("fact_budget_revenue",
                   "year INTEGER, month INTEGER, subject_code VARCHAR, amount_wan DOUBLE", df,
                   "year, month, subject_code::VARCHAR, amount_wan")

    # ----------------------------------------------------------------------------------------
    def expenditure_cells(self):
        """Monthly natural amounts per (dept, 款, 经济分类) cell, in yuan cents (virtual months too)."""
        rng = self.rng("expenditure")
        cells = []  # dept_i, kuan, econ, base weight, kind
        for di, (code, name, dtype, staff, admin, biz) in enumerate(DEPARTMENTS):
            sal = staff * 12.0
            cells.append((di, admin, E_SAL, sal, "salary"))
            cells.append((di, "20805", E_SAL, sal * 0.16, "pension"))
            cells.append((di, "21011", E_SAL, sal * 0.08, "medical"))
            cells.append((di, "22102", E_SAL, sal * 0.12, "housing"))
            cells.append((di, admin, E_GS, staff * 2.5, "admin"))
            for kuan, econ, wt in biz:
                cells.append((di, kuan, _ECON_ABBR[econ], float(wt), "biz"))
        # merge duplicates (e.g. admin 商品和服务 cell that is also a business cell)
        merged: dict[tuple, list] = {}
        for di, kuan, econ, wt, kind in cells:
            key = (di, kuan, econ)
            if key in merged:
                merged[key][0] += wt
                if kind == "biz":
                    merged[key][1] = "biz"
            else:
                merged[key] = [wt, kind]
        keys = list(merged)
        self.cell_dept = np.array([k[0] for k in keys])
        self.cell_kuan = [k[1] for k in keys]
        self.cell_econ = np.array([k[2] for k in keys])
        self.cell_kind = [merged[k][1] for k in keys]
        base = np.array([merged[k][0] for k in keys])
        C = len(keys)
        is_sal = self.cell_econ == E_SAL
        cls = np.array([k[:3] for k in self.cell_kuan])
        class_trend = {"206": 1.07, "215": 1.04, "208": 1.05, "212": 1.01, "214": 0.99}
        W = np.zeros((C, NY))
        walk = np.exp(np.cumsum(rng.normal(0, 0.07, (C, NY)), axis=1))
        for j, y in enumerate(YEARS):
            t = y - FIRST_YEAR
            trend = np.array([class_trend.get(c, 1.02) ** t for c in cls])
            bump = np.where(np.isin(cls, ["208", "210"]) & (y == 2020), 1.25, 1.0)
            W[:, j] = np.where(is_sal, base * 1.05 ** t * np.exp(rng.normal(0, 0.02, C)),
                               base * walk[:, j] * trend * bump)
            W[:, j] *= GENERAL_EXPENDITURE[y] / W[:, j].sum()
        months = np.zeros((C, NY, 12))
        for e, season in SEASON_EXP.items():
            idx = np.flatnonzero(self.cell_econ == e)
            sea = season[None, None, :] * np.exp(rng.normal(0, 0.12, (len(idx), NY, 12)))
            months[idx] = sea / sea.sum(axis=2, keepdims=True)
        amt_wan = W[:, :, None] * months
        self.cell_cents = np.rint(amt_wan * 1e6).astype(np.int64).reshape(C, NMV)  # yuan cents
        self.n_cells = C

    # ----------------------------------------------------------------------------------------
    def projects(self):
        rng = self.rng("project")
        rows = []  # project_id, name, dept_i, kuan, type, start_year, years(list), cell
        seq: dict[tuple, int] = {}
        used_names: set[str] = set()
        types = {E_CAP: "基本建设", E_ENT: "产业扶持", E_IND: "民生保障", E_GS: "运转保障"}
        for c in range(self.n_cells):
            econ = int(self.cell_econ[c])
            if econ == E_SAL or self.cell_kind[c] != "biz":
                continue
            kuan = self.cell_kuan[c]
            if kuan in ("23203", "22999"):
                continue
            di = int(self.cell_dept[c])
            for sy in range(2016, LAST_YEAR + 1):
                if econ == E_CAP:
                    k = 1 + rng.poisson(0.6)
                    dur = rng.integers(1, 4, k)
                elif econ == E_ENT:
                    k = 1 + rng.poisson(0.3)
                    dur = rng.integers(1, 3, k)
                elif econ == E_IND:
                    k = 1
                    dur = np.ones(1, dtype=int)
                else:
                    k = int(rng.random() < 0.35)
                    dur = np.ones(k, dtype=int)
                for d in dur[:k]:
                    yrs = [y for y in range(sy, sy + int(d)) if FIRST_YEAR <= y <= LAST_YEAR]
                    if not yrs:
                        continue
                    name = _project_name(rng, econ, kuan, sy, int(d), used_names)
                    used_names.add(name)
                    key = (DEPARTMENTS[di][0], sy)
                    seq[key] = seq.get(key, 0) + 1
                    pid = f"XM{sy}{DEPARTMENTS[di][0]}{seq[key]:03d}"
                    rows.append((pid, name, di, kuan, types[econ], sy, yrs, c))
        self.proj = rows
        self.n_proj = len(rows)
        # lookup (cell, year) -> project indices
        lists: dict[tuple, list] = {}
        for p, r in enumerate(rows):
            for y in r[6]:
                lists.setdefault((r[7], y - FIRST_YEAR), []).append(p)
        off = np.zeros((self.n_cells, NY), dtype=np.int64)
        cnt = np.zeros((self.n_cells, NY), dtype=np.int64)
        flat = []
        for (c, j), ps in sorted(lists.items()):
            off[c, j] = len(flat)
            cnt[c, j] = len(ps)
            flat.extend(ps)
        self.proj_off, self.proj_cnt = off, cnt
        self.proj_flat = np.array(flat, dtype=np.int64)

    # ----------------------------------------------------------------------------------------
    def payments(self):
        rng = self.rng("payment")
        F = self.scale
        C = self.n_cells
        wd_all, wd_off, wd_cnt = _weekday_table()
        # ---- cell-months (realised only)
        cm_cell = np.repeat(np.arange(C), NMR)
        cm_mi = np.tile(np.arange(NMR), C)
        T = self.cell_cents[:, :NMR].reshape(-1)
        econ = self.cell_econ[cm_cell]
        t_wan = T / 1e6
        lam = np.zeros(len(T))
        k_econ = {E_GS: 1.0, E_ENT: 0.5, E_CAP: 0.4}
        for e, k in k_econ.items():
            sel = econ == e
            lam[sel] = k * t_wan[sel] ** (0.7 if e == E_GS else 0.6)
        lam_ind = np.where(econ == E_IND, 0.5 * (T / 100) / 3000.0, 0.0)
        single = (econ == E_SAL) | np.isin(cm_cell, np.flatnonzero(
            np.array(self.cell_kuan) == "23203"))  # payroll transfers, bond interest
        lam[single] = 0.0
        # calibrate: ~PAYMENTS_PER_YEAR rows in 2021 at scale 1
        y21 = (cm_mi // 12) == (2021 - FIRST_YEAR)
        n_single21 = np.sum(y21 & single)
        n_bulk21 = np.sum(y21 & (econ == E_IND)) * 1.3
        g = (PAYMENTS_PER_YEAR - n_single21 - n_bulk21 - lam_ind[y21].sum()) / lam[y21].sum()
        n_main = np.where(single, 1,
                          np.where(econ == E_IND, 1 + (rng.random(len(T)) < 0.3),
                                   np.maximum(1, rng.poisson(lam * g * F))))
        n_ind = rng.poisson(lam_ind * F)
        # ---- payments to individuals (amounts independent of scale, capped)
        ind_cm = np.repeat(np.arange(len(T)), n_ind)
        ind_amt = np.clip(np.rint(np.exp(rng.normal(np.log(2000), 0.9, len(ind_cm)))), 100,
                          INDIVIDUAL_CAP_YUAN) * 100
        s = np.bincount(ind_cm, weights=ind_amt, minlength=len(T))
        capv = 0.85 * T
        fac = np.where(s > capv, capv / np.maximum(s, 1), 1.0)
        ind_amt = np.maximum(np.floor(ind_amt * fac[ind_cm]), 1).astype(np.int64)
        s = np.bincount(ind_cm, weights=ind_amt, minlength=len(T)).astype(np.int64)
        # ---- main payments (split the remainder of each cell-month exactly)
        main_cm = np.repeat(np.arange(len(T)), n_main)
        sig = np.array([0.15, 1.1, 0.6, 0.9, 1.0])
        w = np.exp(rng.normal(0, sig[econ[main_cm]]))
        main_amt = _fit_total(w, main_cm, T - s)

        cm = np.concatenate([main_cm, ind_cm])
        amt = np.concatenate([main_amt, ind_amt])
        is_ind = np.concatenate([np.zeros(len(main_cm), bool), np.ones(len(ind_cm), bool)])
        nP = len(cm)
        cell = cm_cell[cm]
        mi = cm_mi[cm]
        pe = self.cell_econ[cell]
        kinds = np.array(self.cell_kind)[cell]

        # ---- projects
        yi = mi // 12
        kuan_arr = np.array(self.cell_kuan)[cell]
        p_assign = np.array([0.0, 0.35, 0.85, 0.9, 0.95])[pe]
        cntp = self.proj_cnt[cell, yi]
        u = rng.random(nP)
        has = (cntp > 0) & (u < p_assign) & (kinds == "biz")
        proj = np.full(nP, -1, dtype=np.int64)
        pick = np.floor(rng.random(has.sum()) * cntp[has]).astype(np.int64)
        proj[has] = self.proj_flat[self.proj_off[cell[has], yi[has]] + pick]

        # ---- payees
        units = [  # name, purposes when paid without a project (None: set by the cell)
            ("经开区财政局工资统发专户", None), ("机关事业单位养老保险基金专户", None),
            ("职工基本医疗保险基金专户", None), ("住房公积金管理中心经开区管理部", None),
            ("财政补贴资金代发专户（一卡通）", None), ("江西省财政厅政府债券付息专户", None),
            ("经开区机关事务服务中心", ["机关食堂服务费", "物业管理服务费"]),
            ("水电费代收专户", ["水电费"]), ("通信费代收专户", ["通信费", "网络专线租赁费"]),
            ("经开区会议培训中心", ["会议费", "培训费"]), ("经开区公共资源交易中心", ["交易服务费"]),
            ("经开区融媒体中心", ["宣传服务费"]),
        ]
        U0 = 6  # first unit that sells goods and services
        persons = _person_names(self.rng("persons"), 5000)
        self.persons = persons
        ent_names = self.ent_names
        all_names = ent_names + persons + [u_[0] for u_ in units]
        if len(set(all_names)) != len(all_names):
            raise RuntimeError("收款人名称重复")
        P_ENT, P_IND, P_UNIT = 0, 1, 2
        n_e, n_p = len(ent_names), len(persons)
        ptype = np.full(nP, P_ENT, dtype=np.int8)
        pname = np.full(nP, -1, dtype=np.int64)
        unit_of_kind = {"salary": 0, "pension": 1, "medical": 2, "housing": 3}
        for kind, u_ in unit_of_kind.items():
            sel = kinds == kind
            ptype[sel] = P_UNIT
            pname[sel] = n_e + n_p + u_
        sel = (pe == E_IND) & ~is_ind
        ptype[sel] = P_UNIT
        pname[sel] = n_e + n_p + 4
        sel = is_ind
        ptype[sel] = P_IND
        pname[sel] = n_e + rng.integers(0, n_p, sel.sum())
        sel = kuan_arr == "23203"
        ptype[sel] = P_UNIT
        pname[sel] = n_e + n_p + 5
        unit_gs = (pe == E_GS) & (pname < 0) & (proj < 0) & (rng.random(nP) < 0.18)
        ptype[unit_gs] = P_UNIT
        unit_pick = U0 + rng.integers(0, len(units) - U0, nP)
        pname[unit_gs] = n_e + n_p + unit_pick[unit_gs]
        # enterprises by category: 0 services/suppliers, 1 subsidies, 2 construction
        need = pname < 0
        cat = np.where(pe == E_ENT, 1, np.where(pe == E_CAP, 2, 0))
        pname[need] = self._pick_enterprises(rng, cat[need], mi[need])
        ent_of = np.where(ptype == P_ENT, pname, -1)

        # ---- dates (weekdays; salaries on a fixed day; December skews late)
        uu = rng.random(nP)
        uu = np.where((mi % 12 == 11) & (pe != E_SAL), uu ** 0.5, uu)
        di = np.floor(uu * wd_cnt[mi]).astype(np.int64)
        di = np.where(pe == E_SAL, np.minimum(6 + (kinds != "salary"), wd_cnt[mi] - 1), di)
        day = wd_all[wd_off[mi] + di]

        # ---- purposes
        purposes = _PurposeBook()
        purpose = np.full(nP, -1, dtype=np.int64)
        month_no = mi % 12 + 1
        sal_tpl = {"salary": "{m}月工资统发", "pension": "{m}月机关事业单位基本养老保险缴费",
                   "medical": "{m}月职工基本医疗保险缴费", "housing": "{m}月住房公积金"}
        for kind, tpl in sal_tpl.items():
            ids = np.array([purposes.add(tpl.format(m=m)) for m in range(1, 13)])
            sel = kinds == kind
            purpose[sel] = ids[month_no[sel] - 1]
        proj_suffix = {E_CAP: ["工程进度款", "工程进度款", "工程进度款", "设计监理费"],
                       E_ENT: ["资金拨付"], E_IND: ["资金发放"], E_GS: ["服务费", "采购款"]}
        pidx = np.flatnonzero(proj >= 0)
        if len(pidx):
            sfx = rng.random(len(pidx))
            p_econ = pe[pidx]
            texts = np.empty(len(pidx), dtype=np.int64)
            for e, opts in proj_suffix.items():
                sel = p_econ == e
                if not sel.any():
                    continue
                choice = np.floor(sfx[sel] * len(opts)).astype(int)
                pp = proj[pidx[sel]]
                bulk = ~is_ind[pidx[sel]] & (e == E_IND)
                keys = pp * 8 + choice + bulk * 4
                uk, inv = np.unique(keys, return_inverse=True)
                ids = np.array([purposes.add(_project_purpose(
                    self.proj[k // 8][1], "（一卡通代发）" if (k % 8) >= 4 else opts[(k % 8) % 4]))
                    for k in uk])
                texts[sel] = ids[inv]
            purpose[pidx] = texts
        generic = {
            E_GS: ["办公用品采购", "物业管理服务费", "水电费", "印刷费", "维修（护）费", "差旅费",
                   "会议费", "培训费", "公务用车运行维护费", "委托业务费", "专用材料购置",
                   "信息系统运维服务费", "劳务派遣服务费", "租赁费", "咨询服务费", "保安服务费"],
            E_ENT: ["企业扶持资金拨付", "奖补资金拨付", "贷款贴息拨付"],
            E_CAP: ["设备购置", "工程款", "信息化设备采购"],
            E_IND: ["生活补助发放", "慰问金发放", "补贴发放"],
        }
        special = {"23203": ["地方政府一般债券付息"], "21205": ["道路清扫保洁服务费", "垃圾清运服务费"],
                   "20402": ["执法装备维护费", "警务辅助服务费"], "22999": ["预备费支出", "其他支出"]}
        rest = np.flatnonzero(purpose < 0)
        ur = rng.random(len(rest))
        for e, opts in generic.items():
            ids = np.array([purposes.add(t) for t in opts])
            sel = pe[rest] == e
            purpose[rest[sel]] = ids[np.floor(ur[sel] * len(opts)).astype(int)]
        for kuan, opts in special.items():
            ids = np.array([purposes.add(t) for t in opts])
            sel = (kuan_arr[rest] == kuan) & (pe[rest] == E_GS)
            purpose[rest[sel]] = ids[np.floor(ur[sel] * len(opts)).astype(int)]
        bulk = (pe == E_IND) & ~is_ind & (proj < 0)
        purpose[bulk] = purposes.add("补贴资金代发")
        for ui in range(U0, len(units)):
            sel = np.flatnonzero(unit_gs & (unit_pick == ui))
            ids = np.array([purposes.add(t) for t in units[ui][1]])
            purpose[sel] = ids[np.floor(rng.random(len(sel)) * len(ids)).astype(int)]

        pay = dict(cm=cm, cell=cell, mi=mi, day=day, ptype=ptype, pname=pname, ent=ent_of,
                   amt=amt.astype(np.int64), proj=proj, purpose=purpose,
                   planted=np.zeros(nP, dtype=np.int8), note=np.full(nP, -1, dtype=np.int64))
        notes: list[str] = []
        pay = self._plant(pay, notes, purposes, wd_all, wd_off, wd_cnt, n_e, n_p, persons,
                          cm_cell, cm_mi)
        self._finish_payments(pay, notes, purposes, all_names, n_e, cm_cell, cm_mi)

    def _pick_enterprises(self, rng, cat, mi):
        """Pick an active enterprise per payment, by category (suppliers / subsidies / builders)."""
        ind_w = np.zeros((3, NIND))
        ind_w[0, [8, 9, 10, 12, 7, 6, 5]] = [3.0, 1.0, 2.5, 2.5, 0.8, 0.5, 0.4]
        ind_w[1, :6] = [3, 3, 2, 2, 1.5, 1.5]
        ind_w[1, [10, 12, 8]] = [1.5, 0.5, 0.3]
        ind_w[2, [6, 5, 0, 10]] = [6.0, 1.0, 0.5, 0.8]
        size_w = np.array([[3, 2, 1.5, 1], [12, 5, 2, 0.5], [15, 6, 2, 0.3]])
        wt = ind_w[:, self.ent_ind] * size_w[:, self.ent_size]  # (3, n_ent)
        out = np.empty(len(cat), dtype=np.int64)
        order = np.argsort((mi * 3 + cat).astype(np.int32), kind="stable")
        keys = mi[order] * 3 + cat[order]
        bounds = np.flatnonzero(np.diff(keys)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(keys)]])
        first, last = self.ent_first_mi, self.ent_last_mi
        for s, e in zip(starts, ends):
            k = keys[s]
            m, c = k // 3, k % 3
            active = (first <= m) & (last >= m)
            p = wt[c] * active
            if p.sum() <= 0:
                p = active.astype(float)
            out[order[s:e]] = rng.choice(self.n_ent, size=e - s, p=p / p.sum())
        return out

    # ----------------------------------------------------------------------------------------
    def _plant(self, pay, notes, purposes, wd_all, wd_off, wd_cnt, n_e, n_p, persons,
               cm_cell, cm_mi):
        """Append planted payments: large to individuals (1), split (2), December spike (4).

        Kind 3 (payments after the project budget is spent) is marked in ``_finish_payments``.
        """
        rng = self.rng("anomaly")
        C = self.n_cells
        dept_codes = [d[0] for d in DEPARTMENTS]
        dept_names = [d[1] for d in DEPARTMENTS]
        kuan_arr = np.array(self.cell_kuan)
        dk = np.array([f"{self.cell_dept[c]}|{self.cell_kuan[c]}" for c in range(C)])
        udk, dk_idx = np.unique(dk, return_inverse=True)
        new = {k: [] for k in ("cm", "day", "ptype", "pname", "amt", "purpose", "planted", "note")}

        def add(cm_i, day, ptype, pname, amt, purpose, kind, note):
            new["cm"].append(cm_i)
            new["day"].append(day)
            new["ptype"].append(ptype)
            new["pname"].append(pname)
            new["amt"].append(int(amt))
            new["purpose"].append(purpose)
            new["planted"].append(kind)
            notes.append(note)
            new["note"].append(len(notes) - 1)

        def cm_index(c, mi):
            return c * NMR + mi

        def weekday(mi, lo_day=1):
            d = wd_all[wd_off[mi]:wd_off[mi] + wd_cnt[mi]]
            d = d[(d - d.astype("datetime64[M]")).astype(int) + 1 >= lo_day]
            return d[rng.integers(0, len(d))]

        annual = self.cell_cents.reshape(C, NY, 12).sum(axis=2)  # natural, per cell-year
        dk_annual = np.zeros((len(udk), NY))
        np.add.at(dk_annual, dk_idx, annual)
        dk_spendable = np.zeros(len(udk), dtype=bool)  # has 商品和服务 / 资本性 cells
        dk_spendable[dk_idx[np.isin(self.cell_econ, [E_GS, E_CAP])]] = True
        gs_cells = np.flatnonzero((self.cell_econ == E_GS) & (kuan_arr != "23203"))
        ind_cells = np.flatnonzero(self.cell_econ == E_IND)
        for j, y in enumerate(YEARS):
            last_m = 11 if y < LAST_YEAR else LAST_MONTH
            taken: set[int] = set()
            # --- December spike (full years only)
            if y < LAST_YEAR:
                cand = np.flatnonzero((dk_annual[:, j] > 200 * 1e6) & (dk_annual[:, j] < 1500 * 1e6))
                cand = [g for g in cand if not udk[g].endswith("|23203") and dk_spendable[g]]
                nspike = 1 + int(rng.random() < 0.4)
                for g in rng.choice(cand, size=min(nspike, len(cand)), replace=False):
                    taken.add(int(g))
                    cells = np.flatnonzero((dk_idx == g) & np.isin(self.cell_econ, [E_GS, E_CAP]))
                    c = int(cells[0])
                    mi = j * 12 + 11
                    total = dk_annual[g, j] * rng.uniform(1.3, 1.8)
                    k = int(rng.integers(6, 11))
                    parts = _fit_total(np.exp(rng.normal(0, 0.5, k)), np.zeros(k, np.int64),
                                       np.array([int(total)]))
                    cat = 2 if self.cell_econ[c] == E_CAP else 0
                    payees = self._pick_enterprises(rng, np.full(k, cat), np.full(k, mi))
                    opts = ["设备购置", "办公家具购置", "宣传品制作", "信息化设备采购", "绿化苗木采购"]
                    pu = purposes.add(opts[int(rng.integers(0, len(opts)))])
                    d, kn = int(self.cell_dept[c]), KUAN_NAME[self.cell_kuan[c]]
                    note = (f"年底突击支出：{dept_names[d]}（{dept_codes[d]}）{kn}（{self.cell_kuan[c]}）"
                            f"{y}年12月下旬集中支付{k}笔，合计{total / 100:,.2f}元，"
                            f"约为该单位该款当年常规支出的{total / dk_annual[g, j]:.1f}倍")
                    for a, pn in zip(parts, payees):
                        add(cm_index(c, mi), weekday(mi, 20), 0, int(pn), a, pu, 4, note)
            # --- split payments just under the 50,000 元 threshold
            for _ in range(3):
                for _try in range(50):
                    c = int(rng.choice(gs_cells))
                    if int(dk_idx[c]) not in taken and annual[c, j] > 300 * 1e6:
                        break
                mi = j * 12 + int(rng.integers(0, last_m))
                day = weekday(mi)
                payee = int(self._pick_enterprises(rng, np.zeros(1, np.int64), np.array([mi]))[0])
                k = int(rng.integers(3, 6))
                amts = rng.integers(4_800_000, 4_999_000, k)
                pu = purposes.add(["办公设备采购", "维修服务费", "宣传服务费", "软件服务费"][int(rng.integers(0, 4))])
                d = int(self.cell_dept[c])
                note = (f"拆分支付：{dept_names[d]}（{dept_codes[d]}）于{day}向{self.ent_names[payee]}"
                        f"连续支付{k}笔，单笔均略低于{SPLIT_THRESHOLD_YUAN:,}元审批限额，"
                        f"合计{amts.sum() / 100:,.2f}元")
                for a in amts:
                    add(cm_index(c, mi), day, 0, payee, a, pu, 2, note)
            # --- very large payments to individuals
            for _ in range(int(rng.integers(4, 7))):
                pool = ind_cells if rng.random() < 0.6 else gs_cells
                for _try in range(50):
                    c = int(rng.choice(pool))
                    if int(dk_idx[c]) not in taken and annual[c, j] > 300 * 1e6:
                        break
                mi = j * 12 + int(rng.integers(0, last_m))
                day = weekday(mi)
                a = int(rng.integers(150_000_00, 1_200_000_00))
                who = int(rng.integers(0, n_p))
                opts = ["专家咨询费", "人才奖励金", "劳务报酬", "征迁补偿款", "课题研究经费"]
                pu = purposes.add(opts[int(rng.integers(0, len(opts)))])
                d = int(self.cell_dept[c])
                note = (f"大额个人支付：{dept_names[d]}（{dept_codes[d]}）于{day}向个人{persons[who]}"
                        f"支付{a / 100:,.2f}元，远超个人支付常规额度（{INDIVIDUAL_CAP_YUAN:,}元以内）")
                add(cm_index(c, mi), day, 1, n_e + who, a, pu, 1, note)

        m = len(new["cm"])
        cm_new = np.array(new["cm"], dtype=np.int64)
        ptype_new = np.array(new["ptype"], dtype=np.int8)
        pname_new = np.array(new["pname"], dtype=np.int64)
        out = {
            "cm": np.concatenate([pay["cm"], cm_new]),
            "cell": np.concatenate([pay["cell"], cm_cell[cm_new]]),
            "mi": np.concatenate([pay["mi"], cm_mi[cm_new]]),
            "day": np.concatenate([pay["day"], np.array(new["day"], dtype="datetime64[D]")]),
            "ptype": np.concatenate([pay["ptype"], ptype_new]),
            "pname": np.concatenate([pay["pname"], pname_new]),
            "ent": np.concatenate([pay["ent"], np.where(ptype_new == 0, pname_new, -1)]),
            "amt": np.concatenate([pay["amt"], np.array(new["amt"], dtype=np.int64)]),
            "proj": np.concatenate([pay["proj"], np.full(m, -1, dtype=np.int64)]),
            "purpose": np.concatenate([pay["purpose"], np.array(new["purpose"], dtype=np.int64)]),
            "planted": np.concatenate([pay["planted"], np.array(new["planted"], dtype=np.int8)]),
            "note": np.concatenate([pay["note"], np.array(new["note"], dtype=np.int64)]),
        }
        # natural payments must not look like a split: bump them out of the band
        dept = self.cell_dept[out["cell"]]
        for _ in range(5):
            band = (out["amt"] >= 4_500_000) & (out["amt"] < 5_000_000)
            idx = np.flatnonzero(band)
            key = (dept[idx].astype(np.int64) * 10**7 + out["pname"][idx]) * 10**5 + \
                out["day"][idx].astype(np.int64) % 10**5
            uk, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
            bad = idx[(cnt[inv] >= 3) & (out["planted"][idx] == 0)]
            if len(bad) == 0:
                break
            out["amt"][bad] = (out["amt"][bad] * 1.15).astype(np.int64)
        return out

    # ----------------------------------------------------------------------------------------
    def _finish_payments(self, pay, notes, purposes, all_names, n_e, cm_cell, cm_mi):
        rng = self.rng("budget")
        nP = len(pay["cm"])
        order = np.argsort(pay["day"].astype(np.int64) * self.n_cells + pay["cell"],
                           kind="stable")
        for k in pay:
            pay[k] = pay[k][order]
        year = pay["mi"] // 12 + FIRST_YEAR
        # sequence within year (arrays are sorted by day)
        starts = np.searchsorted(year, np.arange(FIRST_YEAR, LAST_YEAR + 1))
        seq = np.arange(nP) - starts[year - FIRST_YEAR] + 1

        # ---- project budgets and "payments after the budget is spent"
        proj, amt = pay["proj"], pay["amt"]
        has = np.flatnonzero(proj >= 0)
        key = proj[has] * NY + (year[has] - FIRST_YEAR)
        o = np.argsort(key, kind="stable")  # by project-year, then payment order (day, seq)
        hk = key[o]
        hidx = has[o]
        bounds = np.flatnonzero(np.diff(hk)) + 1
        gstart = np.concatenate([[0], bounds])
        gend = np.concatenate([bounds, [len(hk)]])
        gkey = hk[gstart]
        spent = np.add.reduceat(amt[hidx], gstart) if len(hidx) else np.zeros(0, np.int64)
        gyear = gkey % NY + FIRST_YEAR
        rate = np.where(gyear < LAST_YEAR, rng.uniform(0.78, 0.99, len(gkey)),
                        rng.uniform(0.55, 0.85, len(gkey)))
        budget = np.ceil(spent / rate / 10000.0) * 10000  # cents, multiple of 100 元
        over = np.zeros(len(gkey), dtype=bool)
        n_in = gend - gstart
        for j, y in enumerate(YEARS):
            cand = np.flatnonzero((gyear == y) & (n_in >= 3))
            k = 3 if y < LAST_YEAR else 2
            for g in rng.permutation(cand):
                if k == 0:
                    break
                members = hidx[gstart[g]:gend[g]]
                a = amt[members]
                cum = np.cumsum(a)
                lo = max(1, len(a) - 4)
                ok = [i for i in range(lo, len(a)) if a[i] >= 200_000]
                if not ok:
                    continue
                i = ok[int(rng.integers(0, len(ok)))]
                before = cum[i - 1]
                b = np.round((before + 0.5 * a[i]) / 10000.0) * 10000
                if not (before + 100 <= b <= before + a[i] - 100):
                    continue
                budget[g] = b
                over[g] = True
                p = self.proj[gkey[g] // NY]
                note = (f"超预算支付：项目{p[0]}「{p[1]}」{y}年预算{b / 1e6:,.2f}万元，"
                        f"截至该笔累计支付{cum[i] / 1e6:,.2f}万元，该笔及其后{len(a) - i}笔在预算用尽后支付")
                notes.append(note)
                pay["planted"][members[i:]] = 3
                pay["note"][members[i:]] = len(notes) - 1
                k -= 1

        # ---- write fact_payment
        P = self.n_proj
        dept_codes = [d[0] for d in DEPARTMENTS]
        cell = pay["cell"]
        kuan_codes = sorted(set(self.cell_kuan))
        kuan_idx = np.array([kuan_codes.index(k) for k in self.cell_kuan])
        df = pd.DataFrame({
            "year": year.astype(np.int32),
            "seq": seq.astype(np.int32),
            "pay_date": pay["day"],
            "dept_code": _cat(self.cell_dept[cell], dept_codes),
            "project_id": _cat(pay["proj"], [p[0] for p in self.proj]),
            "subject_code": _cat(kuan_idx[cell], kuan_codes),
            "economic_class": _cat(self.cell_econ[cell], ECON),
            "payee_name": _cat(pay["pname"], all_names),
            "payee_type": _cat(pay["ptype"], ["企业", "个人", "单位"]),
            "amount_yuan": pay["amt"] / 100.0,
            "purpose": _cat(pay["purpose"], purposes.texts),
            "payee_enterprise_id": pd.arrays.IntegerArray(
                np.where(pay["ent"] >= 0, pay["ent"] + 1, 0).astype(np.int32), pay["ent"] < 0),
        })
        self._load(
            "fact_payment",
            "payment_id VARCHAR, pay_date DATE, dept_code VARCHAR, project_id VARCHAR, "
            "subject_code VARCHAR, economic_class VARCHAR, payee_name VARCHAR, payee_type VARCHAR, "
            "amount_yuan DOUBLE, purpose VARCHAR, payee_enterprise_id INTEGER",
            df,
            "'ZF' || year::VARCHAR || lpad(seq::VARCHAR, 7, '0'), pay_date::DATE, "
            "dept_code::VARCHAR, project_id::VARCHAR, subject_code::VARCHAR, "
            "economic_class::VARCHAR, payee_name::VARCHAR, payee_type::VARCHAR, amount_yuan, "
            "purpose::VARCHAR, payee_enterprise_id")
        del df
        pl = np.flatnonzero(pay["planted"] > 0)
        self.anomalies = [
            {"payment_id": f"ZF{year[i]}{seq[i]:07d}", "kind": ANOMALY_KINDS[pay["planted"][i] - 1],
             "note": notes[pay["note"][i]]}
            for i in pl
        ]
        adf = pd.DataFrame(self.anomalies, columns=["payment_id", "kind", "note"], dtype=object)
        self._load("meta_planted_anomalies", "payment_id VARCHAR, kind VARCHAR, note VARCHAR", adf)

        # ---- fact_budget_expenditure = payments per cell-month (0.01 万元)
        tot = np.bincount(pay["cm"], weights=pay["amt"], minlength=len(cm_cell))
        wan = np.rint(tot / 1e4) / 100.0
        keep = np.flatnonzero(tot > 0)
        c, mi = cm_cell[keep], cm_mi[keep]
        o = np.lexsort((self.cell_econ[c], kuan_idx[c], self.cell_dept[c], mi))
        keep, c, mi = keep[o], c[o], mi[o]
        df = pd.DataFrame({
            "year": (mi // 12 + FIRST_YEAR).astype(np.int32),
            "month": (mi % 12 + 1).astype(np.int32),
            "dept_code": _cat(self.cell_dept[c], dept_codes),
            "subject_code": _cat(kuan_idx[c], kuan_codes),
            "economic_class": _cat(self.cell_econ[c], ECON),
            "amount_wan": wan[keep],
        })
        self._load("fact_budget_expenditure",
                   "year INTEGER, month INTEGER, dept_code VARCHAR, subject_code VARCHAR, "
                   "economic_class VARCHAR, amount_wan DOUBLE", df,
                   "year, month, dept_code::VARCHAR, subject_code::VARCHAR, "
                   "economic_class::VARCHAR, amount_wan")

        # ---- projects and their performance
        spent_all = np.add.reduceat(amt[hidx], gstart) if len(hidx) else np.zeros(0)
        gp = gkey // NY
        budget_w = budget / 1e6
        spent_w = np.rint(spent_all / 1e4) / 100.0
        exec_rate = spent_all / np.maximum(budget, 1)
        score = 52 + 40 * np.minimum(exec_rate, 1) ** 1.5 + rng.normal(0, 4, len(gkey))
        score = np.where(over, score - 18, score)
        score = np.round(np.clip(score, 35, 99.5), 1)
        grade = np.where(score >= 90, 0, np.where(score >= 80, 1, np.where(score >= 60, 2, 3)))
        assessed = gyear < LAST_YEAR
        df = pd.DataFrame({
            "project_id": _cat(gp, [p[0] for p in self.proj]),
            "year": gyear.astype(np.int32),
            "budget_wan": np.round(budget_w, 2),
            "spent_wan": spent_w,
            "self_score": np.where(assessed, score, np.nan),
            "grade": _cat(np.where(assessed, grade, -1), ["优", "良", "中", "差"]),
        })
        self._load("fact_project_performance",
                   "project_id VARCHAR, year INTEGER, budget_wan DOUBLE, spent_wan DOUBLE, "
                   "self_score DOUBLE, grade VARCHAR", df,
                   "project_id::VARCHAR, year, budget_wan, spent_wan, self_score, grade::VARCHAR")
        tb = np.zeros(P)
        np.add.at(tb, gp, budget_w)
        extra = self.rng("project_total").uniform(1.0, 1.12, P)
        pre = np.array([max(0, FIRST_YEAR - p[5]) for p in self.proj])
        nyrs = np.array([len(p[6]) for p in self.proj])
        avg = tb / np.maximum(np.bincount(gp, minlength=P), 1)
        # projects without payments in the data: a budget like others of their cell
        typical = {}
        for i in range(P):
            if tb[i] > 0:
                typical.setdefault(self.proj[i][7], []).append(avg[i])
        for i in np.flatnonzero(tb == 0):
            vals = typical.get(self.proj[i][7]) or [50.0]
            avg[i] = float(np.median(vals)) * extra[i]
            tb[i] = avg[i] * nyrs[i]
        total = np.round(np.maximum(tb * extra + pre * avg, 10.0), 2)
        df = pd.DataFrame({
            "project_id": pd.Series([p[0] for p in self.proj], dtype=object),
            "project_name": pd.Series([p[1] for p in self.proj], dtype=object),
            "dept_code": _cat([p[2] for p in self.proj], dept_codes),
            "subject_code": pd.Series([p[3] for p in self.proj], dtype=object),
            "project_type": pd.Series([p[4] for p in self.proj], dtype=object),
            "start_year": np.array([p[5] for p in self.proj], dtype=np.int32),
            "total_budget_wan": total,
        })
        self._load("dim_project",
                   "project_id VARCHAR PRIMARY KEY, project_name VARCHAR, dept_code VARCHAR, "
                   "subject_code VARCHAR, project_type VARCHAR, start_year INTEGER, "
                   "total_budget_wan DOUBLE", df,
                   "project_id, project_name, dept_code::VARCHAR, subject_code, project_type, "
                   "start_year, total_budget_wan")

    # ----------------------------------------------------------------------------------------
    def plans(self):
        rng = self.rng("plan")
        rows = []
        # revenue: per leaf subject, dept_code NULL
        codes = ([t[0] for t in TAX_SUBJECTS] + [t[0] for t in NONTAX_SUBJECTS]
                 + [t[0] for t in FUND_SUBJECTS])
        btype = ["一般公共预算"] * (len(codes) - 2) + ["政府性基金预算"] * 2
        actual = self.revenue_full.sum(axis=1) / 100.0  # (NY, subjects) 万元, full years
        for j, y in enumerate(YEARS):
            a = actual[j]
            if y in ADJUSTED_YEARS:
                init = a * rng.uniform(1.05, 1.14, len(a))
                adj = a * rng.uniform(0.975, 1.025, len(a))
            else:
                init = a * rng.uniform(0.95, 1.05, len(a))
                adj = None
            for s, code in enumerate(codes):
                if a[s] <= 0:
                    continue
                rows.append((y, btype[s], "收入", code, None, "年初预算", float(max(1, round(init[s])))))
                if adj is not None:
                    rows.append((y, btype[s], "收入", code, None, "调整预算",
                                 float(max(1, round(adj[s])))))
        # expenditure: per dept and 款 (natural amounts, full years)
        C = self.n_cells
        annual = self.cell_cents.reshape(C, NY, 12).sum(axis=2) / 1e6
        keys = sorted({(int(self.cell_dept[c]), self.cell_kuan[c]) for c in range(C)})
        kidx = {k: i for i, k in enumerate(keys)}
        A = np.zeros((len(keys), NY))
        for c in range(C):
            A[kidx[(int(self.cell_dept[c]), self.cell_kuan[c])]] += annual[c]
        for j, y in enumerate(YEARS):
            a = A[:, j]
            if y in ADJUSTED_YEARS:
                init = a / rng.uniform(0.90, 1.12, len(a))
                adj = a / np.clip(rng.normal(0.965, 0.025, len(a)), 0.9, 1.02)
            else:
                init = a / np.clip(rng.normal(0.95, 0.04, len(a)), 0.86, 1.04)
                adj = None
            for i, (d, kuan) in enumerate(keys):
                rows.append((y, "一般公共预算", "支出", kuan, DEPARTMENTS[d][0], "年初预算",
                             float(max(1, round(init[i])))))
                if adj is not None:
                    rows.append((y, "一般公共预算", "支出", kuan, DEPARTMENTS[d][0], "调整预算",
                                 float(max(1, round(adj[i])))))
        df = pd.DataFrame(rows, columns=["year", "budget_type", "direction", "subject_code",
                                         "dept_code", "plan_type", "amount_wan"])
        df = df.astype({c: object for c in ["budget_type", "direction", "subject_code",
                                            "dept_code", "plan_type"]})
        df["year"] = df["year"].astype(np.int32)
        self._load("fact_budget_plan",
                   "year INTEGER, budget_type VARCHAR, direction VARCHAR, subject_code VARCHAR, "
                   "dept_code VARCHAR, plan_type VARCHAR, amount_wan DOUBLE", df)
        self.con.execute("""
            CREATE VIEW v_budget_plan_effective AS
            SELECT year, budget_type, direction, subject_code, dept_code, amount_wan
            FROM fact_budget_plan
            QUALIFY row_number() OVER (
                PARTITION BY year, budget_type, direction, subject_code, dept_code
                ORDER BY CASE plan_type WHEN '调整预算' THEN 0 ELSE 1 END) = 1
        """)

    # ----------------------------------------------------------------------------------------
    def gdp_and_legal(self):
        rng = self.rng("gdp")
        rows = []
        for y in YEARS:
            nq = 4 if y < LAST_YEAR else 3
            share = [0.195, 0.447, 0.712, 1.0] if y == 2020 else [0.218, 0.465, 0.718, 1.0]
            t = y - FIRST_YEAR
            for q in range(1, nq + 1):
                if q == 4:
                    total = GDP_TOTAL[y]
                else:
                    total = round(GDP_TOTAL[y] * share[q - 1] * (1 + rng.normal(0, 0.004)), 1)
                tc = int(round(total * 100))
                p1 = (0.0075 - 0.0003 * t) * (1.4 if q == 1 else 1.0)
                p2 = 0.60 - 0.006 * t + rng.normal(0, 0.004)
                c1 = int(round(tc * p1))
                c2 = int(round(tc * p2))
                c3 = tc - c1 - c2
                g = GDP_GROWTH[y][q - 1]
                g1 = round(3.2 + rng.uniform(-1.0, 1.2) - (5.0 if (y, q) == (2020, 1) else 0), 1)
                g2 = round(g + rng.uniform(0.2, 1.2) * (1 if g >= 0 else -1.3), 1)
                g3 = round(g - rng.uniform(0.1, 1.0), 1)
                rows += [(y, q, "合计", tc / 100, g), (y, q, "第一产业", c1 / 100, g1),
                         (y, q, "第二产业", c2 / 100, g2), (y, q, "第三产业", c3 / 100, g3)]
        df = pd.DataFrame(rows, columns=["year", "quarter", "sector", "value_yi_ytd",
                                         "growth_pct_ytd"])
        df = df.astype({"year": np.int32, "quarter": np.int32, "sector": object})
        self._load("fact_gdp",
                   "year INTEGER, quarter INTEGER, sector VARCHAR, value_yi_ytd DOUBLE, "
                   "growth_pct_ytd DOUBLE", df)

        rng = self.rng("legal")
        mw = np.array([1.4, 0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.6])
        iw = np.array([1.5, 1.3, 1.0, 1.0, 0.6, 1.2, 1.4, 0.8, 2.5, 0.8, 1.2, 0.3, 1.5, 0.2])
        ys, ms, inds, cnts = [], [], [], []
        for y in YEARS:
            nm = 12 if y < LAST_YEAR else LAST_MONTH
            p = (mw[:nm, None] * iw[None, :]).reshape(-1)
            c = rng.multinomial(LEGAL_ENTITY_NEW[y], p / p.sum())
            mm, ii = np.meshgrid(np.arange(nm), np.arange(NIND), indexing="ij")
            ys.append(np.full(nm * NIND, y))
            ms.append(mm.reshape(-1) + 1)
            inds.append(ii.reshape(-1))
            cnts.append(c)
        df = pd.DataFrame({
            "year": np.concatenate(ys).astype(np.int32),
            "month": np.concatenate(ms).astype(np.int32),
            "industry_code": _cat(np.concatenate(inds), [r[0] for r in INDUSTRIES]),
            "new_count": np.concatenate(cnts).astype(np.int32),
        })
        self._load("fact_legal_entity",
                   "year INTEGER, month INTEGER, industry_code VARCHAR, new_count INTEGER", df,
                   "year, month, industry_code::VARCHAR, new_count")


# ============================================================================================
# helpers: names, codes
# ============================================================================================
class _PurposeBook:
    def __init__(self):
        self.texts: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, text: str) -> int:
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.texts)
            self.texts.append(text)
        return i


def _date_mi(d):
    d = np.asarray(d, dtype="datetime64[D]")
    m = d.astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    return m - ((FIRST_YEAR - 1970) * 12)


def _nice_amounts(x):
    """Round registered capital to the kind of numbers people register (50, 100, 500, 1000 …)."""
    mag = 10 ** np.floor(np.log10(np.maximum(x, 1)))
    steps = np.array([1, 1.5, 2, 3, 5, 8, 10])
    r = x / mag
    k = np.abs(r[:, None] - steps[None, :]).argmin(axis=1)
    return np.maximum(steps[k] * mag, 10.0)


_STEM_A = "赣恒瑞鑫博创精联泰盛达远昌鸿凯德嘉晟润宏金汇华天海宇众铭卓尚诺亿腾丰航弘科同星锦蓝"
_STEM_B = "锐通达创源邦信诚拓航宇辉峰睿弘驰景越凌泽康安盛和丰力祥茂迪美欣途诺晖阳"
_STEM_BLACKLIST = {
    "泰豪", "联创", "华勤", "江中", "汇仁", "洪都", "华为", "方大", "恒大", "华润", "天虹", "华联",
    "联达", "华泰", "金达", "华达", "昌河", "同方", "海尔", "美的", "格力", "宏达", "汇源", "晶科",
    "恒安", "达安", "博创", "天康", "华和", "嘉和", "德力", "海信", "星辉", "科达", "华安", "天安",
    "宇通", "金和", "天和", "恒力", "华宇", "远达", "恒瑞", "鸿达", "宏源", "海康", "华美", "康美",
}
_IND_WORDS = [
    ["电子", "光电", "微电子", "智能科技", "信息技术", "半导体", "通信技术", "精密电子"],
    ["汽车零部件", "汽车部件", "新能源汽车科技", "动力科技", "汽车电子", "车桥", "汽配"],
    ["药业", "生物医药", "食品", "生物科技", "制药", "医疗器械", "饮品"],
    ["新材料", "高分子材料", "复合材料", "新型建材", "金属材料", "化工新材料"],
    ["电器", "家电", "厨电", "智能家居", "电机"],
    ["机械", "装备", "智能装备", "自动化设备", "精工", "机电"],
    ["建设工程", "建筑工程", "市政工程", "路桥工程", "建筑安装工程", "装饰工程"],
    ["置业", "房地产开发", "物业服务", "地产"],
    ["商贸", "贸易", "供应链", "医药连锁", "百货", "商业管理"],
    ["物流", "运输", "仓储", "供应链管理", "快运"],
    ["软件", "信息科技", "数据科技", "网络科技", "数字科技", "智能技术"],
    ["融资担保", "小额贷款", "融资租赁", "投资管理"],
    ["企业管理咨询", "人力资源服务", "检测技术", "会展服务", "广告传媒", "环保科技", "教育科技",
     "餐饮管理"],
    ["农业开发", "生态农业", "园林绿化", "苗木", "养殖"],
]


def _enterprise_names(rng, ind, size):
    """Unique invented names: region + two-character stem + industry word + company form."""
    n = len(ind)
    names: list[str | None] = [None] * n
    seen: set[str] = set()
    A, B = _STEM_A, _STEM_B
    todo = np.arange(n)
    while len(todo):
        k = len(todo)
        a = rng.integers(0, len(A), k)
        b = rng.integers(0, len(B), k)
        uw, us, ub, up = rng.random(k), rng.random(k), rng.random(k), rng.random(k)
        retry = []
        for t, i in enumerate(todo.tolist()):
            stem = A[a[t]] + B[b[t]]
            if A[a[t]] == B[b[t]] or stem in _STEM_BLACKLIST:
                retry.append(i)
                continue
            words = _IND_WORDS[ind[i]]
            word = words[int(uw[t] * len(words))]
            if size[i] <= 1 and ub[t] < 0.35:
                suffix = "股份有限公司"
            else:
                suffix = "有限公司" if us[t] < 0.9 else "有限责任公司"
            if up[t] < 0.45:
                name = f"江西{stem}{word}{suffix}"
            elif up[t] < 0.9:
                name = f"南昌{stem}{word}{suffix}"
            else:
                name = f"{stem}{word}（南昌）{suffix}"
            if name in seen:
                retry.append(i)
                continue
            seen.add(name)
            names[i] = name
        todo = np.array(retry, dtype=np.int64)
    return names


_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_W = np.array([pow(3, i, 31) for i in range(17)])
_ORG_W = np.array([3, 7, 9, 10, 5, 8, 4, 2])
_ORG_VAL = np.array([int(c) if c.isdigit() else ord(c) - 55 for c in _USCC_CHARS])


def _credit_codes(rng, est):
    """Valid 18-char 统一社会信用代码 (GB 32100 / GB 11714 check characters), '91360100…'.

    Enterprises registered since 2016 get the 'MA…' organisation codes of the new system.
    """
    years = est.astype("datetime64[Y]").astype(int) + 1970
    n = len(est)
    chars = np.array(list(_USCC_CHARS))
    prefix = np.array([_USCC_CHARS.index(c) for c in "91360100"])
    out = np.empty((n, 18), dtype=np.int64)
    todo = np.arange(n)
    seen: set[str] = set()
    codes: list[str | None] = [None] * n
    while len(todo):
        k = len(todo)
        old = rng.integers(0, 10, (k, 8))
        old[:, 0] = rng.integers(1, 8, k)
        new = rng.integers(0, len(_USCC_CHARS), (k, 8))
        new[:, 0] = _USCC_CHARS.index("M")
        new[:, 1] = _USCC_CHARS.index("A")
        body = np.where((years[todo] >= 2016)[:, None], new, old)
        c9 = 11 - (_ORG_VAL[body] * _ORG_W).sum(axis=1) % 11
        c9_idx = np.where(c9 == 10, _USCC_CHARS.index("X"), np.where(c9 == 11, 0, c9))
        full = np.concatenate([np.broadcast_to(prefix, (k, 8)), body, c9_idx[:, None]], axis=1)
        c18 = (31 - (full * _USCC_W).sum(axis=1) % 31) % 31
        out[todo] = np.concatenate([full, c18[:, None]], axis=1)
        retry = []
        for i in todo.tolist():
            code = "".join(chars[out[i]])
            if code in seen:
                retry.append(i)
            else:
                seen.add(code)
                codes[i] = code
        todo = np.array(retry, dtype=np.int64)
    return codes


_SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
             "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵"
             "万钱严覃武戴莫孔向汤")
_GIVEN = ("建明华伟芳丽军强敏静磊洋艳勇杰娟涛超霞平刚桂英文辉玲红兰婷鹏飞斌宇浩凯秀梅琴云海林晨欣怡佳"
          "志国春金德荣俊雪思宏立新福生龙峰波亮莉燕萍慧颖倩琳丹鑫雨嘉晓振永庆梓睿子涵轩博诗雅瑞泽铭")


def _person_names(rng, n):
    """Invented full names ('张建明'); stored in full, masked by the product."""
    sw = 1.0 / np.arange(1, len(_SURNAMES) + 1) ** 0.7
    sw /= sw.sum()
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        k = 2 * (n - len(out))
        sur = rng.choice(len(_SURNAMES), size=k, p=sw)
        one = rng.random(k) < 0.25
        g1 = rng.integers(0, len(_GIVEN), k)
        g2 = rng.integers(0, len(_GIVEN), k)
        for t in range(k):
            if not one[t] and g1[t] == g2[t]:
                continue
            name = _SURNAMES[sur[t]] + _GIVEN[g1[t]] + ("" if one[t] else _GIVEN[g2[t]])
            if name not in seen:
                seen.add(name)
                out.append(name)
                if len(out) == n:
                    break
    return out


_AREAS = ["经开区", "白水湖片区", "桑海片区", "蛟桥片区", "乐化片区", "枫林片区", "双港片区", "儒乐湖片区"]
_ROADS = ["枫林大街", "秀先路", "双港路", "白水湖大道", "桑海大道", "蛟桥路", "明湖路", "青岚大道",
          "丰和北大道", "麦园路", "榴云路", "瑶湖西路"]
_PROJECT_NAMES = {
    ("资", "21203"): ["{a}智慧路灯改造工程", "{a}雨污分流改造", "{a}排水管网改造工程", "{a}口袋公园建设",
                      "{a}海绵城市改造工程", "{a}老旧小区改造", "{a}公共停车场建设", "{a}人行天桥建设",
                      "{a}地下综合管廊建设", "{a}绿道建设工程"],
    ("资", "21401"): ["{r}道路提升改造工程", "{r}拓宽改造工程", "{r}新建工程", "{r}桥梁维修加固",
                      "{r}沥青罩面工程"],
    ("资", "21303"): ["乌沙河河道综合整治", "{a}排涝泵站改造", "白水湖防洪堤加固", "{a}水系连通工程"],
    ("资", "22101"): ["{a}人才公寓建设", "{a}公租房维修改造", "{a}安置房建设"],
    ("资", "20502"): ["{a}第二小学改扩建", "{a}中学新建工程", "{a}幼儿园新建", "{a}学校运动场改造"],
    ("资", "21205"): ["{a}垃圾转运站改造", "环卫作业车辆购置", "{a}公厕提升改造"],
    ("资", "22402"): ["{a}消防站建设", "微型消防站设备购置"],
    ("资", "20402"): ["天网工程升级改造", "智慧警务平台建设", "{a}治安卡口建设"],
    ("资", "21103"): ["{a}污水处理厂提标改造", "大气自动监测站建设", "{a}土壤修复治理"],
    ("资", "20703"): ["{a}全民健身中心建设", "{a}社区运动场建设"],
    ("企", "21508"): ["中小企业创新券补助", "专精特新企业培育奖励", "中小企业融资担保补贴", "规上企业首次入统奖励"],
    ("企", "21505"): ["工业企业技术改造专项资金", "智能制造示范项目补助", "数字化转型示范项目补助",
                      "电子信息产业集群发展专项"],
    ("企", "20604"): ["企业研发费用后补助", "高新技术企业认定奖励", "产学研合作项目补助",
                      "科技型中小企业贷款贴息", "新型研发机构建设补助"],
    ("企", "21699"): ["招商引资落户奖励", "重大项目落地奖励", "总部经济发展奖励"],
    ("企", "21602"): ["商贸流通企业发展补助", "电商平台发展补助", "消费券发放补贴"],
    ("企", "21111"): ["企业清洁生产改造补助", "VOCs治理补助"],
    ("企", "20807"): ["企业吸纳就业社保补贴", "以工代训补贴"],
    ("企", "20699"): ["科技成果转化奖励", "新能源汽车产业链扶持资金"],
    ("个", "20819"): ["城乡低保资金", "临时救助资金"],
    ("个", "20810"): ["高龄老人津贴", "困难残疾人生活补贴", "孤儿基本生活保障"],
    ("个", "20808"): ["退役军人优抚资金", "重点优抚对象补助"],
    ("个", "20807"): ["就业创业补贴", "高校毕业生就业见习补贴", "公益性岗位补贴"],
    ("个", "20899"): ["被征地农民社会保障补贴", "城乡居民养老保险补贴"],
    ("个", "20699"): ["人才安居补贴", "高层次人才奖励"],
    ("个", "22101"): ["住房租赁补贴"],
    ("个", "20502"): ["义务教育学生资助", "困难学生生活补助"],
    ("个", "20503"): ["中职学生助学金"],
    ("个", "21301"): ["耕地地力保护补贴"],
    ("商", "21205"): ["道路清扫保洁服务", "垃圾清运服务"],
    ("商", "21201"): ["数字城管平台运维", "城市管理协管服务"],
    ("商", "21299"): ["市政设施日常养护", "园林绿化养护"],
    ("商", "20402"): ["警务辅助人员服务", "执法装备维护"],
    ("商", "21004"): ["基本公共卫生服务项目", "家庭医生签约服务补助"],
    ("商", "20502"): ["学校物业管理服务", "教育信息化运维"],
    ("商", "20503"): ["职业技能培训补助"],
    ("商", "20199"): ["政务服务中心运行维护"],
    ("商", "20138"): ["食品安全抽检", "特种设备检验检测"],
    ("商", "22401"): ["应急物资储备"],
    ("商", "22402"): ["消防救援队伍运行保障"],
    ("商", "20701"): ["文化惠民演出"],
    ("商", "20703"): ["全民健身活动"],
    ("商", "20133"): ["宣传及活动经费"],
    ("商", "20106"): ["预算管理一体化系统运维", "财政投资评审服务"],
    ("商", "20103"): ["档案数字化", "法律顾问服务"],
}
_ECON_LETTER = {E_SAL: "工", E_GS: "商", E_IND: "个", E_ENT: "企", E_CAP: "资"}


def _project_purpose(name: str, suffix: str) -> str:
    """'2021年城乡低保资金' + '资金发放' -> '2021年城乡低保资金发放'."""
    for w in ("资金", "奖励", "补助", "补贴", "贴息", "专项", "津贴", "保障"):
        if name.endswith(w) and suffix.startswith("资金"):
            return name + suffix[2:]
    if suffix.startswith("资金") and name.endswith(("服务", "项目")):
        return name + suffix[2:]
    if suffix == "服务费" and name.endswith("服务"):
        return name + "费"
    return name + suffix


def _project_name(rng, econ, kuan, start_year, duration, used):
    opts = _PROJECT_NAMES.get((_ECON_LETTER[econ], kuan)) or [f"{KUAN_NAME[kuan]}专项"]
    for attempt in range(40):
        tpl = opts[rng.integers(0, len(opts))]
        base = tpl.format(a=_AREAS[rng.integers(0, len(_AREAS))],
                          r=_ROADS[rng.integers(0, len(_ROADS))])
        name = f"{start_year}年{base}" if (duration == 1 and econ != E_CAP) else base
        if name not in used:
            return name
    for k in ("（二期）", "（三期）", "（四期）", "（五期）", "（六期）"):
        if name + k not in used:
            return name + k
    return f"{name}（{start_year}）"


def generate(con: duckdb.DuckDBPyConnection, scale: float = 1.0, seed: int = DEFAULT_SEED,
             progress: Callable[[str], None] | None = None) -> dict:
    """Create and fill every warehouse table except ``pub_region_budget``.

    Returns ``{"seed", "scale", "data_as_of", "generator_version", "row_counts", "anomalies",
    "timings"}`` where ``anomalies`` lists the planted payments (payment_id, kind, note).
    """
    # One DuckDB thread: loading ordered frames is cheaper that way, and the numpy work does not
    # compete with DuckDB's worker threads on a small machine.  The caller's setting is restored.
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")
    try:
        return _Gen(con, scale, seed, progress).run()
    finally:
        con.execute(f"SET threads = {int(threads)}")
