"""Loading a user's own CSV/Excel file: good files load and can be queried; every broken input is
reported (row and column, in Chinese) and leaves the warehouse byte-for-byte unchanged."""
from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
from datetime import date
from pathlib import Path

import duckdb
import openpyxl
import pytest

from warehouse import loader
from warehouse.loader import LoadError, load_user_file, user_catalogue_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CSV = ROOT / "docs" / "examples" / "land_transfer.csv"
EXAMPLE_YAML = ROOT / "docs" / "examples" / "land_transfer.yaml"
YEARBOOK_XLS = ROOT / "warehouse" / "data" / "nbs-yearbook" / "raw" / "7-5_public_budget_revenue_by_region_2019.xls"
HEADER = "年度,月份,街道,土地用途,出让宗数,出让面积（亩）,成交价款（万元）"


# ------------------------------------------------------------------------------- helpers
@pytest.fixture
def wh(small_db, tmp_path) -> Path:
    """A private copy of the session's small warehouse (the shared fixture is never modified)."""
    db = tmp_path / "wh" / "youshu.duckdb"
    db.parent.mkdir()
    shutil.copyfile(small_db, db)
    return db


def snapshot(db: Path) -> dict:
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").fetchall()]
        tables = {t: con.execute(f'SELECT count(*), sum(hash(x)::HUGEINT) FROM "{t}" x').fetchall()[0]
                  for t in names}
    finally:
        con.close()
    folder = sorted(p.name for p in db.parent.iterdir())
    cat_dir = user_catalogue_dir(db)
    cats = {p.name: p.read_bytes() for p in sorted(cat_dir.glob("*"))} if cat_dir.exists() else None
    return {"sha256": digest, "tables": tables, "folder": folder, "catalogue.d": cats}


def assert_untouched(db: Path, before: dict) -> None:
    after = snapshot(db)
    assert after["sha256"] == before["sha256"], "warehouse file changed"
    assert after["tables"] == before["tables"], "table contents changed"
    assert after["folder"] == before["folder"], f"files left behind: {set(after['folder']) ^ set(before['folder'])}"
    assert after["catalogue.d"] == before["catalogue.d"], "user catalogue changed"


def expect_error(db: Path, *args, contains: list[str], **kw) -> str:
    before = snapshot(db)
    with pytest.raises(LoadError) as info:
        load_user_file(*args, db_path=db, progress=None, **kw)
    message = str(info.value)
    for text in contains:
        assert text in message, f"{text!r} not in:\n{message}"
    assert_untouched(db, before)
    assert isinstance(info.value, ValueError)
    return message


def query(db: Path, sql: str, params=None):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def example_rows() -> list[dict]:
    with open(EXAMPLE_CSV, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def example_lines() -> list[str]:
    return EXAMPLE_CSV.read_text(encoding="utf-8").splitlines()


def write(path: Path, lines: list[str], encoding: str = "utf-8", end: str = "\n") -> Path:
    path.write_bytes(("\n".join(lines) + end).encode(encoding))
    return path


# --------------------------------------------------------------------------- good files
def test_example_csv_with_catalogue_loads_and_is_queryable(wh):
    before = snapshot(wh)
    messages: list[str] = []
    n = load_user_file(EXAMPLE_CSV, "land_transfer", catalogue=EXAMPLE_YAML, db_path=wh, progress=messages.append)
    rows = example_rows()
    assert n == len(rows) == 50
    assert any("编码 UTF-8" in m and "逗号" in m for m in messages)
    # the other tables are unchanged
    after = snapshot(wh)
    assert {t: v for t, v in after["tables"].items() if t not in ("land_transfer", "meta_user_tables")} == before["tables"]
    cols = query(wh, "SELECT column_name, data_type FROM information_schema.columns "
                     "WHERE table_name = 'land_transfer' ORDER BY ordinal_position")
    assert cols == [("year", "BIGINT"), ("month", "BIGINT"), ("street", "VARCHAR"), ("land_use", "VARCHAR"),
                    ("parcels", "BIGINT"), ("area_mu", "DOUBLE"), ("price_wan", "DOUBLE")]
    expected = sum(float(r["成交价款（万元）"].replace(",", "")) for r in rows if r["年度"] == "2024")
    got = query(wh, "SELECT SUM(price_wan) FROM land_transfer WHERE year = 2024")[0][0]
    assert got == pytest.approx(expected)
    assert query(wh, "SELECT row_count, file_format, encoding FROM meta_user_tables WHERE table_name = 'land_transfer'") \
        == [(50, "CSV", "UTF-8")]
    saved = user_catalogue_dir(wh) / "land_transfer.yaml"
    assert saved.exists()
    import yaml

    data = yaml.safe_load(saved.read_text(encoding="utf-8"))
    assert set(data) == {"tables", "models", "metrics", "dimensions"}  # never as_of/roles: they would override
    assert data["tables"]["land_transfer"]["columns"]["price_wan"]["unit"] == "万元"
    assert data["tables"]["land_transfer"]["as_of"] == "2025-10-31"
    assert not list(wh.parent.glob("*.tmp")) and not list(wh.parent.glob(".*.tmp"))


def test_gbk_tab_separated_csv(wh, tmp_path):
    rows = example_rows()
    lines = ["\t".join(HEADER.split(","))] + [
        "\t".join([r["年度"], r["月份"], r["街道"], r["土地用途"], r["出让宗数"], r["出让面积（亩）"],
                   r["成交价款（万元）"]]) for r in rows]
    f = write(tmp_path / "gbk.txt", lines, encoding="gbk", end="\r\n")
    messages: list[str] = []
    n = load_user_file(f, "land_transfer", catalogue=EXAMPLE_YAML, db_path=wh, progress=messages.append)
    assert n == 50
    assert any("编码 GBK" in m and "制表符" in m for m in messages)
    assert query(wh, "SELECT count(DISTINCT street) FROM land_transfer WHERE street LIKE '%街道'")[0][0] == 3
    expected = sum(float(r["成交价款（万元）"].replace(",", "")) for r in rows)
    assert query(wh, "SELECT SUM(price_wan) FROM land_transfer")[0][0] == pytest.approx(expected)


def test_gb18030_semicolon_and_utf8_bom(wh, tmp_path):
    f = write(tmp_path / "a.csv", ["年度;月份;街道;土地用途;出让宗数;出让面积（亩）;成交价款（万元）",
                                   "2025;1;䶮湖街道;工业用地;1;10;20"], encoding="gb18030")
    assert load_user_file(f, "land_transfer", catalogue=EXAMPLE_YAML, db_path=wh, progress=None) == 1
    assert query(wh, "SELECT street FROM land_transfer") == [("䶮湖街道",)]
    g = tmp_path / "b.csv"
    g.write_bytes(b"\xef\xbb\xbf" + EXAMPLE_CSV.read_bytes())
    assert load_user_file(g, "land_transfer", catalogue=EXAMPLE_YAML, db_path=wh, progress=None) == 50


def _workbook(path: Path, rows: list[list], title_rows: bool = True, extra_sheet: bool = True) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "土地出让"
    if title_rows:
        ws.append(["2025年1—3月土地出让成交情况"])
        ws.append(["单位：万元、亩"])
        ws.append([])
    for r in rows:
        ws.append(r)
    ws.append(["注：数据来源于土地市场动态监测监管系统。"])
    if extra_sheet:
        wb.create_sheet("填报说明")["A1"] = "说明"
    wb.save(path)
    return path


GOOD_XLSX_ROWS = [
    ["年度", "月份", "街道", "土地用途", "出让宗数", "出让面积（亩）", "成交价款（万元）"],
    [2025, 1, "临江街道", "工业用地", 1, 50.5, 1234.5],
    [2025, 2.0, "新城街道", "住宅用地", "２", "１２０.５", "（1,000.5）"],
    [2025, 3, "高新街道", "商服用地", None, "—", "-"],
    ["2025", "3", " 高新街道 ", "工业用地", "1", "12,345.25", "¥88"],
]


def test_good_xlsx_with_title_rows_notes_and_messy_numbers(wh, tmp_path):
    f = _workbook(tmp_path / "land.xlsx", GOOD_XLSX_ROWS)
    messages: list[str] = []
    n = load_user_file(f, "land_transfer", catalogue=EXAMPLE_YAML, db_path=wh, progress=messages.append)
    assert n == 4
    text = "\n".join(messages)
    assert "跳过表头前的 2 行" in text and "说明行" in text and "已读取“土地出让”" in text
    assert query(wh, "SELECT year, month, street, land_use, parcels, area_mu, price_wan FROM land_transfer ORDER BY month, area_mu NULLS FIRST") == [
        (2025, 1, "临江街道", "工业用地", 1, 50.5, 1234.5),
        (2025, 2, "新城街道", "住宅用地", 2, 120.5, -1000.5),
        (2025, 3, "高新街道", "商服用地", None, None, None),
        (2025, 3, "高新街道", "工业用地", 1, 12345.25, 88.0),
    ]


def test_xlsx_protected_with_default_password(wh, tmp_path):
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = _workbook(tmp_path / "plain.xlsx", GOOD_XLSX_ROWS)
    out = io.BytesIO()
    with open(plain, "rb") as fh:
        OOXMLFile(fh).encrypt("VelvetSweatshop", out)
    f = tmp_path / "protected.xlsx"
    f.write_bytes(out.getvalue())
    assert load_user_file(f, "land_transfer", catalogue=EXAMPLE_YAML, db_path=wh, progress=None, sheet="土地出让") == 4

    out = io.BytesIO()
    with open(plain, "rb") as fh:
        OOXMLFile(fh).encrypt("a real password", out)
    g = tmp_path / "locked.xlsx"
    g.write_bytes(out.getvalue())
    expect_error(wh, g, "land_transfer", catalogue=EXAMPLE_YAML, contains=["Excel 文件设置了打开密码"])


def test_encrypted_xls_from_the_yearbook_is_read(wh):
    # a real .xls from the statistical yearbook, "protected" with VelvetSweatshop (BIFF8 RC4)
    raw = loader._read_file(YEARBOOK_XLS, None)
    assert raw.kind == "Excel (.xls)"
    flat = [str(v) for row in raw.rows for v in row if v is not None]
    assert any("分地区一般公共预算收入" in v for v in flat)
    assert any(v.replace(" ", "") == "北京" for v in flat)
    # its two-row header cannot be loaded as it is: said so, warehouse intact
    expect_error(wh, YEARBOOK_XLS, "yearbook_7_5", contains=["没有列名", "整理成一行表头"])


def test_without_catalogue_types_are_inferred_and_a_minimal_entry_saved(wh, tmp_path):
    f = write(tmp_path / "x.csv", ["street_code,街道,企业数,注册资本（万元）,成立日期,是否园区内",
                                   "001,临江街道,1,\"1,200.5\",2020/1/5,是",
                                   "002,新城街道,25,-,2021-03-01,否"])
    messages: list[str] = []
    assert load_user_file(f, "street_firms", db_path=wh, progress=messages.append) == 2
    assert any("未提供数据目录" in m and "推断" in m for m in messages)
    types = dict(query(wh, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'street_firms'"))
    assert types == {"street_code": "VARCHAR", "col_2": "VARCHAR", "col_3": "BIGINT", "col_4": "DOUBLE",
                     "col_5": "DATE", "col_6": "BOOLEAN"}
    assert query(wh, "SELECT street_code, col_4, col_5, col_6 FROM street_firms ORDER BY 1") == [
        ("001", 1200.5, date(2020, 1, 5), True), ("002", None, date(2021, 3, 1), False)]
    import yaml

    saved = yaml.safe_load((user_catalogue_dir(wh) / "street_firms.yaml").read_text(encoding="utf-8"))
    cols = saved["tables"]["street_firms"]["columns"]
    assert cols["col_2"]["label"] == "街道"
    assert cols["col_4"] == {"label": "注册资本", "unit": "万元", "type": "DOUBLE"}
    # the merged catalogue (shipped + user tables) is valid and knows the new table
    cat = loader.load_merged_catalogue(wh)
    assert "street_firms" in cat.tables and "fact_budget_revenue" in cat.tables


def test_reload_replaces_the_table_and_reuses_the_saved_catalogue(wh, tmp_path):
    load_user_file(EXAMPLE_CSV, "land_transfer", catalogue=EXAMPLE_YAML, db_path=wh, progress=None)
    f = write(tmp_path / "more.csv", [HEADER, "2025,11,临江街道,工业用地,1,10,30"])
    messages: list[str] = []
    assert load_user_file(f, "land_transfer", db_path=wh, progress=messages.append) == 1
    assert any("沿用上次" in m for m in messages) and any("已替换" in m for m in messages)
    assert query(wh, "SELECT count(*), max(price_wan) FROM land_transfer")[0] == (1, 30.0)
    assert "land_transfer_price" in loader.load_merged_catalogue(wh).metrics


def test_assistant_answers_questions_about_the_loaded_table(wh):
    from assistant.engine import Assistant

    load_user_file(EXAMPLE_CSV, "land_transfer", catalogue=EXAMPLE_YAML, db_path=wh, progress=None)
    a = Assistant(wh, catalogue=loader.load_merged_catalogue(wh))
    rows = example_rows()
    amount = lambda r: float(r["成交价款（万元）"].replace(",", ""))  # noqa: E731

    r = a.ask("2024年土地出让成交价款是多少", as_of=date(2025, 11, 15))
    assert r["status"] == "answered", r
    assert r["rows"][0][-1] == pytest.approx(sum(amount(x) for x in rows if x["年度"] == "2024"))

    r = a.ask("2025年各用途土地出让成交价款", as_of=date(2025, 11, 15))
    assert r["status"] == "answered", r
    got = {row[0]: row[-1] for row in r["rows"]}
    for use in ("工业用地", "商服用地", "住宅用地"):
        assert got[use] == pytest.approx(sum(amount(x) for x in rows if x["年度"] == "2025" and x["土地用途"] == use))


# ------------------------------------------------------------------------ number parsing
@pytest.mark.parametrize("text, value", [
    ("1,234.5", 1234.5), ("１２３４", 1234.0), ("（1,234.5）", -1234.5), ("(12)", -12.0), ("-3", -3.0),
    ("－3", -3.0), ("12,345,678", 12345678.0), ("1.5e3", 1500.0), ("  7  ", 7.0), ("￥1,000", 1000.0),
    ("12.5%", 12.5), ("—", None), ("-", None), ("", None), ("——", None), (None, None), (3, 3.0),
])
def test_numbers_accepted(text, value):
    assert loader._to_double(text) == value


@pytest.mark.parametrize("text", ["12,3x4", "1,23", "1.2.3", "abc", "12万", "(-5)", "1_000", "nan1", "#N/A"])
def test_numbers_refused(text):
    with pytest.raises(loader._Bad, match="无法识别的数字"):
        loader._to_double(text)


def test_integers_dates_booleans():
    assert loader._to_integer("1,234") == 1234 and loader._to_integer(2021.0) == 2021
    assert loader._to_integer("9,007,199,254,740,993") == 9007199254740993  # no float rounding
    with pytest.raises(loader._Bad, match="应为整数"):
        loader._to_integer("12.5")
    assert loader._to_date("2025年3月1日") == date(2025, 3, 1) == loader._to_date("2025/3/1") == loader._to_date("20250301")
    with pytest.raises(loader._Bad, match="没有这一天"):
        loader._to_date("2025-02-30")
    assert loader._to_boolean("是") is True and loader._to_boolean("否") is False and loader._to_boolean("") is None


# ------------------------------------------------------------------------- broken inputs
def test_wrong_columns(wh, tmp_path):
    f = write(tmp_path / "w.csv", ["年份,金额,街道", "2024,5,临江街道"])
    expect_error(wh, f, "land_transfer", catalogue=EXAMPLE_YAML, contains=[
        "缺少目录中要求的列：year（年度）、month（月份）", "文件中有目录里没有的列：年份、金额"])


def test_bad_number_reports_row_and_column(wh, tmp_path):
    lines = example_lines()
    lines[16] = "2024,9,临江街道,工业用地,1,80.5,\"12,3x4\""
    lines[20] = "2024,10,新城街道,工业用地,x,80.5,1"
    lines[21] = "2024,10,,工业用地,2,—,-"
    f = write(tmp_path / "bad.csv", lines)
    msg = expect_error(wh, f, "land_transfer", catalogue=EXAMPLE_YAML, contains=[
        "发现 3 处问题", "第 17 行，列“成交价款（万元）”：无法识别的数字“12,3x4”",
        "第 21 行，列“出让宗数”：无法识别的数字“x”", "第 22 行，列“街道”：不能为空（目录中标为必填）"])
    # listed in row order
    assert msg.index("第 17 行") < msg.index("第 21 行") < msg.index("第 22 行")


def test_at_most_20_problems_are_listed(wh, tmp_path):
    lines = [HEADER] + [f"2024,{m % 12 + 1},临江街道,工业用地,x{m},y{m},z{m}" for m in range(40)]
    f = write(tmp_path / "many.csv", lines)
    msg = expect_error(wh, f, "land_transfer", catalogue=EXAMPLE_YAML,
                       contains=["另有", "个值有同样的问题", "第 2 行，列“出让宗数”：无法识别的数字“x0”"])
    assert msg.count("\n  ") <= 21


def test_unrecognised_encoding(wh, tmp_path):
    f = tmp_path / "enc.csv"
    f.write_bytes(HEADER.encode("utf-8") + b"\n2024,1,\x80\x80,\xff\xfe\xfe,1,2,3\n")
    expect_error(wh, f, "land_transfer", catalogue=EXAMPLE_YAML,
                 contains=["文件编码无法识别（尝试了 UTF-8、UTF-8-BOM、GBK/GB18030）"])


def test_truncated_file(wh, tmp_path):
    lines = [HEADER] + [f"2024,{i % 12 + 1},临江街道,工业用地,1,10.5,{i}" for i in range(1999)] + ["2025,1,新城"]
    f = write(tmp_path / "cut.csv", lines, end="")
    expect_error(wh, f, "land_transfer", catalogue=EXAMPLE_YAML,
                 contains=["文件似乎被截断：第 2,001 行只有 3 列（表头有 7 列）"])
    g = write(tmp_path / "cut2.csv", example_lines()[:10] + ['2025,1,新城街道,"工业'], end="")
    expect_error(wh, g, "land_transfer", catalogue=EXAMPLE_YAML,
                 contains=["文件似乎被截断：第 11 行开始的带引号字段没有结束"])
    h = tmp_path / "cut.xlsx"
    h.write_bytes(_workbook(tmp_path / "full.xlsx", GOOD_XLSX_ROWS).read_bytes()[:3000])
    expect_error(wh, h, "land_transfer", catalogue=EXAMPLE_YAML, contains=["Excel 文件已损坏或不完整"])


def test_unquoted_thousands_separator_makes_an_extra_column(wh, tmp_path):
    f = write(tmp_path / "x.csv", [HEADER, "2024,1,临江街道,工业用地,1,10,1,234.5"])
    expect_error(wh, f, "land_transfer", catalogue=EXAMPLE_YAML,
                 contains=["第 2 行有 8 列，比表头（7 列）多 1 列", "千分位逗号没加引号"])


def test_empty_and_header_only_files(wh, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    expect_error(wh, empty, "land_transfer", catalogue=EXAMPLE_YAML, contains=["文件是空的"])
    blank = tmp_path / "blank.csv"
    blank.write_bytes(b"\r\n \r\n")
    expect_error(wh, blank, "land_transfer", catalogue=EXAMPLE_YAML, contains=["文件是空的"])
    header_only = write(tmp_path / "h.csv", [HEADER])
    expect_error(wh, header_only, "land_transfer", catalogue=EXAMPLE_YAML, contains=["只有表头", "没有数据行"])


def test_binary_garbage(wh, tmp_path):
    f = tmp_path / "garbage.csv"
    f.write_bytes(bytes((i * 7919 + 13) % 256 for i in range(5000)))
    expect_error(wh, f, "land_transfer", catalogue=EXAMPLE_YAML, contains=["二进制"])
    pdf = tmp_path / "report.xlsx"
    pdf.write_bytes(b"%PDF-1.7\n" + os.urandom(200))
    expect_error(wh, pdf, "land_transfer", catalogue=EXAMPLE_YAML, contains=["PDF"])


def test_contract_table_is_refused(wh):
    for name in ("fact_budget_revenue", "DIM_SUBJECT", "pub_region_budget"):
        expect_error(wh, EXAMPLE_CSV, name, contains=["合同表", "不能用导入的数据覆盖"])
    # tables the demo build made that are not in the contract, and views, are protected too
    expect_error(wh, EXAMPLE_CSV, "pub_region_budget_reconciliation", contains=["演示数据表"])
    expect_error(wh, EXAMPLE_CSV, "meta_build", contains=["meta_"])


@pytest.mark.parametrize("name", ["土地出让", "land-transfer", "2024_land", "land transfer", "", "select"])
def test_bad_table_name(wh, name):
    expect_error(wh, EXAMPLE_CSV, name, contains=["表名"])


def test_bad_table_name_message(wh):
    expect_error(wh, EXAMPLE_CSV, "土地出让", contains=["表名只能包含字母、数字和下划线"])


def test_catalogue_problems(wh, tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("tables:\n  land_transfer:\n    label: [x\n", encoding="utf-8")
    expect_error(wh, EXAMPLE_CSV, "land_transfer", catalogue=bad_yaml, contains=["不是有效的 YAML"])

    other = tmp_path / "other.yaml"
    other.write_text("tables:\n  other_table: {label: 别的表, columns: {a: {label: A}}}\n", encoding="utf-8")
    expect_error(wh, EXAMPLE_CSV, "land_transfer", catalogue=other, contains=["没有表“land_transfer”的定义"])

    text = EXAMPLE_YAML.read_text(encoding="utf-8")
    typed = tmp_path / "typed.yaml"
    typed.write_text(text.replace("type: DOUBLE, unit: 万元", "type: MONEY, unit: 万元"), encoding="utf-8")
    expect_error(wh, EXAMPLE_CSV, "land_transfer", catalogue=typed, contains=["类型“MONEY”无法识别"])

    clash = tmp_path / "clash.yaml"
    clash.write_text(text.replace("  land_use:\n    label: 土地用途", "  region:\n    label: 土地用途"), encoding="utf-8")
    expect_error(wh, EXAMPLE_CSV, "land_transfer", catalogue=clash, contains=["维度名“region”与系统自带的维度重名"])

    roles = tmp_path / "roles.yaml"
    roles.write_text(text + "\nroles:\n  超级用户: {sensitive: true}\n", encoding="utf-8")
    expect_error(wh, EXAMPLE_CSV, "land_transfer", catalogue=roles, contains=["不支持的顶层项：roles"])


def test_metric_that_does_not_run_is_caught_after_the_copy(wh, tmp_path):
    # fails after the data are loaded into the temporary copy: the copy is discarded
    bad = tmp_path / "bad_metric.yaml"
    bad.write_text(EXAMPLE_YAML.read_text(encoding="utf-8").replace("SUM(f.price_wan)", "SUM(f.price_yuan)"),
                   encoding="utf-8")
    expect_error(wh, EXAMPLE_CSV, "land_transfer", catalogue=bad,
                 contains=["指标 land_transfer_price 的表达式“SUM(f.price_yuan)”", "无法在表上执行"])


def test_failure_at_the_last_moment_leaves_the_warehouse_intact(wh, monkeypatch):
    load_user_file(EXAMPLE_CSV, "land_transfer", catalogue=EXAMPLE_YAML, db_path=wh, progress=None)
    before = snapshot(wh)
    real = os.replace

    def failing_replace(src, dst):
        if str(dst) == str(wh):
            raise OSError("disk full (simulated)")
        return real(src, dst)

    monkeypatch.setattr(loader.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        load_user_file(EXAMPLE_CSV, "land_transfer2", catalogue=None, db_path=wh, progress=None)
    assert_untouched(wh, before)

    # the warehouse was already replaced when saving the catalogue entry fails: it is put back
    def failing_catalogue_replace(src, dst):
        if str(dst).endswith("land_transfer2.yaml"):
            raise OSError("catalogue not writable (simulated)")
        return real(src, dst)

    monkeypatch.setattr(loader.os, "replace", failing_catalogue_replace)
    with pytest.raises(OSError, match="simulated"):
        load_user_file(EXAMPLE_CSV, "land_transfer2", catalogue=None, db_path=wh, progress=None)
    assert_untouched(wh, before)


def test_concurrent_load_is_refused(wh):
    import fcntl

    fd = os.open(wh.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        expect_error(wh, EXAMPLE_CSV, "land_transfer", catalogue=EXAMPLE_YAML, contains=["另一个导入正在写入"])
    finally:
        os.close(fd)


def test_missing_warehouse(tmp_path):
    with pytest.raises(LoadError, match="找不到数据仓库文件"):
        load_user_file(EXAMPLE_CSV, "land_transfer", catalogue=EXAMPLE_YAML, db_path=tmp_path / "none.duckdb",
                       progress=None)
    assert not (tmp_path / "none.duckdb").exists()


# ---------------------------------------------------------------------------------- CLI
def test_cli_load_and_error_exit_code(wh, tmp_path, capsys):
    from assistant.cli import main

    assert main(["warehouse", "load", str(EXAMPLE_CSV), "--table", "land_transfer",
                 "--catalogue", str(EXAMPLE_YAML), "--db", str(wh)]) == 0
    assert "已导入 50 行到表 land_transfer" in capsys.readouterr().out
    before = snapshot(wh)
    assert main(["warehouse", "load", str(EXAMPLE_CSV), "--table", "fact_gdp", "--db", str(wh)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("错误：") and "合同表" in err
    assert_untouched(wh, before)
