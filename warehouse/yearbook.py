"""Loader for real published tables of the 中国统计年鉴 (分地区一般公共预算收入 / 支出).

Reads the National Bureau of Statistics' yearbook tables 7-5 (分地区一般公共预算收入) and
7-6 (分地区一般公共预算支出) exactly as they are downloaded — .xls (BIFF, possibly protected
with Excel's default read password "VelvetSweatshop") or .xlsx — plus the long CSV that
ships next to them, into the DuckDB table ``pub_region_budget``::

    pub_region_budget(year INTEGER, region VARCHAR, direction VARCHAR, item VARCHAR,
                      value_yi DOUBLE, source_table VARCHAR)   -- PK (year, region, direction, item)

The reader is generic, so a user can point it at next year's yearbook table
(:func:`load_yearbook_file`). What it copes with:

* encryption with the default password (decrypted in memory, nothing written to disk);
* several sheets and several stacked blocks per sheet (续表), each with its own header;
* headers over one or more rows, in one cell with line breaks ('地 方\\r\\n一般公共\\r\\n预算收入\\r\\nGeneral…')
  or split over two rows ('地方一般公' / '共预算支出'); English lines are dropped, all whitespace
  (incl. full-width spaces and line breaks) is removed, full-width parentheses become ASCII,
  a leading '其中:' / '#' is removed; horizontally merged group labels above sub-items are not
  prepended to the sub-items' names;
* regions as rows (the yearbook's own layout) or as columns (transposed) — detected by where
  the province names are;
* region labels with inner spaces / English names / full names ('北 京', ' 内蒙古', '广西壮族自治区')
  mapped to the yearbook's short names; the total row ('地方合计', '全国', '合计', '总计') becomes '地方合计';
* blank spacer rows, notes ('注:…', '摘编自…') and title / unit rows are ignored;
* numbers stored as numbers or as text ('101080.61'); the float is kept exactly as stored
  (text is converted with ``float()``, nothing is rounded).

Decisions (documented here because the published files force them):

* **Empty cells are skipped, not stored as 0.** In these tables an empty cell means "not
  applicable / nothing to report" (e.g. 外交支出 for most provinces, 烟叶税 where no tobacco is
  grown); a published 0.00 is a real figure and is stored as 0.0. So a missing row means "the
  yearbook prints nothing there"; ``SUM`` over provinces is unaffected.
* **Year** comes from the table's title (the rows above the first header: '(2019年)',
  '中国2020年分地区…'); the file name is used only when the title has no year (a yearbook of
  year N publishes year N-1's data, so the title is the reliable source). Notes below the data
  ('2022年起新疆数据包含…', '摘编自《中国统计年鉴2021》') are never used.
* **Direction** ('收入' / '支出') comes from the title, else from the item names; title and
  items must not contradict each other.
* **source_table** is the table number from the title ('7-5', '7-6'), else from the file name
  ('7-6_public_budget_…'), else the file name itself; CSV rows carry the CSV's file name.
* **CSV vs yearbook.** Where the long CSV and a yearbook file give the same cell, one row is
  kept, with the yearbook file's value and source_table. The values must agree exactly, with
  one recorded exception found in the real data: the 2021 table 7-6 file stores four decimals
  (e.g. 北京 地方一般公共预算支出 7205.1201) while the CSV holds the same figures rounded to the
  two decimals the printed yearbook shows (7205.12). When the CSV value equals the yearbook
  value rounded to two decimals, the yearbook value is kept and the pair is recorded in the
  table ``pub_region_budget_reconciliation``; any other difference raises ``ValueError``
  naming the cell. Two yearbook files that disagree on a cell also raise.
* Item names are kept as each year's yearbook prints them (the 2019 table calls 215
  '资源勘探信息等支出', later years '资源勘探工业信息等支出'); no cross-year renaming here.
* The revenue table's items are hierarchical (税收收入 ⊃ 国内增值税 …, 非税收入 ⊃ 专项收入 …); they are
  stored flat, one row per published column, so do not sum all items of a region.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Iterable, Sequence

import duckdb
import pandas as pd

from warehouse.paths import YEARBOOK_DIR

TABLE = "pub_region_budget"
RECONCILIATION_TABLE = "pub_region_budget_reconciliation"
DEFAULT_PASSWORD = "VelvetSweatshop"  # Excel's built-in "read-only" encryption password
TOTAL_REGION = "地方合计"
DIRECTIONS = ("收入", "支出")

# Province short names exactly as the yearbook prints them (without the inner spaces).
REGIONS: tuple[str, ...] = (
    "北京", "天津", "河北", "山西", "内蒙古", "辽宁", "吉林", "黑龙江", "上海", "江苏",
    "浙江", "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "广西",
    "海南", "重庆", "四川", "贵州", "云南", "西藏", "陕西", "甘肃", "青海", "宁夏", "新疆",
)
_TOTAL_ALIASES = {"地方合计", "全国", "全国合计", "全国总计", "合计", "总计", "地方总计", "各地区合计"}
_FULL_NAME_SUFFIXES = (
    "壮族自治区", "回族自治区", "维吾尔自治区", "自治区", "省", "市",
)
_HEADER_ANCHORS = {"地区", "省份", "地区名称", "省区市", "省(区、市)", "省(自治区、直辖市)", "省、自治区、直辖市"}
_EMPTY_MARKERS = {"", "-", "--", "—", "——", "－", "…", "……", "...", "/", "NA", "N/A", "nan"}

# The long CSV's item labels -> the yearbook table 7-6's own item names.
CSV_ITEM_MAP = {
    "合计": "地方一般公共预算支出",
    "教育": "教育支出",
    "科学技术": "科学技术支出",
    "农林水": "农林水支出",
}
CSV_COLUMNS = ("province", "year", "item", "value")

_CJK = re.compile(r"[\u3400-\u9fff]")
_WS = re.compile(r"[\s\u3000\u00a0\u2002\u2003\u2009\u200b\ufeff]+")
_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z\s.,'’&\-]*")
_UNIT = re.compile(r"^(单位[:：]?.*|\(?100\s*million\s*yuan\)?|\(?10\s*thousand\s*yuan\)?)$", re.I)
_TABLE_NO = re.compile(r"^\s*(\d{1,2})\s*[-－—–]\s*(\d{1,2})(?!\d)")
_YEAR_IN_TITLE = re.compile(r"((?:19|20)\d{2})\s*年|[(（]\s*((?:19|20)\d{2})\s*[)）]")
_YEAR_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class YearbookRow:
    year: int
    region: str
    direction: str
    item: str
    value_yi: float
    source_table: str

    @property
    def key(self) -> tuple[int, str, str, str]:
        return (self.year, self.region, self.direction, self.item)


# --------------------------------------------------------------------------- text helpers
def _squash(text: str) -> str:
    """Remove every kind of whitespace (ASCII, full-width, nbsp, line breaks)."""
    return _WS.sub("", text)


def _chinese_part(text: str) -> str:
    """The Chinese label of a bilingual cell: keep lines with CJK characters, drop Latin runs."""
    lines = [ln for ln in _LINE_BREAK.split(text) if _CJK.search(ln)]
    return _squash(_LATIN_RUN.sub("", "".join(lines)))


def normalize_item(text: str) -> str:
    """'公    共' + '安全支出' -> '公共安全支出'; '国有资源\\r\\n（资产）有偿…' -> '国有资源(资产)有偿…'."""
    name = _chinese_part(text).replace("（", "(").replace("）", ")")
    name = re.sub(r"^(其中[:：]?|#+|＃+)", "", name)
    return name


def normalize_region(text: object) -> str | None:
    """Map a region label to the yearbook's short name, '地方合计' for the total row, else None."""
    if not isinstance(text, str):
        return None
    name = _squash(_LATIN_RUN.sub("", text))
    if not name:
        return None
    if name in _TOTAL_ALIASES:
        return TOTAL_REGION
    if name in REGIONS:
        return name
    for suffix in _FULL_NAME_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in REGIONS:
            return name[: -len(suffix)]
    return None


def _has_cjk(value: object) -> bool:
    return isinstance(value, str) and bool(_CJK.search(value))


def _is_unit(value: object) -> bool:
    return isinstance(value, str) and bool(_UNIT.match(value.strip()))


def _parse_value(value: object, where: str) -> float | None:
    """A data cell -> float (exactly as stored) or None for an empty / not-applicable cell."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"无法识别数值：{where} 是逻辑值 {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = _squash(str(value)).replace(",", "").replace("，", "")
    if text in _EMPTY_MARKERS:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"无法识别数值：{where} 的内容是 {value!r}") from None


# --------------------------------------------------------------------------- file -> grids
@dataclass
class _Grid:
    """One sheet as a rectangular list of rows; cells are None, str or float."""

    name: str
    cells: list[list[object]]
    # merged ranges as (row_lo, row_hi, col_lo, col_hi), hi exclusive (xlrd convention)
    merges: list[tuple[int, int, int, int]]

    def transposed(self) -> "_Grid":
        ncols = max((len(r) for r in self.cells), default=0)
        rows = [r + [None] * (ncols - len(r)) for r in self.cells]
        cells = [list(col) for col in zip(*rows)] if rows else []
        return _Grid(self.name, cells, [(c0, c1, r0, r1) for r0, r1, c0, c1 in self.merges])


def _decrypt_if_needed(data: bytes, name: str) -> bytes:
    import msoffcrypto
    from msoffcrypto.exceptions import DecryptionError, InvalidKeyError

    try:
        office = msoffcrypto.OfficeFile(io.BytesIO(data))
        encrypted = office.is_encrypted()
    except Exception:  # not an Office container msoffcrypto understands: let the reader say why
        return data
    if not encrypted:
        return data
    try:
        office.load_key(password=DEFAULT_PASSWORD)
        out = io.BytesIO()
        office.decrypt(out)
    except (InvalidKeyError, DecryptionError) as exc:
        raise ValueError(
            f"无法解密 {name}：文件受密码保护，且密码不是 Excel 默认的只读密码 {DEFAULT_PASSWORD}（{exc}）"
        ) from exc
    except Exception as exc:
        raise ValueError(f"无法读取 {name}：加密文件已损坏或被截断，无法解密（{type(exc).__name__}: {exc}）") from exc
    return out.getvalue()


def _xls_grids(data: bytes, name: str) -> list[_Grid]:
    import xlrd

    log = io.StringIO()  # xlrd prints warnings about damaged files to stdout by default
    try:
        try:
            book = xlrd.open_workbook(file_contents=data, formatting_info=True, logfile=log)
        except NotImplementedError:  # formatting_info unsupported for this file
            book = xlrd.open_workbook(file_contents=data, logfile=log)
    except Exception as exc:
        raise ValueError(
            f"无法读取 {name}：文件已损坏、被截断或不是 Excel 97-2003 (.xls) 工作簿（{type(exc).__name__}: {exc}）"
        ) from exc
    grids = []
    for sheet in book.sheets():
        rows: list[list[object]] = []
        for r in range(sheet.nrows):
            row: list[object] = []
            for c in range(sheet.ncols):
                cell = sheet.cell(r, c)
                if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                    row.append(None)
                elif cell.ctype == xlrd.XL_CELL_NUMBER:
                    row.append(float(cell.value))
                elif cell.ctype == xlrd.XL_CELL_TEXT:
                    row.append(cell.value if cell.value.strip() else None)
                elif cell.ctype == xlrd.XL_CELL_ERROR:
                    row.append(f"#ERROR{cell.value}")
                else:  # dates / booleans do not belong in these tables; keep them visible
                    row.append(cell.value)
            rows.append(row)
        grids.append(_Grid(sheet.name, rows, list(getattr(sheet, "merged_cells", []) or [])))
    return grids


def _xlsx_grids(data: bytes, name: str) -> list[_Grid]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    except Exception as exc:
        raise ValueError(
            f"无法读取 {name}：文件已损坏、被截断或不是 Excel (.xlsx) 工作簿（{type(exc).__name__}: {exc}）"
        ) from exc
    grids = []
    for ws in book.worksheets:
        rows: list[list[object]] = []
        for row in ws.iter_rows(values_only=True):
            out: list[object] = []
            for v in row:
                if isinstance(v, str):
                    out.append(v if v.strip() else None)
                elif isinstance(v, (int, float)) and not isinstance(v, bool):
                    out.append(float(v))
                else:
                    out.append(v)
            rows.append(out)
        merges = [
            (m.min_row - 1, m.max_row, m.min_col - 1, m.max_col) for m in ws.merged_cells.ranges
        ]
        grids.append(_Grid(ws.title, rows, merges))
    return grids


def _read_grids(path: Path) -> list[_Grid]:
    name = path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"无法读取 {name}：{exc}") from exc
    if not data:
        raise ValueError(f"无法读取 {name}：文件是空的")
    data = _decrypt_if_needed(data, name)
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return _xls_grids(data, name)
    if data[:4] == b"PK\x03\x04":
        return _xlsx_grids(data, name)
    raise ValueError(f"无法读取 {name}：文件已损坏或不是 Excel 工作簿（.xls / .xlsx），文件头为 {data[:8]!r}")


# --------------------------------------------------------------------------- grid -> rows
@dataclass
class _Block:
    """One stacked table on a sheet: item names per column, data rows, title text above it."""

    items: dict[int, str]  # column -> item name
    data_rows: list[int]
    region_col: int
    header_rows: list[int]


def _cell(grid: _Grid, r: int, c: int) -> object:
    row = grid.cells[r]
    return row[c] if c < len(row) else None


def _region_counts(grid: _Grid) -> tuple[dict[int, int], dict[int, int]]:
    by_col: dict[int, int] = {}
    by_row: dict[int, int] = {}
    for r, row in enumerate(grid.cells):
        for c, v in enumerate(row):
            if normalize_region(v):
                by_col[c] = by_col.get(c, 0) + 1
                by_row[r] = by_row.get(r, 0) + 1
    return by_col, by_row


def _row_has_header_text(grid: _Grid, r: int, region_col: int) -> bool:
    return any(
        _has_cjk(v) and not _is_unit(v)
        for c, v in enumerate(grid.cells[r])
        if c != region_col
    )


def _find_blocks(grid: _Grid, region_col: int, where: str) -> list[_Block]:
    data_rows = [r for r in range(len(grid.cells)) if normalize_region(_cell(grid, r, region_col))]
    runs: list[list[int]] = []
    for r in data_rows:
        if runs:
            prev = runs[-1][-1]
            between = range(prev + 1, r)
            for x in between:
                _check_not_unknown_data_row(grid, x, region_col, where)
            if not any(any(_has_cjk(v) for v in grid.cells[x]) for x in between):
                runs[-1].append(r)
                continue
        runs.append([r])

    # horizontally merged cells spanning several columns are group labels (e.g. '税收收入' over its 税种)
    group_cells: dict[tuple[int, int], tuple[int, int]] = {}
    for r0, r1, c0, c1 in grid.merges:
        if c1 - c0 > 1:
            group_cells[(r0, c0)] = (c0, c1)

    blocks = []
    for run in runs:
        first = run[0]
        # walk up from the first data row: skip spacer / English-only rows, then collect header rows
        r = first - 1
        while r >= 0 and not _row_has_header_text(grid, r, region_col):
            if any(_is_unit(v) for v in grid.cells[r]) or normalize_region(_cell(grid, r, region_col)):
                break
            r -= 1
        header_rows: list[int] = []
        while r >= 0 and _row_has_header_text(grid, r, region_col) and len(header_rows) < 6:
            header_rows.insert(0, r)
            anchor = _cell(grid, r, region_col)
            if isinstance(anchor, str) and normalize_item(anchor) in _HEADER_ANCHORS:
                break
            r -= 1
        if not header_rows:
            raise ValueError(f"无法识别表头：{where} 第{first + 1}行的数据上方没有找到指标名称行")

        ncols = max(len(grid.cells[x]) for x in header_rows + run)
        names: dict[int, list[str]] = {}
        groups: dict[int, str] = {}
        for hr in header_rows:
            for c in range(ncols):
                if c == region_col:
                    continue
                v = _cell(grid, hr, c)
                if (hr, c) in group_cells:
                    c0, c1 = group_cells[(hr, c)]
                    label = normalize_item(v) if isinstance(v, str) else ""
                    for gc in range(c0, c1):
                        groups[gc] = label
                    continue
                if isinstance(v, str) and not _is_unit(v):
                    part = normalize_item(v)
                    if part:
                        names.setdefault(c, []).append(part)
        items: dict[int, str] = {}
        for c in range(ncols):
            if c == region_col:
                continue
            name = "".join(names.get(c, []))
            if name in {"小计", "合计", "计"} and groups.get(c):
                name = groups[c]
            values = [_cell(grid, dr, c) for dr in run]
            has_number = any(
                isinstance(v, float) or (isinstance(v, str) and _parse_number_or_none(v) is not None)
                for v in values
            )
            has_value = any(
                v is not None and not (isinstance(v, str) and _squash(v) in _EMPTY_MARKERS) for v in values
            )
            if name and has_value:
                items[c] = name
            elif has_number:
                raise ValueError(
                    f"无法识别表头：{where} 第{c + 1}列（第{first + 1}行起）有数值但上方没有指标名称"
                )
        if not items:
            raise ValueError(f"无法识别表头：{where} 第{header_rows[0] + 1}行附近没有找到任何有数据的指标")
        seen: dict[str, int] = {}
        for c, name in items.items():
            if name in seen:
                raise ValueError(f"无法识别表头：{where} 指标「{name}」出现在第{seen[name] + 1}列和第{c + 1}列")
            seen[name] = c
        blocks.append(_Block(items, run, region_col, header_rows))

    # a labelled row with numbers that is not a province (e.g. '新疆生产建设兵团') must not vanish silently
    used = {r for b in blocks for r in b.data_rows + b.header_rows}
    for r in range(len(grid.cells)):
        if r not in used:
            _check_not_unknown_data_row(grid, r, region_col, where)
    return blocks


def _check_not_unknown_data_row(grid: _Grid, r: int, region_col: int, where: str) -> None:
    label = _cell(grid, r, region_col)
    if not _has_cjk(label) or normalize_region(label):
        return
    if any(
        isinstance(v, float) or (isinstance(v, str) and _parse_number_or_none(v) is not None)
        for c, v in enumerate(grid.cells[r]) if c != region_col
    ):
        raise ValueError(
            f"无法识别地区：{where} 第{r + 1}行「{_squash(str(label))}」有数值，但不是省级地区名称或合计行"
        )


def _parse_number_or_none(text: str) -> float | None:
    t = _squash(text).replace(",", "")
    if t in _EMPTY_MARKERS:
        return None
    try:
        return float(t)
    except ValueError:
        return None


def _orient(grid: _Grid) -> tuple[_Grid, int] | None:
    """Return the grid with regions as rows, and the region column; None if no region table."""
    by_col, by_row = _region_counts(grid)
    best_col = max(by_col.values(), default=0)
    best_row = max(by_row.values(), default=0)
    if max(best_col, best_row) < 3:
        return None
    if best_row > best_col:
        grid = grid.transposed()
        by_col, _ = _region_counts(grid)
    region_col = min(c for c, n in by_col.items() if n == max(by_col.values()))
    return grid, region_col


def _title_text(grid: _Grid, block: _Block) -> list[str]:
    """Text above the block's header, plus header-row cells that are not item names (a title
    that ends up beside the header, as in a transposed table)."""
    texts = []
    for r in range(block.header_rows[0]):
        texts += [v for v in grid.cells[r] if isinstance(v, str) and v.strip()]
    for r in block.header_rows:
        texts += [
            v for c, v in enumerate(grid.cells[r])
            if isinstance(v, str) and v.strip() and c != block.region_col and c not in block.items
        ]
    return texts


def _detect_year(titles: Sequence[str], file_name: str) -> int:
    years = set()
    for t in titles:
        for m in _YEAR_IN_TITLE.finditer(_squash(t)):
            years.add(int(m.group(1) or m.group(2)))
    if len(years) == 1:
        return years.pop()
    if len(years) > 1:
        raise ValueError(f"无法识别年份：{file_name} 的标题里出现了多个年份 {sorted(years)}")
    found = {int(y) for y in _YEAR_IN_NAME.findall(Path(file_name).stem)}
    if len(found) == 1:
        return found.pop()
    raise ValueError(f"无法识别年份：{file_name} 的标题和文件名里都没有唯一的年份")


def _direction_from_items(items: Iterable[str]) -> str | None:
    names = list(items)
    spend = sum(n.endswith("支出") for n in names)
    income = sum("收入" in n for n in names)
    if spend and not income:
        return "支出"
    if income and not spend:
        return "收入"
    return None


def _detect_direction(titles: Sequence[str], items: Sequence[str], file_name: str) -> str:
    found = set()
    for t in titles:
        s = _squash(t)
        if "收入" in s:
            found.add("收入")
        if "支出" in s:
            found.add("支出")
    from_items = _direction_from_items(items)
    if len(found) == 1:
        direction = found.pop()
        if from_items and from_items != direction:
            raise ValueError(
                f"无法识别收支方向：{file_name} 标题是「{direction}」表，但指标名称看起来是「{from_items}」"
            )
        return direction
    if from_items:
        return from_items
    raise ValueError(f"无法识别收支方向：{file_name} 的标题和指标名称都不能判断是收入表还是支出表")


def _detect_table_no(titles: Sequence[str], file_name: str) -> str:
    for t in titles:
        m = _TABLE_NO.match(t)
        if m:
            return f"{int(m.group(1))}-{int(m.group(2))}"
    m = _TABLE_NO.match(Path(file_name).name)
    if m:
        return f"{int(m.group(1))}-{int(m.group(2))}"
    return Path(file_name).name


def _rows_from_grids(grids: Sequence[_Grid], file_name: str) -> list[YearbookRow]:
    """Core of :func:`read_yearbook_table`, on already-read sheets (also used by tests)."""
    parsed: list[tuple[_Grid, list[_Block]]] = []
    titles: list[str] = []
    for raw in grids:
        oriented = _orient(raw)
        if oriented is None:
            continue  # e.g. the 'CNKI' sheet holding only a URL
        grid, region_col = oriented
        where = f"{file_name} 工作表「{raw.name}」"
        blocks = _find_blocks(grid, region_col, where)
        if blocks:
            titles += _title_text(grid, blocks[0])
            parsed.append((grid, blocks))
    if not parsed:
        raise ValueError(
            f"无法识别表头：{file_name} 中没有找到分地区数据表（未找到省份名称所在的行或列）"
        )
    all_items = [name for _, blocks in parsed for b in blocks for name in b.items.values()]
    year = _detect_year(titles, file_name)
    direction = _detect_direction(titles, all_items, file_name)
    source = _detect_table_no(titles, file_name)

    out: list[YearbookRow] = []
    seen: dict[tuple[str, str], float] = {}
    for grid, blocks in parsed:
        for block in blocks:
            for r in block.data_rows:
                region = normalize_region(_cell(grid, r, block.region_col))
                assert region is not None
                for c, item in block.items.items():
                    where = f"{file_name} 「{grid.name}」 {region} {item}（第{r + 1}行第{c + 1}列）"
                    value = _parse_value(_cell(grid, r, c), where)
                    if value is None:
                        continue
                    key = (region, item)
                    if key in seen:
                        if seen[key] != value:
                            raise ValueError(
                                f"数据冲突：{file_name} 中 {year}年 {region} {item} 出现两次且数值不同："
                                f"{seen[key]!r} 与 {value!r}"
                            )
                        continue
                    seen[key] = value
                    out.append(YearbookRow(year, region, direction, item, value, source))
    if not out:
        raise ValueError(f"无法识别表头：{file_name} 中找到了地区，但没有读到任何数值")
    return out


def read_yearbook_table(path: Path) -> list[YearbookRow]:
    """Read one 分地区 table (7-5 revenue or 7-6 expenditure, any year) into rows.

    Raises ``ValueError`` with a Chinese message (e.g. "无法识别表头：…", "无法读取 …") when the
    file cannot be read or its layout cannot be recognised.
    """
    path = Path(path)
    return _rows_from_grids(_read_grids(path), path.name)


def read_long_csv(path: Path) -> list[YearbookRow]:
    """Read PublicBudget_expenditure_2010_2023_long.csv (province, year, item, value, units, variables).

    '全国' is the yearbook's '地方合计' row; items 合计/教育/科学技术/农林水 become table 7-6's own
    names (see ``CSV_ITEM_MAP``); the value is kept exactly (``float`` of the text).
    """
    path = Path(path)
    name = path.name
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"无法读取 {name}：{exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"无法识别表头：{name} 缺少列 {missing}（应有 {list(CSV_COLUMNS)}）")
    out: list[YearbookRow] = []
    seen: set[tuple] = set()
    for lineno, rec in enumerate(reader, start=2):
        where = f"{name} 第{lineno}行"
        unit = (rec.get("units") or "亿元").strip()
        if unit != "亿元":
            raise ValueError(f"无法识别单位：{where} 的单位是「{unit}」，应为亿元")
        province = (rec["province"] or "").strip()
        region = normalize_region(province)
        if region is None:
            raise ValueError(f"无法识别地区：{where} 的地区是「{province}」")
        raw_item = _squash(rec["item"] or "")
        if raw_item not in CSV_ITEM_MAP:
            raise ValueError(f"无法识别指标：{where} 的指标是「{raw_item}」（可识别：{list(CSV_ITEM_MAP)}）")
        try:
            year = int(_squash(rec["year"] or ""))
        except ValueError:
            raise ValueError(f"无法识别年份：{where} 的年份是「{rec['year']}」") from None
        value = _parse_value(rec["value"], where)
        if value is None:
            continue
        row = YearbookRow(year, region, "支出", CSV_ITEM_MAP[raw_item], value, name)
        if row.key in seen:
            raise ValueError(f"数据冲突：{where} 重复出现 {year}年 {region} {row.item}")
        seen.add(row.key)
        out.append(row)
    if not out:
        raise ValueError(f"无法识别表头：{name} 没有任何数据行")
    return out


# --------------------------------------------------------------------------- merge + load
def _is_csv_source(source: str) -> bool:
    return source.lower().endswith(".csv")


def _rounds_to(precise: float, coarse: float, places: int = 2) -> bool:
    """True if ``coarse`` is ``precise`` rounded to ``places`` decimals (half-up or half-even)."""
    q = Decimal(1).scaleb(-places)
    d = Decimal(repr(precise))
    return any(float(d.quantize(q, rounding=mode)) == coarse for mode in (ROUND_HALF_UP, ROUND_HALF_EVEN))


def _cell_name(key: tuple[int, str, str, str]) -> str:
    year, region, direction, item = key
    return f"{year}年 {region} {direction} {item}"


_RECON_REASON = "年鉴文件保留了更多位小数，CSV 为其四舍五入到 2 位小数的结果；保留年鉴文件数值"


def _merge(
    existing: dict[tuple, YearbookRow], new: Iterable[YearbookRow]
) -> tuple[dict[tuple, YearbookRow], list[tuple]]:
    """Merge ``new`` into ``existing`` (a yearbook file's value wins over the CSV's).

    Returns the rows to write (new or changed) and reconciliation records. Raises on any
    disagreement that is not "CSV = yearbook value rounded to 2 decimals".
    """
    changes: dict[tuple, YearbookRow] = {}
    recon: list[tuple] = []
    for row in new:
        key = row.key
        old = changes.get(key) or existing.get(key)
        if old is None:
            changes[key] = row
            continue
        old_csv, new_csv = _is_csv_source(old.source_table), _is_csv_source(row.source_table)
        if old.value_yi == row.value_yi:
            if old_csv and not new_csv:  # same figure: credit the yearbook table
                changes[key] = row
            continue
        if old_csv != new_csv:
            book, other = (row, old) if old_csv else (old, row)
            if _rounds_to(book.value_yi, other.value_yi):
                if book is row:  # replace the CSV's rounded figure by the yearbook's
                    changes[key] = row
                recon.append(
                    (*key, book.value_yi, book.source_table, other.value_yi, other.source_table, _RECON_REASON)
                )
                continue
        raise ValueError(
            f"数据不一致：{_cell_name(key)}：{old.source_table} = {old.value_yi!r}，"
            f"{row.source_table} = {row.value_yi!r}"
        )
    return changes, recon


_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    year INTEGER NOT NULL,
    region VARCHAR NOT NULL,
    direction VARCHAR NOT NULL,
    item VARCHAR NOT NULL,
    value_yi DOUBLE NOT NULL,
    source_table VARCHAR NOT NULL,
    PRIMARY KEY (year, region, direction, item)
);
CREATE TABLE IF NOT EXISTS {RECONCILIATION_TABLE} (
    year INTEGER,
    region VARCHAR,
    direction VARCHAR,
    item VARCHAR,
    kept_value_yi DOUBLE,
    kept_source VARCHAR,
    other_value_yi DOUBLE,
    other_source VARCHAR,
    reason VARCHAR
);
"""


def _frame(rows: Iterable[YearbookRow]) -> pd.DataFrame:
    rows = list(rows)
    return pd.DataFrame(
        {
            "year": pd.Series([r.year for r in rows], dtype="int32"),
            "region": pd.Series([r.region for r in rows], dtype="object"),
            "direction": pd.Series([r.direction for r in rows], dtype="object"),
            "item": pd.Series([r.item for r in rows], dtype="object"),
            "value_yi": pd.Series([r.value_yi for r in rows], dtype="float64"),
            "source_table": pd.Series([r.source_table for r in rows], dtype="object"),
        }
    )


def _existing_rows(con: duckdb.DuckDBPyConnection) -> dict[tuple, YearbookRow]:
    got = con.execute(
        f"SELECT year, region, direction, item, value_yi, source_table FROM {TABLE}"
    ).fetchall()
    return {(y, r, d, i): YearbookRow(y, r, d, i, v, s) for y, r, d, i, v, s in got}


def _write(con: duckdb.DuckDBPyConnection, changes: dict[tuple, YearbookRow], recon: list[tuple]) -> None:
    if changes:
        df = _frame(changes.values())
        con.register("_yearbook_new_rows", df)
        try:
            con.execute(
                f"""DELETE FROM {TABLE} t USING _yearbook_new_rows n
                    WHERE t.year = n.year AND t.region = n.region
                      AND t.direction = n.direction AND t.item = n.item"""
            )
            con.execute(
                f"""INSERT INTO {TABLE}
                    SELECT CAST(year AS INTEGER), region, direction, item,
                           CAST(value_yi AS DOUBLE), source_table
                    FROM _yearbook_new_rows"""
            )
        finally:
            con.unregister("_yearbook_new_rows")
    if recon:
        con.executemany(
            f"INSERT INTO {RECONCILIATION_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", recon
        )


def yearbook_files(data_dir: Path = YEARBOOK_DIR) -> list[Path]:
    """The yearbook tables shipped in ``data_dir/raw`` (.xls / .xlsx), sorted by name."""
    raw = Path(data_dir) / "raw"
    return sorted(p for p in raw.iterdir() if p.suffix.lower() in {".xls", ".xlsx"} and p.is_file())


def csv_files(data_dir: Path = YEARBOOK_DIR) -> list[Path]:
    return sorted(p for p in Path(data_dir).glob("*.csv") if p.is_file())


def load_yearbook(con: duckdb.DuckDBPyConnection, data_dir: Path = YEARBOOK_DIR) -> int:
    """(Re)create ``pub_region_budget`` from every yearbook file and CSV in ``data_dir``.

    Yearbook tables are read first; CSV rows then fill the cells no yearbook table gives
    (e.g. 2010–2018) and are checked against the ones it does (see module docstring).
    The table (and ``pub_region_budget_reconciliation``) is rebuilt from scratch.
    Returns the number of rows in ``pub_region_budget``.
    """
    data_dir = Path(data_dir)
    books = yearbook_files(data_dir)
    if not books:
        raise ValueError(f"没有找到年鉴文件：{data_dir / 'raw'} 下没有 .xls / .xlsx 文件")
    merged: dict[tuple, YearbookRow] = {}
    recon: list[tuple] = []
    for path in books:
        changes, rec = _merge(merged, read_yearbook_table(path))
        merged.update(changes)
        recon += rec
    for path in csv_files(data_dir):
        changes, rec = _merge(merged, read_long_csv(path))
        merged.update(changes)
        recon += rec

    con.begin()
    try:
        con.execute(f"DROP TABLE IF EXISTS {TABLE}; DROP TABLE IF EXISTS {RECONCILIATION_TABLE};")
        con.execute(_DDL)
        ordered = dict(sorted(merged.items(), key=lambda kv: _sort_key(kv[0])))
        _write(con, ordered, recon)
        con.commit()
    except Exception:
        con.rollback()
        raise
    return con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]


def _sort_key(key: tuple[int, str, str, str]) -> tuple:
    year, region, direction, item = key
    region_order = -1 if region == TOTAL_REGION else REGIONS.index(region)
    return (year, direction, region_order, item)


def load_yearbook_file(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Add one more yearbook table (e.g. next year's 7-6) to ``pub_region_budget``.

    Same merge rules as :func:`load_yearbook`: new cells are added; a cell already there with
    the same value is kept once (credited to the yearbook table if it came from the CSV); a
    CSV cell that is this file's value rounded to 2 decimals is replaced and recorded; any other
    difference raises ``ValueError`` naming the cell. The file is fully parsed and checked
    before anything is written, and the write is one transaction, so on any error the table
    is unchanged. Returns the number of rows added or updated.
    """
    rows = read_yearbook_table(Path(path))  # raises before touching the database
    con.begin()
    try:
        con.execute(_DDL)
        changes, recon = _merge(_existing_rows(con), rows)
        _write(con, changes, recon)
        con.commit()
    except Exception:
        con.rollback()
        raise
    return len(changes)
