"""Tests for warehouse.yearbook: the loader for the real 中国统计年鉴 tables 7-5 / 7-6.

The expected numbers below were read off raw dumps of the files (xlrd cell by cell after
decryption, and the CSV text), checked by eye, and typed in as literals: they are NOT
recomputed with the loader's code. Each region's list follows the file's own column order,
one sub-list per printed block (主表 / 续表1 / 续表2), None where the cell is empty.
"""
from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import duckdb
import msoffcrypto
import openpyxl
import pytest
import xlrd

from warehouse import yearbook as yb
from warehouse.paths import YEARBOOK_DIR
from warehouse.yearbook import (
    load_yearbook,
    load_yearbook_file,
    read_long_csv,
    read_yearbook_table,
)

RAW = YEARBOOK_DIR / "raw"
CSV_NAME = "PublicBudget_expenditure_2010_2023_long.csv"

REGIONS_IN_FILE_ORDER = [
    "地方合计", "北京", "天津", "河北", "山西", "内蒙古", "辽宁", "吉林", "黑龙江", "上海", "江苏",
    "浙江", "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "广西", "海南", "重庆",
    "四川", "贵州", "云南", "西藏", "陕西", "甘肃", "青海", "宁夏", "新疆",
]

REVENUE_ITEMS = [
    # 7-5 主表
    "地方一般公共预算收入", "税收收入", "国内增值税", "企业所得税", "个人所得税", "资源税",
    "城市维护建设税", "房产税",
    # 续表1
    "印花税", "城镇土地使用税", "土地增值税", "车船税", "耕地占用税", "契税", "烟叶税", "环境保护税",
    # 续表2
    "其他税收收入", "非税收入", "专项收入", "行政事业性收费收入", "罚没收入", "国有资本经营收入",
    "国有资源(资产)有偿使用收入", "其他收入",
]


def _expenditure_items(resource_item: str) -> list[str]:
    return [
        # 7-6 主表
        "地方一般公共预算支出", "一般公共服务支出", "外交支出", "国防支出", "公共安全支出", "教育支出",
        "科学技术支出", "文化旅游体育与传媒支出",
        # 续表1
        "社会保障和就业支出", "卫生健康支出", "节能环保支出", "城乡社区支出", "农林水支出", "交通运输支出",
        resource_item, "商业服务业等支出",
        # 续表2
        "金融支出", "援助其他地区支出", "自然资源海洋气象等支出", "住房保障支出", "粮油物资储备支出",
        "灾害防治及应急管理支出", "债务付息支出", "债务发行费用支出", "其他支出",
    ]


# The 2019 table prints 215 as '资源勘探信息等支出'; 2020-2023 print '资源勘探工业信息等支出'.
EXPENDITURE_ITEMS_2019 = _expenditure_items("资源勘探信息等支出")
EXPENDITURE_ITEMS = _expenditure_items("资源勘探工业信息等支出")

N = None
XLS_EXPECTED = {
    "7-5_public_budget_revenue_by_region_2019.xls": dict(
        year=2019, direction="收入", source="7-5", encrypted=True, items=REVENUE_ITEMS, n_rows=755,
        cells={
            "地方合计": [
                [101080.61, 76980.13, 31186.90, 13517.75, 4154.34, 1768.52, 4614.44, 2988.43],
                [1233.58, 2195.41, 6465.14, 880.95, 1389.84, 6212.86, 111.03, 221.16],
                [39.78, 24100.48, 6849.93, 3483.38, 2929.31, 1061.49, 7344.01, 2432.36],
            ],
            "北京": [
                [5817.10, 4822.98, 1820.90, 1228.53, 544.16, 32.63, 234.98, 354.43],
                [87.71, 20.03, 225.37, 32.92, 3.23, 225.19, N, 9.60],
                [3.29, 994.12, 424.32, 64.86, 76.00, 152.10, 171.41, 105.42],
            ],
            "广东": [
                [12654.53, 10063.95, 3977.07, 2001.21, 656.19, 11.12, 598.98, 356.76],
                [152.10, 120.70, 1402.89, 77.04, 58.34, 640.89, 1.29, 6.57],
                [2.79, 2590.58, 892.51, 292.06, 231.11, 90.03, 731.60, 353.28],
            ],
            "西藏": [
                [221.99, 157.52, 97.23, 17.64, 17.23, 2.52, 13.00, N],
                [3.06, 0.18, 4.13, 1.60, 0.73, N, N, 0.20],
                [N, 64.47, 13.00, 6.66, 5.67, 1.30, 26.73, 11.11],
            ],
        },
    ),
    "7-6_public_budget_expenditure_by_region_2019.xls": dict(
        year=2019, direction="支出", source="7-6", encrypted=True, items=EXPENDITURE_ITEMS_2019, n_rows=770,
        cells={
            "地方合计": [
                [203743.22, 18359.50, 2.11, 225.54, 12062.48, 32961.06, 5954.61, 3777.47],
                [28147.55, 16417.62, 6969.01, 24803.63, 22330.46, 10395.23, 4559.14, 1157.28],
                [671.64, 471.31, 1868.53, 5839.35, 693.06, 1063.55, 3875.91, 20.62, 1116.56],
            ],
            "北京": [
                [7408.19, 499.43, N, 9.74, 540.62, 1137.18, 433.42, 279.32],
                [972.98, 534.41, 308.81, 1074.61, 584.62, 401.59, 163.86, 31.95],
                [16.33, 66.50, 23.30, 96.84, 13.51, 40.47, 68.78, 0.29, 109.64],
            ],
            "广东": [
                [17297.85, 1855.32, 0.07, 11.22, 1426.89, 3210.51, 1168.79, 350.33],
                [1703.48, 1579.60, 747.44, 2413.84, 957.68, 525.23, 182.95, 64.70],
                [55.28, 109.59, 117.54, 424.50, 56.82, 105.73, 189.98, 0.80, 39.55],
            ],
            "西藏": [
                [2187.75, 286.90, 0.19, 1.93, 133.43, 263.26, 7.28, 57.55],
                [155.78, 123.05, 40.91, 117.03, 445.01, 364.56, 59.73, 4.84],
                [1.95, N, 19.84, 61.79, 3.40, 9.17, 3.66, 0.11, 26.36],
            ],
        },
    ),
    # one sheet, numbers stored as numbers, no table number in the title, source note at the bottom
    "7-6_public_budget_expenditure_by_region_2020.xls": dict(
        year=2020, direction="支出", source="7-6", encrypted=False, items=EXPENDITURE_ITEMS, n_rows=767,
        cells={
            "地方合计": [[
                210583.46, 18325.89, 1.37, 238.85, 12026.99, 34686.3, 5801.86, 3995.34, 31448.53,
                18873.41, 5989.14, 19868.66, 23445.14, 11031.95, 5758.03, 1521.76, 638.34, 448.59,
                2071.76, 6499.5, 892.73, 1510.84, 4273.67, 24.84, 1209.97,
            ]],
            "北京": [[
                7116.18, 527.1, N, 8.87, 505.98, 1138.29, 410.96, 225.11, 1055.86, 605.64, 236.9,
                872.94, 497.33, 327.97, 167.15, 37.13, 16.62, 53.26, 30.61, 145.55, 13.12, 48.04,
                73.12, 0.42, 118.2,
            ]],
            "广东": [[
                17430.79, 1889.53, 0.06, 16.81, 1428.11, 3510.56, 955.73, 417.22, 1807.2, 1772.99,
                517.76, 1574.89, 1125.81, 652.43, 413.58, 100.45, 28.89, 83.12, 178.71, 543.33,
                59.46, 123.92, 198.76, 1.03, 30.47,
            ]],
            "西藏": [[
                2210.92, 294.6, 0.28, 2.11, 132.07, 273.89, 8.99, 59.43, 184.74, 144.37, 48.93,
                125.28, 415.44, 304.56, 68.81, 3.31, 10.92, N, 25.51, 55.5, 4.04, 21.58, 7.19, 0.1,
                19.26,
            ]],
        },
    ),
    # header split over two rows ('公    共' / '安全支出'), spacer rows, '' for empty, 4 decimals
    "7-6_public_budget_expenditure_by_region_2021.xls": dict(
        year=2021, direction="支出", source="7-6", encrypted=False, items=EXPENDITURE_ITEMS, n_rows=766,
        cells={
            "地方合计": [[
                210623.04, 18307.54, 1.7, 229.65, 11891.1, 35778.5, 6464.24, 3774.1, 32900.97,
                18919.17, 5251.36, 19366.72, 21535.59, 10599.04, 6273.05, 1536.36, 942.57, 467.81,
                2001.36, 6463.02, 660.66, 1583.8, 4579.56, 24.38, 1070.79,
            ]],
            "北京": [[
                7205.1201, 532.6544, N, 8.251, 497.1545, 1147.8293, 449.4463, 220.0596, 1054.1868,
                632.6655, 249.2374, 860.0049, 497.866, 362.6975, 149.2437, 30.8579, 24.3586, 55.494,
                31.7447, 152.5847, 11.9085, 52.896, 77.9125, 0.3989, 105.6674,
            ]],
            "广东": [[
                18247.0084, 1828.8943, N, 17.9406, 1407.3105, 3796.6864, 982.7638, 395.5915,
                2131.8914, 1857.0959, 493.5502, 1556.6417, 1109.4706, 728.2239, 472.7582, 135.8486,
                23.4672, 114.4091, 172.7445, 568.9655, 57.9956, 146.4826, 202.8038, 1.4818, 43.9907,
            ]],
            "西藏": [[
                2027.012, 283.7155, 0.1488, 1.8699, 124.7561, 259.1334, 8.3436, 46.5608, 194.021,
                115.2575, 27.4494, 106.8229, 340.5423, 323.9154, 61.2689, 4.5551, 20.2237, N,
                15.7985, 44.3594, 1.9813, 15.2032, 9.3564, 0.1096, 21.6193,
            ]],
        },
    ),
    "7-6_public_budget_expenditure_by_region_2022.xls": dict(
        year=2022, direction="支出", source="7-6", encrypted=True, items=EXPENDITURE_ITEMS, n_rows=769,
        cells={
            "地方合计": [
                [224981.29, 19300.87, 1.60, 252.59, 12455.56, 37923.33, 6816.50, 3740.00],
                [35775.94, 22316.16, 5235.84, 19422.00, 22250.21, 11409.38, 7058.40, 1797.76],
                [1039.82, 417.92, 2193.80, 6881.29, 722.94, 1821.76, 4828.66, 21.11, 1297.85],
            ],
            "北京": [
                [7469.15, 589.25, N, 8.20, 518.42, 1171.12, 488.70, 204.95],
                [1067.80, 775.82, 222.90, 808.60, 462.79, 395.25, 197.39, 31.95],
                [20.67, 53.85, 36.78, 152.13, 19.44, 57.01, 82.83, 0.22, 103.09],
            ],
            "广东": [
                [18533.08, 1773.74, 0.01, 22.14, 1380.90, 3871.14, 983.78, 350.19],
                [2153.96, 2081.25, 464.89, 1429.03, 1067.57, 759.61, 606.41, 143.28],
                [88.65, 56.17, 182.10, 620.37, 70.33, 155.62, 224.11, 1.04, 46.77],
            ],
            "西藏": [
                [2592.98, 310.63, 0.21, 2.64, 141.52, 316.67, 8.31, 45.01],
                [216.84, 189.88, 39.19, 116.29, 371.87, 445.75, 71.84, 4.08],
                [143.87, N, 16.27, 77.59, 4.18, 18.21, 11.87, 0.10, 40.15],
            ],
        },
    ),
    "7-6_public_budget_expenditure_by_region_2023.xls": dict(
        year=2023, direction="支出", source="7-6", encrypted=True, items=EXPENDITURE_ITEMS, n_rows=766,
        cells={
            "地方合计": [
                [236403.46, 19725.51, 1.77, 268.30, 12624.54, 39677.48, 7514.65, 3792.67],
                [38828.24, 22099.29, 5441.25, 20532.40, 23732.87, 11449.07, 7842.38, 1941.53],
                [1446.12, 437.17, 2359.91, 7592.09, 716.39, 2014.46, 4886.88, 29.80, 1448.69],
            ],
            "北京": [
                [7971.25, 545.81, N, 7.71, 501.66, 1227.90, 521.91, 215.87],
                [1145.82, 704.86, 220.67, 929.61, 515.53, 373.10, 272.53, 26.60],
                [23.63, 58.46, 34.53, 186.01, 10.45, 207.00, 77.86, 0.33, 163.41],
            ],
            "广东": [
                [18527.03, 1718.76, 0.01, 19.53, 1374.67, 4004.45, 980.46, 360.52],
                [2265.67, 2021.59, 444.65, 1367.66, 1076.77, 614.73, 600.85, 158.87],
                [147.65, 59.56, 144.97, 660.69, 73.47, 158.80, 237.41, 1.15, 34.14],
            ],
            "西藏": [
                [2809.02, 344.25, 0.11, 3.54, 154.22, 335.32, 8.71, 52.93],
                [234.18, 188.68, 62.21, 149.00, 414.87, 568.99, 77.12, 8.00],
                [18.85, N, 30.90, 74.78, 6.96, 21.53, 12.64, 0.07, 41.17],
            ],
        },
    ),
}

# Every cell of 全国 (= 地方合计), 北京, 广东, 西藏 in the long CSV, as its text gives them.
CSV_EXPECTED = {
    "全国": {
        "合计": {2019: 203743.22, 2020: 210583.46, 2021: 210623.04, 2022: 224981.29, 2023: 236403.46},
        "教育": {2019: 32961.06, 2020: 34686.3, 2021: 35778.5, 2022: 37923.33, 2023: 39677.48},
        "科学技术": {2019: 5954.61, 2020: 5801.86, 2021: 6464.24, 2022: 6816.5, 2023: 7514.65},
        "农林水": {2019: 22330.46, 2020: 23445.14, 2021: 21535.59, 2022: 22250.21, 2023: 23732.87},
    },
    "北京": {
        "合计": {2010: 2717.3174, 2011: 3245.23, 2012: 3685.3076, 2013: 4173.6563, 2014: 4524.669, 2015: 5737.7, 2016: 6406.77, 2017: 6824.5284, 2018: 7471.43, 2019: 7408.19, 2020: 7116.18, 2021: 7205.12, 2022: 7469.15, 2023: 7971.25},
        "教育": {2010: 450.2155, 2011: 520.08, 2012: 628.651, 2013: 681.1775, 2014: 742.0541, 2015: 855.67, 2016: 887.37, 2017: 964.6184, 2018: 1025.51, 2019: 1137.18, 2020: 1138.29, 2021: 1147.83, 2022: 1171.12, 2023: 1227.9},
        "科学技术": {2010: 178.9154, 2011: 183.07, 2012: 199.9444, 2013: 234.6742, 2014: 282.7117, 2015: 287.8, 2016: 285.78, 2017: 361.7581, 2018: 425.87, 2019: 433.42, 2020: 410.96, 2021: 449.45, 2022: 488.7, 2023: 521.91},
        "农林水": {2010: 158.6398, 2011: 187.34, 2012: 222.6932, 2013: 297.6191, 2014: 343.668, 2015: 424.78, 2016: 443.55, 2017: 518.3464, 2018: 576.04, 2019: 584.62, 2020: 497.33, 2021: 497.87, 2022: 462.79, 2023: 515.53},
    },
    "广东": {
        "合计": {2010: 5421.5432, 2011: 6712.4, 2012: 7387.8565, 2013: 8410.9995, 2014: 9152.6351, 2015: 12827.8, 2016: 13446.09, 2017: 15037.4788, 2018: 15729.26, 2019: 17297.85, 2020: 17430.79, 2021: 18247.01, 2022: 18533.08, 2023: 18527.03},
        "教育": {2010: 921.4848, 2011: 1227.87, 2012: 1501.2157, 2013: 1744.5886, 2014: 1808.9718, 2015: 2040.65, 2016: 2318.47, 2017: 2575.5204, 2018: 2792.9, 2019: 3210.51, 2020: 3510.56, 2021: 3796.69, 2022: 3871.14, 2023: 4004.45},
        "科学技术": {2010: 214.4417, 2011: 203.92, 2012: 246.7101, 2013: 344.9378, 2014: 274.3315, 2015: 569.55, 2016: 742.97, 2017: 823.8935, 2018: 1034.71, 2019: 1168.79, 2020: 955.73, 2021: 982.76, 2022: 983.78, 2023: 980.46},
        "农林水": {2010: 325.0231, 2011: 420.34, 2012: 539.558, 2013: 595.2799, 2014: 557.5889, 2015: 811.9, 2016: 715.44, 2017: 754.4006, 2018: 909.78, 2019: 957.68, 2020: 1125.81, 2021: 1109.47, 2022: 1067.57, 2023: 1076.77},
    },
    "西藏": {
        "合计": {2010: 551.0362, 2011: 758.11, 2012: 905.3384, 2013: 1014.3128, 2014: 1185.5107, 2015: 1381.46, 2016: 1587.98, 2017: 1681.9444, 2018: 1970.68, 2019: 2187.75, 2020: 2210.92, 2021: 2027.01, 2022: 2592.98, 2023: 2809.02},
        "教育": {2010: 60.7959, 2011: 77.81, 2012: 94.4843, 2013: 107.1776, 2014: 142.0833, 2015: 167.27, 2016: 169.64, 2017: 227.197, 2018: 232.15, 2019: 263.26, 2020: 273.89, 2021: 259.13, 2022: 316.67, 2023: 335.32},
        "科学技术": {2010: 2.7112, 2011: 3.38, 2012: 5.0891, 2013: 4.1653, 2014: 4.4214, 2015: 5.41, 2016: 4.81, 2017: 8.4933, 2018: 8.12, 2019: 7.28, 2020: 8.99, 2021: 8.34, 2022: 8.31, 2023: 8.71},
        "农林水": {2010: 89.1065, 2011: 126.53, 2012: 142.6192, 2013: 148.7919, 2014: 169.2421, 2015: 200.27, 2016: 243.28, 2017: 238.0903, 2018: 364.64, 2019: 445.01, 2020: 415.44, 2021: 340.54, 2022: 371.87, 2023: 414.87},
    },
}
CSV_ITEM_NAMES = {"合计": "地方一般公共预算支出", "教育": "教育支出", "科学技术": "科学技术支出", "农林水": "农林水支出"}


# --------------------------------------------------------------------------- fixtures / helpers
@pytest.fixture(scope="module")
def loaded():
    con = duckdb.connect()
    n = load_yearbook(con)
    yield con, n
    con.close()


@pytest.fixture
def fresh():
    con = duckdb.connect()
    load_yearbook(con)
    yield con
    con.close()


def _snapshot(con):
    return (
        con.execute("SELECT * FROM pub_region_budget ORDER BY ALL").fetchall(),
        con.execute("SELECT * FROM pub_region_budget_reconciliation ORDER BY ALL").fetchall(),
    )


def _value(con, year, region, direction, item):
    got = con.execute(
        "SELECT value_yi, source_table FROM pub_region_budget "
        "WHERE year = ? AND region = ? AND direction = ? AND item = ?",
        [year, region, direction, item],
    ).fetchall()
    return got[0] if got else None


def _write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


# --------------------------------------------------------------------------- shipped copy
def test_shipped_copy_has_data_licence_and_attribution():
    for name in ["LICENSE", "LICENSE.md", "SOURCE.md", CSV_NAME]:
        assert (YEARBOOK_DIR / name).is_file(), name
    assert sorted(p.name for p in RAW.glob("*.xls")) == sorted(XLS_EXPECTED)
    assert "MIT License" in (YEARBOOK_DIR / "LICENSE.md").read_text(encoding="utf-8")
    assert "huhuaping/techme" in (YEARBOOK_DIR / "SOURCE.md").read_text(encoding="utf-8")
    # the product reads its own copy, never the shared folder
    assert "/work/shared" not in Path(yb.__file__).read_text(encoding="utf-8")
    assert YEARBOOK_DIR.resolve().is_relative_to(Path(yb.__file__).resolve().parent)


# --------------------------------------------------------------------------- xls files
@pytest.mark.parametrize("name", sorted(XLS_EXPECTED))
def test_encryption_is_detected_and_handled(name):
    exp = XLS_EXPECTED[name]
    raw = (RAW / name).read_bytes()
    assert msoffcrypto.OfficeFile(io.BytesIO(raw)).is_encrypted() is exp["encrypted"]
    if exp["encrypted"]:
        with pytest.raises(xlrd.biffh.XLRDError, match="encrypted"):
            xlrd.open_workbook(file_contents=raw, logfile=io.StringIO())
    assert len(read_yearbook_table(RAW / name)) == exp["n_rows"]


@pytest.mark.parametrize("name", sorted(XLS_EXPECTED))
def test_xls_every_cell_of_sample_regions(name):
    exp = XLS_EXPECTED[name]
    rows = read_yearbook_table(RAW / name)
    assert len(rows) == exp["n_rows"]  # = 32 regions x items - empty cells, counted on the raw dump
    assert {(r.year, r.direction, r.source_table) for r in rows} == {(exp["year"], exp["direction"], exp["source"])}
    items_in_order = list(dict.fromkeys(r.item for r in rows))
    assert items_in_order == exp["items"]
    assert list(dict.fromkeys(r.region for r in rows)) == REGIONS_IN_FILE_ORDER

    got = {(r.region, r.item): r.value_yi for r in rows}
    for region, blocks in exp["cells"].items():
        flat = [v for block in blocks for v in block]
        assert len(flat) == len(exp["items"]), region
        for item, want in zip(exp["items"], flat):
            if want is None:
                assert (region, item) not in got, f"{region} {item} should be empty"
            else:
                assert got[(region, item)] == want, f"{name} {region} {item}"
                assert type(got[(region, item)]) is float


def test_xls_oddities():
    rev = {(r.region, r.item): r.value_yi for r in read_yearbook_table(RAW / "7-5_public_budget_revenue_by_region_2019.xls")}
    assert rev[("上海", "资源税")] == 0.0  # printed '0.00' is a real zero, kept
    assert rev[("浙江", "国有资本经营收入")] == -46.69  # negative figures are kept
    assert rev[("贵州", "其他税收收入")] == -0.33
    assert ("江苏", "国有资本经营收入") not in rev  # empty cell: not applicable, no row
    assert rev[("吉林", "地方一般公共预算收入")] == 1116.95  # '吉林' printed without the inner space
    assert rev[("吉林", "国有资源(资产)有偿使用收入")] == 83.26  # ... and '吉 林' with it
    assert rev[("山东", "印花税")] == 74.33  # English label misspelt 'Shandbng' in the file
    exp19 = {(r.region, r.item): r.value_yi for r in read_yearbook_table(RAW / "7-6_public_budget_expenditure_by_region_2019.xls")}
    assert exp19[("广西", "外交支出")] == 0.0
    assert ("内蒙古", "援助其他地区支出") not in exp19
    exp21 = {(r.region, r.item): r.value_yi for r in read_yearbook_table(RAW / "7-6_public_budget_expenditure_by_region_2021.xls")}
    assert exp21[("内蒙古", "公共安全支出")] == 249.7931  # ' 内蒙古' with a leading space; split header
    assert exp21[("海南", "援助其他地区支出")] == 0.0022
    exp23 = {(r.region, r.item): r.value_yi for r in read_yearbook_table(RAW / "7-6_public_budget_expenditure_by_region_2023.xls")}
    # the 2023 table carries a note '2022年起新疆数据包含…' below the data: the year still comes from the title
    assert exp23[("新疆", "地方一般公共预算支出")] == 7566.98
    assert exp23[("内蒙古", "援助其他地区支出")] == 0.0


def test_transposed_layout_gives_the_same_rows():
    for name in ["7-6_public_budget_expenditure_by_region_2020.xls", "7-5_public_budget_revenue_by_region_2019.xls"]:
        path = RAW / name
        normal = read_yearbook_table(path)
        grids = yb._read_grids(path)
        transposed = yb._rows_from_grids([g.transposed() for g in grids], path.name)
        assert sorted(transposed, key=lambda r: r.key) == sorted(normal, key=lambda r: r.key)


# --------------------------------------------------------------------------- csv
def test_csv_every_cell_of_sample_regions():
    rows = read_long_csv(YEARBOOK_DIR / CSV_NAME)
    assert len(rows) == 1756
    assert {r.direction for r in rows} == {"支出"}
    assert {r.source_table for r in rows} == {CSV_NAME}
    assert {r.item for r in rows} == set(CSV_ITEM_NAMES.values())
    assert {r.region for r in rows} == set(REGIONS_IN_FILE_ORDER)
    got = {(r.region, r.item, r.year): r.value_yi for r in rows}
    assert len(got) == len(rows)
    for csv_region, by_item in CSV_EXPECTED.items():
        region = "地方合计" if csv_region == "全国" else csv_region
        years = {y for (rg, _, y) in got if rg == region}
        assert years == (set(range(2019, 2024)) if region == "地方合计" else set(range(2010, 2024)))
        for csv_item, by_year in by_item.items():
            for year, want in by_year.items():
                assert got[(region, CSV_ITEM_NAMES[csv_item], year)] == want, (csv_region, csv_item, year)


# --------------------------------------------------------------------------- names and keys
def test_item_and_region_names_are_clean(loaded):
    con, _ = loaded
    names = [r[0] for r in con.execute("SELECT DISTINCT item FROM pub_region_budget").fetchall()]
    names += [r[0] for r in con.execute("SELECT DISTINCT region FROM pub_region_budget").fetchall()]
    for name in names:
        assert not re.search(r"[\s\u3000\u00a0]", name), repr(name)
        assert not re.search(r"[A-Za-z（）]", name), repr(name)
        assert name
    assert {r[0] for r in con.execute("SELECT DISTINCT direction FROM pub_region_budget").fetchall()} == {"收入", "支出"}


def test_load_yearbook_table_shape_and_keys(loaded):
    con, n = loaded
    # 755+770+767+766+769+766 yearbook cells + 1756 CSV cells - 5 years x 128 cells given by both
    assert n == 4593 + 1756 - 640 == 5709
    assert con.execute("SELECT count(*) FROM pub_region_budget").fetchone()[0] == n
    cols = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'pub_region_budget' ORDER BY ordinal_position"
    ).fetchall()
    assert cols == [
        ("year", "INTEGER"), ("region", "VARCHAR"), ("direction", "VARCHAR"),
        ("item", "VARCHAR"), ("value_yi", "DOUBLE"), ("source_table", "VARCHAR"),
    ]
    dup = con.execute(
        "SELECT year, region, direction, item, count(*) FROM pub_region_budget GROUP BY ALL HAVING count(*) > 1"
    ).fetchall()
    assert dup == []
    by_source = dict(con.execute(
        "SELECT source_table || ':' || year, count(*) FROM pub_region_budget GROUP BY ALL"
    ).fetchall())
    assert by_source["7-5:2019"] == 755 and by_source["7-6:2019"] == 770 and by_source["7-6:2023"] == 766
    assert by_source[f"{CSV_NAME}:2010"] == 124 and f"{CSV_NAME}:2019" not in by_source


def test_answer_2019_guangdong_tax_revenue(loaded):
    con, _ = loaded
    assert _value(con, 2019, "广东", "收入", "税收收入") == (10063.95, "7-5")
    assert _value(con, 2019, "广东", "收入", "地方一般公共预算收入") == (12654.53, "7-5")
    assert _value(con, 2019, "地方合计", "收入", "税收收入") == (76980.13, "7-5")


def test_csv_and_yearbook_agree(loaded):
    con, _ = loaded
    csv_rows = read_long_csv(YEARBOOK_DIR / CSV_NAME)
    overlap = [r for r in csv_rows if 2019 <= r.year <= 2023]
    assert len(overlap) == 640
    recon = {
        (y, rg, d, it): (kv, ks, ov, os_)
        for y, rg, d, it, kv, ks, ov, os_, _ in con.execute("SELECT * FROM pub_region_budget_reconciliation").fetchall()
    }
    for r in overlap:
        value, source = _value(con, *r.key)
        assert source == "7-6"
        if value == r.value_yi:
            assert r.key not in recon
        else:
            # only the 2021 file (4 decimals) differs, by the CSV's rounding to 2 decimals
            assert r.year == 2021 and r.region != "地方合计", r.key
            assert recon[r.key] == (value, "7-6", r.value_yi, CSV_NAME)
            assert round(value, 2) == r.value_yi
    assert len(recon) == 123 and {k[0] for k in recon} == {2021}
    assert recon[(2021, "北京", "支出", "地方一般公共预算支出")] == (7205.1201, "7-6", 7205.12, CSV_NAME)
    assert _value(con, 2021, "北京", "支出", "地方一般公共预算支出") == (7205.1201, "7-6")
    assert _value(con, 2020, "北京", "支出", "教育支出") == (1138.29, "7-6")
    assert _value(con, 2018, "北京", "支出", "教育支出") == (1025.51, CSV_NAME)


def test_csv_yearbook_real_disagreement_raises(tmp_path):
    data = tmp_path / "nbs"
    (data / "raw").mkdir(parents=True)
    shutil.copy(RAW / "7-6_public_budget_expenditure_by_region_2020.xls", data / "raw")
    text = (YEARBOOK_DIR / CSV_NAME).read_text(encoding="utf-8")
    assert "北京,2020,教育,1138.29," in text
    (data / CSV_NAME).write_text(text.replace("北京,2020,教育,1138.29,", "北京,2020,教育,1138.3,"), encoding="utf-8")
    con = duckdb.connect()
    with pytest.raises(ValueError, match="2020年 北京 支出 教育支出"):
        load_yearbook(con, data)


def test_sums_are_consistent(loaded):
    """Sanity of the parse (columns not shifted): provinces add up to 地方合计, items to totals."""
    con, _ = loaded
    bad = con.execute("""
        WITH p AS (SELECT year, direction, item, sum(value_yi) s FROM pub_region_budget
                   WHERE region <> '地方合计' GROUP BY ALL),
             t AS (SELECT year, direction, item, value_yi v FROM pub_region_budget WHERE region = '地方合计')
        SELECT * FROM p JOIN t USING (year, direction, item) WHERE abs(s - v) > 0.2
    """).fetchall()
    assert bad == []
    n_totals = con.execute("SELECT count(*) FROM pub_region_budget WHERE region = '地方合计'").fetchone()[0]
    assert n_totals == 24 + 5 * 25
    bad = con.execute("""
        SELECT region FROM pub_region_budget WHERE year = 2019 AND direction = '收入'
        GROUP BY region HAVING abs(sum(value_yi) FILTER (item IN ('税收收入', '非税收入'))
                                   - any_value(value_yi) FILTER (item = '地方一般公共预算收入')) > 0.02
    """).fetchall()
    assert bad == []
    bad = con.execute("""
        SELECT year, region FROM pub_region_budget WHERE direction = '支出' AND year >= 2019
        GROUP BY year, region HAVING abs(sum(value_yi) FILTER (item <> '地方一般公共预算支出')
                                         - any_value(value_yi) FILTER (item = '地方一般公共预算支出')) > 0.15
    """).fetchall()
    assert bad == []


# --------------------------------------------------------------------------- load_yearbook_file
def _truncated(src: str, frac: float):
    def make(tmp: Path) -> Path:
        data = (RAW / src).read_bytes()
        out = tmp / src
        out.write_bytes(data[: int(len(data) * frac)])
        return out
    return make


def _garbled_header(tmp: Path) -> Path:
    data = bytearray((RAW / "7-6_public_budget_expenditure_by_region_2022.xls").read_bytes())
    data[4096:4096 + 512] = b"\xab" * 512
    out = tmp / "7-6_public_budget_expenditure_by_region_2022.xls"
    out.write_bytes(bytes(data))
    return out


def _empty(tmp: Path) -> Path:
    out = tmp / "7-6_2024.xls"
    out.write_bytes(b"")
    return out


def _not_excel(tmp: Path) -> Path:
    out = tmp / "7-6_2024.xls"
    out.write_text("<html><table><tr><td>北京</td></tr></table></html>", encoding="utf-8")
    return out


@pytest.mark.parametrize(
    "make",
    [
        _truncated("7-5_public_budget_revenue_by_region_2019.xls", 0.5),  # encrypted
        _truncated("7-6_public_budget_expenditure_by_region_2023.xls", 0.99),  # encrypted
        _truncated("7-6_public_budget_expenditure_by_region_2020.xls", 0.9),
        _truncated("7-6_public_budget_expenditure_by_region_2021.xls", 0.5),
        _garbled_header,
        _empty,
        _not_excel,
    ],
    ids=["trunc-7-5-2019", "trunc-7-6-2023", "trunc-7-6-2020", "trunc-7-6-2021", "garbled", "empty", "html"],
)
def test_load_yearbook_file_corrupted_raises_and_leaves_table_unchanged(fresh, tmp_path, make):
    before = _snapshot(fresh)
    path = make(tmp_path)
    with pytest.raises(ValueError, match=r"^无法读取 .*(损坏|截断|空的)"):
        load_yearbook_file(fresh, path)
    assert _snapshot(fresh) == before


@pytest.mark.parametrize(
    "rows, message",
    [
        ([["北京", 1.0, 2.0], ["天津", 3.0, 4.0], ["河北", 5.0, 6.0]], "无法识别表头：.*没有找到指标名称"),
        ([["7-6 分地区一般公共预算支出(2024年)"], ["地区", "教育支出"], ["北京", 1.0, 2.0],
          ["天津", 3.0, 4.0], ["河北", 5.0, 6.0]], "无法识别表头：.*第3列.*有数值但上方没有指标名称"),
        ([["随便什么表"], ["项目", "数值"], ["甲", 1.0]], "无法识别表头：.*没有找到分地区数据表"),
        ([["7-6 分地区一般公共预算支出(2024年)"], ["地区", "教育支出"], ["北京", "很多"],
          ["天津", 3.0], ["河北", 5.0]], "无法识别数值：.*北京 教育支出"),
        ([["分地区一般公共预算支出"], ["地区", "教育支出"], ["北京", 1.0], ["天津", 3.0], ["河北", 5.0]],
         "无法识别年份"),
        ([["7-6 分地区一般公共预算支出(2024年)"], ["地区", "教育支出"], ["北京", 1.0], ["天津", 3.0],
          ["新疆生产建设兵团", 5.0], ["河北", 5.0]], "无法识别地区：.*第5行「新疆生产建设兵团」有数值"),
    ],
    ids=["no-header", "unnamed-column", "no-regions", "text-value", "no-year", "unknown-row"],
)
def test_load_yearbook_file_unrecognised_layout(fresh, tmp_path, rows, message):
    before = _snapshot(fresh)
    path = _write_xlsx(tmp_path / "table.xlsx", rows)
    with pytest.raises(ValueError, match=message):
        load_yearbook_file(fresh, path)
    assert _snapshot(fresh) == before


def test_load_yearbook_file_is_idempotent(fresh):
    before = _snapshot(fresh)
    for name in XLS_EXPECTED:
        assert load_yearbook_file(fresh, RAW / name) == 0
    assert _snapshot(fresh) == before


def test_load_yearbook_file_next_year_transposed_xlsx(fresh, tmp_path):
    """A user's next-year table laid out the other way round (items as rows, regions as columns)."""
    before = fresh.execute("SELECT count(*) FROM pub_region_budget").fetchone()[0]
    rows = [
        ["7-6 分地区一般公共预算支出（2024年）"],
        ["单位：亿元"],
        ["项  目", "全  国", "北 京", "广西壮族自治区", "西藏自治区", "Region"],
        ["地方一般公\n共预算支出", 240000.12, 8000.5, 6200.25, 2900.0, None],
        ["公    共\n安全支出\nExpenditure for Public Security", 13000.0, 510.01, 320.0, 160.3, None],
        ["外交支出", "—", "", 0.0, 0.12, None],
        ["教育支出", 40000.0, 1250.75, 1200.0, "340.45", None],
    ]
    path = _write_xlsx(tmp_path / "yearbook2025_7-6.xlsx", rows)
    assert load_yearbook_file(fresh, path) == 14
    got = fresh.execute(
        "SELECT region, item, value_yi, source_table FROM pub_region_budget WHERE year = 2024 ORDER BY ALL"
    ).fetchall()
    assert got == sorted([
        ("地方合计", "地方一般公共预算支出", 240000.12, "7-6"), ("北京", "地方一般公共预算支出", 8000.5, "7-6"),
        ("广西", "地方一般公共预算支出", 6200.25, "7-6"), ("西藏", "地方一般公共预算支出", 2900.0, "7-6"),
        ("地方合计", "公共安全支出", 13000.0, "7-6"), ("北京", "公共安全支出", 510.01, "7-6"),
        ("广西", "公共安全支出", 320.0, "7-6"), ("西藏", "公共安全支出", 160.3, "7-6"),
        ("广西", "外交支出", 0.0, "7-6"), ("西藏", "外交支出", 0.12, "7-6"),
        ("地方合计", "教育支出", 40000.0, "7-6"), ("北京", "教育支出", 1250.75, "7-6"),
        ("广西", "教育支出", 1200.0, "7-6"), ("西藏", "教育支出", 340.45, "7-6"),
    ])
    assert {r[0] for r in fresh.execute("SELECT DISTINCT direction FROM pub_region_budget WHERE year = 2024").fetchall()} == {"支出"}
    assert fresh.execute("SELECT count(*) FROM pub_region_budget").fetchone()[0] == before + 14


def test_load_yearbook_file_conflicting_value_raises(fresh, tmp_path):
    before = _snapshot(fresh)
    rows = [
        ["7-6 分地区一般公共预算支出(2020年)"],
        ["地区", "教育支出", "国防支出"],
        ["地方合计", 34686.3, 238.85],
        ["北京", 1138.3, 8.87],  # the yearbook says 1138.29
        ["天津", 442.91, 1.3],
        ["河北", 1596.26, 14.25],
    ]
    with pytest.raises(ValueError, match=r"数据不一致：2020年 北京 支出 教育支出：7-6 = 1138\.29，7-6 = 1138\.3"):
        load_yearbook_file(fresh, _write_xlsx(tmp_path / "7-6_2020_revised.xlsx", rows))
    assert _snapshot(fresh) == before


def test_load_yearbook_file_replaces_rounded_csv_cells(tmp_path):
    """Same rule incrementally: CSV first, then the 2021 table with its 4-decimal figures."""
    data = tmp_path / "nbs"
    (data / "raw").mkdir(parents=True)
    shutil.copy(RAW / "7-6_public_budget_expenditure_by_region_2020.xls", data / "raw")
    shutil.copy(YEARBOOK_DIR / CSV_NAME, data)
    con = duckdb.connect()
    n0 = load_yearbook(con, data)
    assert n0 == 767 + 1756 - 128
    assert _value(con, 2021, "北京", "支出", "地方一般公共预算支出") == (7205.12, CSV_NAME)
    changed = load_yearbook_file(con, RAW / "7-6_public_budget_expenditure_by_region_2021.xls")
    assert changed == 766  # 638 new cells + 128 CSV cells now credited to / replaced by 7-6
    assert con.execute("SELECT count(*) FROM pub_region_budget").fetchone()[0] == n0 + 766 - 128
    assert _value(con, 2021, "北京", "支出", "地方一般公共预算支出") == (7205.1201, "7-6")
    assert _value(con, 2021, "地方合计", "支出", "地方一般公共预算支出") == (210623.04, "7-6")
    assert con.execute("SELECT count(*) FROM pub_region_budget_reconciliation").fetchone()[0] == 123
