"""Load a user's own CSV / Excel file into the warehouse, checked against a catalogue, atomically.

``load_user_file(path, table, catalogue=None, db_path=None, sheet=None, progress=print)``

1. checks the table name (ASCII identifier, not a DuckDB reserved word, not a contract table of
   the demo warehouse, not a ``meta_*`` table, not a view);
2. reads the user's catalogue YAML (same format as ``semantic_layer/catalogue/tables.yaml``, plus
   optional ``models``/``metrics``/``dimensions``; columns may declare ``type`` and ``required``);
3. reads the file: CSV (UTF-8, UTF-8 with BOM, UTF-16 with BOM, GBK/GB18030; delimiter sniffed
   among ``, \\t ; |``) or Excel (.xlsx via openpyxl, .xls via xlrd, files "protected" with
   Excel's default password VelvetSweatshop decrypted with msoffcrypto-tool).  The format is
   decided by the file's content, not its extension;
4. converts every cell to the column's type (declared, or inferred), collecting problems with
   their row and column — up to 20 are reported in one :class:`LoadError`;
5. copies the warehouse to a temporary file in the same folder, loads the table into the copy
   with one ``CREATE OR REPLACE TABLE … AS SELECT … FROM <DataFrame>``, dry-runs the catalogue's
   metric and dimension expressions against it, checkpoints and ``os.replace``s the copy onto
   the warehouse; the catalogue entry is saved to ``<db folder>/catalogue.d/<table>.yaml``.

On any error the warehouse file is left byte-for-byte unchanged and the temporary files are
removed.  Loads into the same warehouse are serialised with a lock file.
"""
from __future__ import annotations

import copy
import csv
import datetime as _dt
import hashlib
import io
import json
import os
import re
import shutil
import unicodedata
import uuid
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from warehouse import paths

__all__ = ["LoadError", "load_user_file", "user_catalogue_dir", "contract_tables",
           "merged_catalogue_mapping", "load_merged_catalogue"]

MAX_PROBLEMS = 20
MAX_PER_COLUMN = 5
SHIPPED_CATALOGUE_DIR = Path(__file__).resolve().parents[1] / "semantic_layer" / "catalogue"
SHIPPED_TABLES_YAML = SHIPPED_CATALOGUE_DIR / "tables.yaml"
USER_CATALOGUE_DIRNAME = "catalogue.d"
META_TABLE = "meta_user_tables"

TYPES = ("INTEGER", "DOUBLE", "VARCHAR", "DATE", "BOOLEAN")
SQL_TYPES = {"INTEGER": "BIGINT", "DOUBLE": "DOUBLE", "VARCHAR": "VARCHAR", "DATE": "DATE", "BOOLEAN": "BOOLEAN"}
TYPE_ALIASES = {
    "INTEGER": "INTEGER", "INT": "INTEGER", "BIGINT": "INTEGER", "INT64": "INTEGER", "SMALLINT": "INTEGER",
    "DOUBLE": "DOUBLE", "FLOAT": "DOUBLE", "REAL": "DOUBLE", "DECIMAL": "DOUBLE", "NUMERIC": "DOUBLE",
    "NUMBER": "DOUBLE",
    "VARCHAR": "VARCHAR", "TEXT": "VARCHAR", "STRING": "VARCHAR", "CHAR": "VARCHAR", "STR": "VARCHAR",
    "DATE": "DATE",
    "BOOLEAN": "BOOLEAN", "BOOL": "BOOLEAN",
}
SENSITIVITIES = ("normal", "sensitive", "sensitive_if_individual")
USER_TOP_KEYS = ("as_of", "tables", "models", "metrics", "dimensions")

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_IDENT = 63


# --------------------------------------------------------------------------------------- errors
class LoadError(ValueError):
    """Everything that is wrong with one load, in Chinese; the CLI prints it after ``错误：``."""

    def __init__(self, problems: Iterable[str] | str, *, title: str | None = None, more: int = 0,
                 total: int | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.more = more
        if len(self.problems) == 1 and not more and not title:
            text = self.problems[0]
        else:
            n = total if total is not None else len(self.problems) + more
            head = title or f"发现 {n:,} 处问题，未导入"
            lines = [f"{head}（数据仓库未改动）："] + [f"  {i}. {p}" for i, p in enumerate(self.problems, 1)]
            if more:
                lines.append(f"  ……另有 {more:,} 处问题未列出（只列出前 {len(self.problems)} 处）")
            text = "\n".join(lines)
        super().__init__(text)


class _Problems:
    """Collects problems; lists at most ``MAX_PROBLEMS`` (sorted by row, then column) and at most
    ``MAX_PER_COLUMN`` cell problems per column, and counts the rest."""

    def __init__(self) -> None:
        self.items: list[tuple[tuple[int, int, int], str]] = []
        self.more = 0
        self.per_column: dict[str, int] = {}
        self._seq = 0

    def add(self, text: str, column: str | None = None, row: int = 0, col: int = 0) -> None:
        self._seq += 1
        if column is not None:
            n = self.per_column[column] = self.per_column.get(column, 0) + 1
            if n > MAX_PER_COLUMN:
                return  # summarised in raise_if_any()
        elif len(self.items) >= 4 * MAX_PROBLEMS:
            self.more += 1
            return
        self.items.append(((row, col, self._seq), text))

    def __bool__(self) -> bool:
        return bool(self.items or self.more)

    def raise_if_any(self, title: str | None = None) -> None:
        details = [text for _, text in sorted(self.items)]
        summaries = [(n - MAX_PER_COLUMN, f"列“{column}”另有 {n - MAX_PER_COLUMN:,} 个值有同样的问题")
                     for column, n in self.per_column.items() if n > MAX_PER_COLUMN]
        listed = details[:MAX_PROBLEMS - min(len(summaries), MAX_PROBLEMS // 2)]
        room = MAX_PROBLEMS - len(listed)
        covered = len(listed) + sum(k for k, _ in summaries[:room])
        listed += [text for _, text in summaries[:room]]
        if listed or self.more:
            raise LoadError(listed, title=title, more=self._seq - covered, total=self._seq)


def _row(n: int) -> str:
    return f"第 {n:,} 行"


def _show(value: Any, limit: int = 30) -> str:
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\n", "⏎")
    return text if len(text) <= limit else text[:limit] + "…"


# ------------------------------------------------------------------------------ public helpers
def user_catalogue_dir(db_path: Path | str | None = None) -> Path:
    """The folder holding the catalogue entries of user-loaded tables: ``<db folder>/catalogue.d``."""
    db = Path(db_path) if db_path is not None else Path(paths.DEFAULT_DB)
    return db.expanduser().resolve().parent / USER_CATALOGUE_DIRNAME


def contract_tables() -> set[str]:
    """The table names of the demo warehouse's contract (``semantic_layer/catalogue/tables.yaml``)."""
    stamp = tuple((f.name, f.stat().st_mtime_ns) for f in sorted(SHIPPED_CATALOGUE_DIR.glob("*.yaml")))
    data = dict(_shipped_files(stamp)).get(SHIPPED_TABLES_YAML.name) or {}
    return set((data.get("tables") or {}).keys())


def _merge_into(merged: dict[str, Any], data: dict[str, Any]) -> None:
    # the same merge rule as semantic_layer.catalogue.Catalogue.load
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 — a safe loader


def _read_yaml_mapping(file: Path) -> dict[str, Any]:
    return _yaml_load(file.read_text(encoding="utf-8")) or {}


@lru_cache(maxsize=4)
def _shipped_files(stamp: tuple) -> tuple[tuple[str, Any], ...]:
    return tuple((name, _read_yaml_mapping(SHIPPED_CATALOGUE_DIR / name)) for name, _ in stamp)


def _shipped_contents() -> list[dict[str, Any]]:
    """The shipped catalogue files' contents (parsed once per change of the files; fresh copies)."""
    stamp = tuple((f.name, f.stat().st_mtime_ns) for f in sorted(SHIPPED_CATALOGUE_DIR.glob("*.yaml")))
    return [copy.deepcopy(data) for _, data in _shipped_files(stamp)]


def _shipped_merged() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for data in _shipped_contents():
        _merge_into(merged, data)
    return merged


def merged_catalogue_mapping(db_path: Path | str | None = None,
                             override: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The shipped catalogue merged with every ``catalogue.d/*.yaml`` of this warehouse.

    Files are merged in the order ``Catalogue.load(extra=user_catalogue_dir(db))`` would use
    (shipped files sorted, then user files sorted).  ``override`` maps a user file's stem to the
    content to use instead of the file on disk (used to check a load before it is saved).
    """
    merged = _shipped_merged()
    user_dir = user_catalogue_dir(db_path)
    contents: dict[str, dict[str, Any]] = {}
    if user_dir.is_dir():
        for file in sorted(user_dir.glob("*.yaml")):
            contents[file.name] = _read_yaml_mapping(file)
    for stem, data in (override or {}).items():
        contents[f"{stem}.yaml"] = data
    for name in sorted(contents):
        _merge_into(merged, contents[name])
    return merged


def load_merged_catalogue(db_path: Path | str | None = None):
    """A :class:`semantic_layer.catalogue.Catalogue` including the warehouse's user tables."""
    from semantic_layer.catalogue import Catalogue

    return Catalogue.from_mapping(merged_catalogue_mapping(db_path))


# ------------------------------------------------------------------------------ table names
_RESERVED: set[str] | None = None


def _reserved_words() -> set[str]:
    global _RESERVED
    if _RESERVED is None:
        import duckdb

        con = duckdb.connect()
        try:
            _RESERVED = {r[0].lower() for r in con.execute(
                "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'").fetchall()}
        finally:
            con.close()
    return _RESERVED


def _identifier_problem(name: str, what: str) -> str | None:
    if not isinstance(name, str) or not name:
        return f"{what}不能为空"
    if not IDENT_RE.match(name):
        return (f"{what}只能包含字母、数字和下划线，且不能以数字开头（收到：“{_show(name)}”）；"
                f"中文名称请写在数据目录的 label 里")
    if len(name) > MAX_IDENT:
        return f"{what}太长（{len(name)} 个字符，最多 {MAX_IDENT} 个）：“{_show(name)}”"
    if name.lower() in _reserved_words():
        return f"{what}“{name}”是 SQL 保留字，请换一个名字（例如 {name}_1）"
    return None


def _check_table_name(table: str, contract: set[str]) -> None:
    problem = _identifier_problem(table, "表名")
    if problem:
        raise LoadError(problem)
    lower = {t.lower(): t for t in contract}
    if table.lower() in lower:
        raise LoadError(
            f"表“{table}”是演示数据仓库的合同表（见 semantic_layer/catalogue/tables.yaml），"
            f"不能用导入的数据覆盖；请换一个表名，例如 user_{table.lower()}")
    if table.lower().startswith("meta_"):
        raise LoadError(f"表名不能以 meta_ 开头（系统保留）：“{table}”")


# --------------------------------------------------------------------------- value parsing
_FULLWIDTH = str.maketrans({
    **{chr(0xFF10 + i): str(i) for i in range(10)},
    "．": ".", "，": ",", "－": "-", "＋": "+", "（": "(", "）": ")", "％": "%", "−": "-",
    "\u3000": " ", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
})
NULL_TOKENS = {"", "-", "--", "---", "—", "——", "–", "－", "－－", "/", "…", "……",
               "null", "none", "nan", "n/a", "na"}
_NUM_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
_WS = " \t\r\n\u3000\u00a0\ufeff"
_INT64 = 2**63 - 1


class _Bad(Exception):
    """A cell that cannot be converted; the message is the text after ``列“…”：``."""


def _clean_text(value: str) -> str:
    return value.strip(_WS)


def _is_null_token(s: str) -> bool:
    return s.translate(_FULLWIDTH).strip().lower() in NULL_TOKENS


def _number_text(s: str) -> str:
    """Normalise a number written by a person; raise ValueError if it is not one."""
    t = s.translate(_FULLWIDTH).strip()
    negative = False
    if len(t) >= 2 and t[0] == "(" and t[-1] == ")":  # accounting negative: (1,234.5)
        negative, t = True, t[1:-1].strip()
    if t[:1] in ("¥", "￥", "$"):
        t = t[1:].strip()
    elif t[:2] in ("-¥", "-￥", "-$"):
        t = "-" + t[2:].strip()
    if t.endswith("%"):
        t = t[:-1].strip()
    if "," in t:
        if not _THOUSANDS_RE.match(t):
            raise ValueError(s)
        t = t.replace(",", "")
    if not _NUM_RE.match(t):
        raise ValueError(s)
    if negative:
        if t[:1] in "+-":
            raise ValueError(s)
        t = "-" + t
    return t


def _to_integer(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Bad(f"应为整数，但单元格是是/否值“{value}”")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _Bad(f"无法识别的数字“{value}”")
        if not value.is_integer():
            raise _Bad(f"应为整数，但值是“{value:g}”")
        n = int(value)
    elif isinstance(value, str):
        s = _clean_text(value)
        if _is_null_token(s):
            return None
        try:
            d = Decimal(_number_text(s))
        except (ValueError, InvalidOperation):
            raise _Bad(f"无法识别的数字“{_show(s)}”") from None
        if d != d.to_integral_value():
            raise _Bad(f"应为整数，但值是“{_show(s)}”")
        n = int(d)
    elif isinstance(value, (_dt.date, _dt.time)):
        raise _Bad(f"无法识别的数字“{value}”（单元格是日期）")
    else:
        raise _Bad(f"无法识别的数字“{_show(value)}”")
    if abs(n) > _INT64:
        raise _Bad(f"整数超出范围“{_show(value)}”")
    return n


def _to_double(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Bad(f"应为数字，但单元格是是/否值“{value}”")
    if isinstance(value, (int, float)):
        f = float(value)
    elif isinstance(value, str):
        s = _clean_text(value)
        if _is_null_token(s):
            return None
        try:
            f = float(_number_text(s))
        except ValueError:
            raise _Bad(f"无法识别的数字“{_show(s)}”") from None
    elif isinstance(value, (_dt.date, _dt.time)):
        raise _Bad(f"无法识别的数字“{value}”（单元格是日期）")
    else:
        raise _Bad(f"无法识别的数字“{_show(value)}”")
    if f != f or f in (float("inf"), float("-inf")):
        raise _Bad(f"无法识别的数字“{_show(value)}”")
    return f


_DATE_RES = [
    re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?$"),
    re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
]


def _to_date(value: Any) -> _dt.date | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.time() != _dt.time(0):
            raise _Bad(f"应为日期，但值带有时刻“{value}”")
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        s = _clean_text(value)
        if _is_null_token(s):
            return None
        t = s.translate(_FULLWIDTH).strip()
        for rx in _DATE_RES:
            m = rx.match(t)
            if m:
                g = m.groups()
                if len(g) > 3 and any(x and int(x) for x in g[3:]):
                    raise _Bad(f"应为日期，但值带有时刻“{_show(s)}”")
                try:
                    return _dt.date(int(g[0]), int(g[1]), int(g[2]))
                except ValueError:
                    raise _Bad(f"无法识别的日期“{_show(s)}”（没有这一天）") from None
        raise _Bad(f"无法识别的日期“{_show(s)}”（请写成 2025-01-31）")
    raise _Bad(f"无法识别的日期“{_show(value)}”")


_TRUE = {"true", "t", "yes", "y", "1", "是", "√", "✓", "对"}
_FALSE = {"false", "f", "no", "n", "0", "否", "×", "✗", "错"}


def _to_boolean(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        s = _clean_text(value)
        if _is_null_token(s):
            return None
        t = s.lower()
        if t in _TRUE:
            return True
        if t in _FALSE:
            return False
        raise _Bad(f"无法识别的是/否值“{_show(s)}”（可用：是/否、true/false、1/0）")
    raise _Bad(f"无法识别的是/否值“{_show(value)}”")


def _to_varchar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        s = _clean_text(value)
        return s or None
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, _dt.datetime):
        return value.date().isoformat() if value.time() == _dt.time(0) else value.isoformat(sep=" ")
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    return str(value)


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "INTEGER": _to_integer, "DOUBLE": _to_double, "DATE": _to_date, "BOOLEAN": _to_boolean,
    "VARCHAR": _to_varchar,
}

_CODE_NAME_RE = re.compile(r"(_code|_id|_no)$|编码|代码|编号|^code$|^id$", re.IGNORECASE)
_LEADING_ZERO_RE = re.compile(r"^[+-]?0\d")


def _infer_type(values: list[Any], name: str) -> str:
    """Pick the narrowest type every non-empty value converts to (codes stay text)."""
    present = [v for v in values if v is not None and not (isinstance(v, str) and _clean_text(v) == "")
               and not isinstance(v, (_ExcelError, _Uncalculated))]
    if not present:
        return "VARCHAR"
    strings = [_clean_text(v) for v in present if isinstance(v, str)]
    if all(isinstance(v, bool) for v in present) or (
            strings and len(strings) == len(present)
            and all(s.lower() in {"是", "否", "true", "false"} or _is_null_token(s) for s in strings)
            and any(not _is_null_token(s) for s in strings)):
        return "BOOLEAN"
    numeric_ok = not _CODE_NAME_RE.search(name) and not any(
        _LEADING_ZERO_RE.match(s) or (s.isdigit() and len(s) >= 16) for s in strings)
    if numeric_ok:
        for typ in ("INTEGER", "DOUBLE"):
            if _all_convert(present, CONVERTERS[typ]):
                return typ
    if all(isinstance(v, (_dt.date, str)) for v in present) and any(
            isinstance(v, _dt.date) or (isinstance(v, str) and not _clean_text(v).isdigit()) for v in present) \
            and _all_convert(present, _to_date):
        return "DATE"
    return "VARCHAR"


def _all_convert(values: list[Any], fn: Callable[[Any], Any]) -> bool:
    seen: set[Any] = set()
    for v in values:
        key = (type(v), v)
        if key in seen:
            continue
        seen.add(key)
        try:
            fn(v)
        except _Bad:
            return False
    return True


# ------------------------------------------------------------------------------ file reading
@dataclass
class _Raw:
    """A rectangular read of a file: the header row, the data rows and their row numbers."""

    kind: str  # "CSV" | "Excel (.xlsx)" | "Excel (.xls)"
    rows: list[list[Any]]  # every non-empty record, header included, as read
    numbers: list[int]  # row number (1-based, as a spreadsheet shows it) of each record
    notes: list[str] = field(default_factory=list)
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None


_MAGIC_ZIP = b"PK\x03\x04"
_MAGIC_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_EXCEL_DEFAULT_PASSWORD = "VelvetSweatshop"


def _read_file(path: Path, sheet: str | None) -> _Raw:
    if not path.exists():
        raise LoadError(f"找不到文件：{path}")
    if path.is_dir():
        raise LoadError(f"这是一个文件夹，不是数据文件：{path}")
    data = path.read_bytes()
    if not data.strip(b" \t\r\n\x00"):
        raise LoadError(f"文件是空的：{path.name}")
    ext = path.suffix.lower()
    if data.startswith(_MAGIC_OLE):
        data = _decrypt_if_needed(data, path)
    if data.startswith(_MAGIC_ZIP):
        return _read_xlsx(data, path, sheet)
    if data.startswith(_MAGIC_OLE):
        return _read_xls(data, path, sheet)
    head = data[:2048].lstrip().lower()
    if head.startswith(b"%pdf"):
        raise LoadError(f"文件是 PDF，不是 CSV 或 Excel：{path.name}")
    if head.startswith(b"\x1f\x8b") or data.startswith(b"Rar!") or data.startswith(b"7z\xbc\xaf"):
        raise LoadError(f"文件是压缩包，请先解压：{path.name}")
    if head.startswith((b"<html", b"<!doctype html", b"<table", b"<?xml")) or b"<html" in head[:512]:
        raise LoadError(f"文件内容是网页（HTML/XML），不是真正的 Excel 或 CSV（常见于系统导出的“伪 .xls”）："
                        f"{path.name}；请用 Excel 打开后另存为 .xlsx 或 CSV(UTF-8) 再导入")
    raw = _read_csv(data, path)
    if ext in (".xlsx", ".xlsm", ".xls", ".et"):
        raw.notes.append(f"文件扩展名是 {ext}，但内容是文本表格，已按 CSV 读取")
    if sheet:
        raw.notes.append("CSV 文件没有工作表，已忽略 --sheet")
    return raw


def _decrypt_if_needed(data: bytes, path: Path) -> bytes:
    import msoffcrypto

    try:
        office = msoffcrypto.OfficeFile(io.BytesIO(data))
        encrypted = office.is_encrypted()
    except Exception:
        return data  # not an Office file msoffcrypto knows; let the Excel reader judge
    if not encrypted:
        return data
    try:
        office.load_key(password=_EXCEL_DEFAULT_PASSWORD)
        out = io.BytesIO()
        office.decrypt(out)
    except Exception:
        raise LoadError(f"Excel 文件设置了打开密码，无法读取：{path.name}；"
                        "请在 Excel 中去掉密码（文件 → 信息 → 保护工作簿）后另存再导入") from None
    return out.getvalue()


def _pick_sheet(names: list[str], visible: list[str], sheet: str | None, path: Path,
                notes: list[str]) -> str:
    if sheet is not None:
        if sheet in names:
            return sheet
        folded = {n.strip().lower(): n for n in names}
        if sheet.strip().lower() in folded:
            return folded[sheet.strip().lower()]
        raise LoadError(f"工作簿 {path.name} 中没有工作表“{sheet}”（有：{'、'.join(names)}）")
    chosen = (visible or names)[0]
    if len(names) > 1:
        notes.append(f"工作簿有 {len(names)} 个工作表（{'、'.join(names)}），已读取“{chosen}”；"
                     "其他工作表请用 --sheet 指定")
    return chosen


def _read_xlsx(data: bytes, path: Path, sheet: str | None) -> _Raw:
    import zipfile

    import openpyxl

    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except zipfile.BadZipFile:
        raise LoadError(f"Excel 文件已损坏或不完整（可能没有下载完）：{path.name}") from None
    except Exception as e:  # a zip that is not a workbook, or a broken one
        raise LoadError(f"文件无法作为 Excel 工作簿打开：{path.name}（{type(e).__name__}: {_show(str(e), 80)}）") from None
    try:
        names = wb.sheetnames
        visible = [ws.title for ws in wb.worksheets if getattr(ws, "sheet_state", "visible") == "visible"]
        notes: list[str] = []
        name = _pick_sheet(names, visible, sheet, path, notes)
        ws = wb[name]
        if not hasattr(ws, "iter_rows"):
            raise LoadError(f"“{name}”是图表页，不是工作表（可用 --sheet 指定其他工作表）")
        if hasattr(ws, "reset_dimensions"):
            ws.reset_dimensions()  # some writers record a wrong used range
        rows: list[list[Any]] = []
        numbers: list[int] = []
        try:
            formulas = _formula_cells(data, name)
            for cells in ws.iter_rows():
                values = [c.value for c in cells]
                number = next((c.row for c in cells if getattr(c, "row", None) is not None), None)
                if formulas and number is not None:
                    for j, v in enumerate(values):
                        if v is None and (number, j + 1) in formulas:
                            values[j] = _Uncalculated(formulas[(number, j + 1)])
                if not any(v is not None and not (isinstance(v, str) and not _clean_text(v)) for v in values):
                    continue
                rows.append([v if isinstance(v, _Uncalculated) else _xlsx_value(c) for c, v in zip(cells, values)])
                numbers.append(number)
        except LoadError:
            raise
        except Exception as e:
            raise LoadError(f"读取工作表“{name}”失败，文件可能已损坏：{type(e).__name__}: {_show(str(e), 80)}") from None
    finally:
        wb.close()
    return _Raw("Excel (.xlsx)", rows, numbers, notes=notes, sheet=name)


def _xlsx_value(cell) -> Any:
    v = cell.value
    if getattr(cell, "data_type", None) == "e" and isinstance(v, str):
        return _ExcelError(v)
    return v


class _ExcelError(str):
    """An Excel error value such as #DIV/0! (kept as text; never a valid number or date)."""


class _Uncalculated(str):
    """A formula cell whose file holds no calculated value (written by a program, never opened in Excel)."""


def _formula_cells(data: bytes, sheet: str) -> dict[tuple[int, int], str]:
    """(row, column) → formula of every formula cell of ``sheet`` (only when the file has any)."""
    import zipfile

    import openpyxl

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        if not any(b"<f>" in z.read(n) or b"<f " in z.read(n)
                   for n in z.namelist() if n.startswith("xl/worksheets/") and n.endswith(".xml")):
            return {}
    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    try:
        ws = wb[sheet]
        if hasattr(ws, "reset_dimensions"):
            ws.reset_dimensions()
        out = {}
        for cells in ws.iter_rows():
            for c in cells:
                v = getattr(c, "value", None)
                if isinstance(v, str) and v.startswith("=") and getattr(c, "data_type", None) == "f":
                    out[(c.row, c.column)] = v
        return out
    finally:
        wb.close()


def _read_xls(data: bytes, path: Path, sheet: str | None) -> _Raw:
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
    except Exception as e:
        raise LoadError(f"文件无法作为 Excel(.xls) 工作簿打开：{path.name}（{_show(str(e), 80)}）") from None
    try:
        names = book.sheet_names()
        visible = [n for i, n in enumerate(names) if not getattr(book.sheet_by_index(i), "visibility", 0)]
        notes: list[str] = []
        name = _pick_sheet(names, visible, sheet, path, notes)
        sh = book.sheet_by_name(name)
        rows: list[list[Any]] = []
        numbers: list[int] = []
        for r in range(sh.nrows):
            values = []
            for c in sh.row(r):
                if c.ctype == xlrd.XL_CELL_EMPTY or c.ctype == xlrd.XL_CELL_BLANK:
                    values.append(None)
                elif c.ctype == xlrd.XL_CELL_DATE:
                    try:
                        values.append(xlrd.xldate_as_datetime(c.value, book.datemode))
                    except Exception:
                        values.append(c.value)
                elif c.ctype == xlrd.XL_CELL_BOOLEAN:
                    values.append(bool(c.value))
                elif c.ctype == xlrd.XL_CELL_ERROR:
                    values.append(_ExcelError(xlrd.error_text_from_code.get(c.value, "#错误")))
                else:
                    values.append(c.value)
            if any(v is not None and not (isinstance(v, str) and not _clean_text(v)) for v in values):
                rows.append(values)
                numbers.append(r + 1)
    finally:
        book.release_resources()
    return _Raw("Excel (.xls)", rows, numbers, notes=notes, sheet=name)


def _decode(data: bytes, path: Path) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "UTF-8-BOM"
        except UnicodeDecodeError:
            raise LoadError(f"文件编码无法识别：开头是 UTF-8 的 BOM，但内容不是 UTF-8：{path.name}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError:
            raise LoadError(f"文件编码无法识别：开头是 UTF-16 的 BOM，但内容不完整：{path.name}") from None
    sample = data[:65536]
    if b"\x00" in sample:
        # UTF-16 without a BOM (ASCII text with every other byte 0) — otherwise binary
        even, odd = sample[0::2], sample[1::2]
        for enc, zeros in (("utf-16-le", odd), ("utf-16-be", even)):
            if zeros.count(0) > 0.4 * len(zeros):
                try:
                    text = data.decode(enc)
                    if not _looks_binary(text):
                        return text, "UTF-16"
                except UnicodeDecodeError:
                    pass
        raise LoadError(f"文件不是 CSV 文本，也不是可识别的 Excel 工作簿（内容是二进制数据）：{path.name}")
    try:
        text = data.decode("utf-8")
        enc = "UTF-8"
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")
            enc = "GBK"
            if re.search("[\ue000-\uf8ff]", text):  # private-use characters: not really GBK
                raise UnicodeDecodeError("gb18030", b"", 0, 1, "private use")
        except UnicodeDecodeError:
            raise LoadError(f"文件编码无法识别（尝试了 UTF-8、UTF-8-BOM、GBK/GB18030）：{path.name}；"
                            "请用 Excel 或 WPS 另存为“CSV UTF-8（逗号分隔）”后再导入") from None
    if _looks_binary(text):
        raise LoadError(f"文件不是 CSV 文本，也不是可识别的 Excel 工作簿（内容是二进制数据）：{path.name}")
    return text, enc


def _looks_binary(text: str) -> bool:
    sample = text[:65536]
    if not sample:
        return False
    bad = sum(1 for ch in sample if (ord(ch) < 32 and ch not in "\t\r\n\f") or ch == "\ufffd")
    return bad > max(2, len(sample) // 200)


_DELIMITERS = [",", "\t", ";", "|"]
_DELIM_NAMES = {",": "逗号", "\t": "制表符", ";": "分号", "|": "竖线"}


def _sniff_delimiter(text: str) -> str:
    sample = text[:65536]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rfind("\n")]
    best, best_score = ",", (0, 0.0, 0)
    for priority, d in enumerate(_DELIMITERS):
        widths: list[int] = []
        try:
            for i, row in enumerate(csv.reader(io.StringIO(sample, newline=""), delimiter=d)):
                if any(c.strip() for c in row):
                    widths.append(len(row))
                if i >= 200:
                    break
        except csv.Error:
            continue
        if not widths:
            continue
        modal = max(set(widths), key=lambda w: (widths.count(w), w))
        if modal < 2:
            continue
        score = (1, widths.count(modal) / len(widths), modal)
        if score > best_score:
            best, best_score = d, score
    return best


def _read_csv(data: bytes, path: Path) -> _Raw:
    text, encoding = _decode(data, path)
    if not text.strip(_WS):
        raise LoadError(f"文件是空的：{path.name}")
    delimiter = _sniff_delimiter(text)
    csv.field_size_limit(1 << 24)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[list[Any]] = []
    numbers: list[int] = []
    prev_line = 0
    try:
        for row in reader:
            start = prev_line + 1
            prev_line = reader.line_num
            if any(_clean_text(c) for c in row):
                rows.append(row)
                numbers.append(start)
    except csv.Error as e:
        line = prev_line + 1
        if "unexpected end of data" in str(e):
            raise LoadError(f"文件似乎被截断：{_row(line)}开始的带引号字段没有结束（引号未闭合）") from None
        if "field larger than field limit" in str(e):
            raise LoadError(f"文件不像 CSV 表格：{_row(line)}有一个超长字段（可能是二进制文件）：{path.name}") from None
        raise LoadError(f"CSV 格式有误：{_row(line)}附近的引号用法不对（{e}）；"
                        "含逗号或引号的单元格应整体加双引号，单元格内的双引号写成两个") from None
    return _Raw("CSV", rows, numbers, encoding=encoding, delimiter=delimiter)


# ---------------------------------------------------------------------------- table shaping
_NOTE_RE = re.compile(r"^(注|说明|备注|数据来源|资料来源|来源|制表|填报|审核|单位[:：])")
_TOTAL_WORDS = {"合计", "总计", "小计", "全区合计", "总合计", "合 计", "总 计"}


def _norm_name(text: Any) -> str:
    s = "" if text is None else str(text)
    s = unicodedata.normalize("NFKC", s)
    return re.sub(r"\s+", "", s).lower()


def _nonempty(row: list[Any]) -> int:
    return sum(1 for v in row if v is not None and not (isinstance(v, str) and not _clean_text(v)))


def _find_header(raw: _Raw, expected: dict[str, str] | None) -> int:
    """Index into raw.rows of the header row: skips title rows above a table."""
    window = raw.rows[:15]
    if expected:
        scores = [sum(1 for v in row if _norm_name(v) in expected) for row in window]
        if scores and max(scores) > 0:
            return scores.index(max(scores))
    width = max((_nonempty(r) for r in window), default=0)
    if width >= 2:
        for i, row in enumerate(window):
            if _nonempty(row) >= 2:
                return i
    return 0


@dataclass
class _Column:
    index: int  # position in the file (0-based)
    header: str  # as written in the file
    key: str  # warehouse column name
    values: list[Any] = field(default_factory=list)


def _header_text(v: Any) -> str:
    """A header cell as the user wrote it (whitespace collapsed); matching uses _norm_name."""
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return re.sub(r"[\s\u3000]+", " ", str(v)).strip(_WS)


def _shape(raw: _Raw, problems: _Problems, expected: dict[str, str] | None,
           say: Callable[[str], None]) -> tuple[list[str], list[list[Any]], list[int]]:
    """Header, data rows (all of header width) and their row numbers; width problems collected."""
    if not raw.rows:
        raise LoadError("文件中没有任何数据（只有空行）")
    h = _find_header(raw, expected)
    if h:
        say(f"跳过表头前的 {h} 行标题/说明（第 {raw.numbers[0]:,}–{raw.numbers[h - 1]:,} 行）")
    header_row = list(raw.rows[h])
    data = [list(r) for r in raw.rows[h + 1:]]
    numbers = raw.numbers[h + 1:]
    # trailing notes ("注：…", "数据来源：…") below the table
    dropped = []
    while data and _nonempty(data[-1]) == 1 and isinstance(_first_value(data[-1]), str) \
            and _NOTE_RE.match(_clean_text(_first_value(data[-1]))):
        dropped.append(numbers[-1])
        data.pop()
        numbers.pop()
    if dropped:
        say(f"跳过表格下方的说明行（第 {', '.join(f'{n:,}' for n in sorted(dropped))} 行）")
    # trailing header cells that are empty and whose column holds no data are dropped
    width = len(header_row)
    while width and not _header_text(header_row[width - 1]) and not any(
            len(r) >= width and _nonempty([r[width - 1]]) for r in data):
        width -= 1
    header_row = header_row[:width]
    if not width:
        raise LoadError("找不到表头：第一行是空的")
    if not data:
        raise LoadError(f"文件只有表头（{_row(raw.numbers[h])}），没有数据行")
    is_csv = raw.kind == "CSV"
    for i, (row, n) in enumerate(zip(data, numbers)):
        if len(row) > width:
            extra = row[width:]
            if _nonempty(extra):
                hint = "；可能是数字里的千分位逗号没加引号（例如 1,234 应写成 \"1,234\"）" if is_csv and raw.delimiter == "," else ""
                problems.add(f"{_row(n)}有 {len(row):,} 列，比表头（{width:,} 列）多 {len(row) - width:,} 列{hint}", row=n)
            del row[width:]
        elif len(row) < width:
            if is_csv:
                if i == len(data) - 1:
                    problems.add(f"文件似乎被截断：{_row(n)}只有 {len(row):,} 列（表头有 {width:,} 列）", row=n)
                else:
                    problems.add(f"{_row(n)}只有 {len(row):,} 列（表头有 {width:,} 列）", row=n)
            row.extend([None] * (width - len(row)))
    headers = [_header_text(v) for v in header_row]
    return headers, data, numbers


def _first_value(row: list[Any]) -> Any:
    return next((v for v in row if v is not None and not (isinstance(v, str) and not _clean_text(v))), None)


# ------------------------------------------------------------------------ user catalogue
_PYDANTIC_MSGS = {
    "missing": "缺少这一项", "string_type": "应为文字", "list_type": "应为列表",
    "dict_type": "应为映射（键: 值）", "bool_type": "应为 true 或 false",
    "bool_parsing": "应为 true 或 false", "model_type": "应为映射（键: 值）",
    "int_type": "应为整数", "int_parsing": "应为整数",
}


def _pydantic_problems(err, where: str) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()))
        msg = _PYDANTIC_MSGS.get(e.get("type", ""), e.get("msg", ""))
        out.append(f"{where}{('的 ' + loc) if loc else ''}：{msg}")
    return out


@dataclass
class _Spec:
    """The user's catalogue entry for the table being loaded, normalised."""

    table: dict[str, Any]  # the table entry (label, description, source, …, columns)
    models: dict[str, Any]
    metrics: dict[str, Any]
    dimensions: dict[str, Any]
    column_types: dict[str, str | None]
    required: set[str]
    skipped: list[str] = field(default_factory=list)


def _read_user_catalogue(file: Path, table: str, shipped: dict[str, Any], others: dict[str, dict]) -> _Spec:
    from pydantic import ValidationError

    from semantic_layer.catalogue import Dimension, Metric, Model, TableMeta

    where = f"数据目录 {file.name}"
    if not file.exists():
        raise LoadError(f"找不到数据目录文件：{file}")
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LoadError(f"{where} 不是 UTF-8 编码；请用 UTF-8 保存 YAML 文件") from None
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"第 {mark.line + 1} 行第 {mark.column + 1} 列" if mark else ""
        raise LoadError(f"{where} 不是有效的 YAML：{at}{'，' if at else ''}{getattr(e, 'problem', '') or e}") from None
    if not isinstance(data, dict):
        raise LoadError(f"{where} 的顶层应为映射（tables: …），收到的是 {type(data).__name__}")
    problems = _Problems()
    unknown = [k for k in data if k not in USER_TOP_KEYS]
    if unknown:
        problems.add(f"{where} 中有不支持的顶层项：{'、'.join(map(str, unknown))}（可用：{'、'.join(USER_TOP_KEYS)}；"
                     "角色和权限只能在系统目录中定义）")
    tables = data.get("tables")
    if not isinstance(tables, dict) or not tables:
        problems.raise_if_any()
        raise LoadError(f"{where} 中没有 tables 项（应写成 tables: {{{table}: {{label: …, columns: …}}}}）")
    key = table if table in tables else next((k for k in tables if str(k).lower() == table.lower()), None)
    if key is None:
        raise LoadError(f"{where} 中没有表“{table}”的定义（目录中有：{'、'.join(map(str, tables))}）")
    entry = tables[key]
    if not isinstance(entry, dict):
        raise LoadError(f"{where} 中表“{table}”的定义应为映射（label、columns 等）")
    entry = dict(entry)
    entry.setdefault("label", table)
    if entry.get("as_of") is None and data.get("as_of") is not None:
        entry["as_of"] = str(data["as_of"])
    elif entry.get("as_of") is not None:
        entry["as_of"] = str(entry["as_of"])
    columns = entry.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise LoadError(f"{where} 中表“{table}”没有列定义（columns）")
    col_types: dict[str, str | None] = {}
    required: set[str] = set()
    norm_cols: dict[str, Any] = {}
    seen_lower: dict[str, str] = {}
    for name, spec in columns.items():
        name = str(name)
        p = _identifier_problem(name, f"{where}：列名")
        if p:
            problems.add(p)
            continue
        if name.lower() in seen_lower:
            problems.add(f"{where}：列名“{name}”与“{seen_lower[name.lower()]}”只差大小写，数据库中会冲突")
            continue
        seen_lower[name.lower()] = name
        if spec is None:
            spec = {}
        elif isinstance(spec, str):
            spec = {"label": spec}
        elif not isinstance(spec, dict):
            problems.add(f"{where}：列“{name}”的定义应为映射（label、type 等）或一个中文名")
            continue
        spec = dict(spec)
        spec.setdefault("label", name)
        typ = spec.get("type")
        if typ is not None:
            canon = TYPE_ALIASES.get(str(typ).strip().upper())
            if canon is None:
                problems.add(f"{where}：列“{name}”的类型“{typ}”无法识别（可用：{'、'.join(TYPES)}）")
            else:
                spec["type"] = canon
        col_types[name] = spec.get("type") if spec.get("type") in TYPES else None
        req = spec.get("required", False)
        if not isinstance(req, bool):
            problems.add(f"{where}：列“{name}”的 required 应为 true 或 false")
        elif req:
            required.add(name)
        if spec.get("sensitivity", "normal") not in SENSITIVITIES:
            problems.add(f"{where}：列“{name}”的 sensitivity 应为 {' / '.join(SENSITIVITIES)} 之一")
        if isinstance(spec.get("synonyms"), str):
            spec["synonyms"] = [spec["synonyms"]]
        norm_cols[name] = spec
    entry["columns"] = norm_cols
    try:
        TableMeta.model_validate(entry)
    except ValidationError as e:
        for p in _pydantic_problems(e, f"{where} 表“{table}”"):
            problems.add(p)
    problems.raise_if_any()

    # semantic items: keep those on this table's models
    groups: dict[str, dict[str, Any]] = {}
    for group, cls in (("models", Model), ("metrics", Metric), ("dimensions", Dimension)):
        items = data.get(group) or {}
        if not isinstance(items, dict):
            problems.add(f"{where} 的 {group} 应为映射（名字: 定义）")
            items = {}
        groups[group] = {}
        for name, item in items.items():
            name = str(name)
            p = _identifier_problem(name, f"{where}：{ {'models': '模型', 'metrics': '指标', 'dimensions': '维度'}[group] }名")
            if p:
                problems.add(p)
                continue
            if not isinstance(item, dict):
                problems.add(f"{where}：{group}.{name} 的定义应为映射")
                continue
            try:
                cls.model_validate(item)
            except ValidationError as e:
                for p in _pydantic_problems(e, f"{where} {group}.{name}"):
                    problems.add(p)
                continue
            groups[group][name] = dict(item)
    problems.raise_if_any()

    kind = {"models": "模型", "metrics": "指标", "dimensions": "维度"}
    mine_models = {n: m for n, m in groups["models"].items() if str(m["table"]).lower() == table.lower()}
    for m in mine_models.values():
        m["table"] = table
    skipped = [f"模型 {n}（表 {m['table']}）" for n, m in groups["models"].items() if n not in mine_models]
    mine_metrics = {n: m for n, m in groups["metrics"].items() if m["model"] in mine_models}
    skipped += [f"指标 {n}" for n in groups["metrics"] if n not in mine_metrics]
    mine_dims: dict[str, Any] = {}
    for n, d in groups["dimensions"].items():
        if any(m in mine_models for m in d["models"]):
            mine_dims[n] = d
        else:
            skipped.append(f"维度 {n}")
    for group, items in (("models", mine_models), ("metrics", mine_metrics), ("dimensions", mine_dims)):
        for name in items:
            if name in (shipped.get(group) or {}):
                problems.add(f"{where}：{kind[group]}名“{name}”与系统自带的{kind[group]}重名，请换一个名字")
            owner = next((t for t, content in others.items() if name in (content.get(group) or {})), None)
            if owner:
                problems.add(f"{where}：{kind[group]}名“{name}”已被表 {owner} 的目录使用"
                             f"（{USER_CATALOGUE_DIRNAME}/{owner}.yaml），请换一个名字")
    # time columns each model's grain needs
    for name, m in mine_models.items():
        t = m.get("time") or {}
        grain = t.get("grain")
        need = {"month": ["year", "month"], "quarter": ["year", "quarter"], "year": ["year"],
                "day": [t.get("column")] if t.get("column") else [], "none": []}.get(grain)
        if need is None:
            problems.add(f"{where}：模型 {name} 的时间粒度“{grain}”无法识别（可用：year、quarter、month、day、none）")
            continue
        if grain == "day" and not t.get("column"):
            problems.add(f"{where}：模型 {name} 的时间粒度为 day，需要用 time.column 指出日期列")
        missing = [c for c in need if c not in norm_cols]
        if missing:
            problems.add(f"{where}：模型 {name} 的时间粒度为 {grain}，表中需要列 {'、'.join(missing)}")
        for c in need:
            want = "DATE" if grain == "day" else "INTEGER"
            if c in col_types and col_types[c] not in (None, want):
                problems.add(f"{where}：模型 {name} 的时间列 {c} 应为 {want} 类型（目录中写的是 {col_types[c]}）")
    problems.raise_if_any()
    return _Spec(entry, mine_models, mine_metrics, mine_dims, col_types, required, skipped)


def _expected_names(spec: _Spec) -> dict[str, list[str]]:
    """Normalised header text → catalogue column keys (key, label, label(unit), synonyms)."""
    out: dict[str, list[str]] = {}

    def put(text: Any, key: str) -> None:
        n = _norm_name(text)
        if n and key not in out.setdefault(n, []):
            out[n].append(key)

    for key, col in spec.table["columns"].items():
        put(key, key)
    for key, col in spec.table["columns"].items():
        label = col.get("label")
        put(label, key)
        if col.get("unit"):
            put(f"{label}({col['unit']})", key)
            put(f"{label}/{col['unit']}", key)
            put(f"{label}{col['unit']}", key)
    for key, col in spec.table["columns"].items():
        for s in col.get("synonyms") or []:
            put(s, key)
    return out


# --------------------------------------------------------------------------- column mapping
_UNIT_WORDS = re.compile(r"(元|万|亿|亩|公顷|平方米|㎡|%|个|家|人|户|宗|吨|千瓦时|公里|米|件|次|年|月|天)")


def _auto_key(header: str, i: int, used: set[str]) -> str:
    key = re.sub(r"[^A-Za-z0-9_]+", "_", header).strip("_").lower()
    if not key or not re.search(r"[a-z]", key) or not IDENT_RE.match(key) \
            or key in _reserved_words() or len(key) > MAX_IDENT or re.search(r"[^\x00-\x7f]", header):
        key = f"col_{i + 1}"
    base, n = key, 2
    while key in used:
        key, n = f"{base}_{n}", n + 1
    used.add(key)
    return key


def _map_columns(headers: list[str], spec: _Spec | None, problems: _Problems) -> list[_Column]:
    cols: list[_Column] = []
    blank = [i for i, h in enumerate(headers) if not h]
    if blank:
        problems.add(f"表头第 {'、'.join(str(i + 1) for i in blank)} 列没有列名，但{'这些列' if len(blank) > 1 else '这一列'}有数据"
                     "（表头是否占了多行或有合并单元格？请整理成一行表头，每列一个名字）")
    if spec is None:
        used: set[str] = set()
        seen: dict[str, int] = {}
        for i, h in enumerate(headers):
            if not h:
                continue
            if _norm_name(h) in seen:
                problems.add(f"表头有重复的列名“{h}”（第 {seen[_norm_name(h)] + 1} 列和第 {i + 1} 列）")
                continue
            seen[_norm_name(h)] = i
            cols.append(_Column(i, h, _auto_key(h, i, used)))
        return cols
    lookup = _expected_names(spec)
    taken: dict[str, int] = {}
    unknown: list[str] = []
    for i, h in enumerate(headers):
        if not h:
            continue
        keys = lookup.get(_norm_name(h), [])
        if not keys:
            unknown.append(h)
            continue
        if len(keys) > 1:
            problems.add(f"表头第 {i + 1} 列“{h}”可以对应目录中的多列（{'、'.join(keys)}），请把表头改成列名")
            continue
        key = keys[0]
        if key in taken:
            problems.add(f"表头第 {taken[key] + 1} 列“{headers[taken[key]]}”和第 {i + 1} 列“{h}”"
                         f"都对应目录中的列 {key}")
            continue
        taken[key] = i
        cols.append(_Column(i, h, key))
    missing = [k for k in spec.table["columns"] if k not in taken]
    if missing:
        labels = [f"{k}（{spec.table['columns'][k].get('label', k)}）" if spec.table['columns'][k].get('label', k) != k else k
                  for k in missing]
        problems.add(f"缺少目录中要求的列：{'、'.join(labels)}")
    if unknown:
        problems.add(f"文件中有目录里没有的列：{'、'.join(unknown)}"
                     "（表头应为目录中的列名、中文名或同义词；多余的列请从文件中删去或在目录中补充）")
    order = list(spec.table["columns"])
    cols.sort(key=lambda c: order.index(c.key))
    return cols


# ---------------------------------------------------------------------------- conversion
def _convert(cols: list[_Column], data: list[list[Any]], numbers: list[int],
             spec: _Spec | None, problems: _Problems) -> dict[str, str]:
    """Convert each column in place; returns key → type."""
    types: dict[str, str] = {}
    for col in cols:
        raw_values = [row[col.index] for row in data]
        declared = spec.column_types.get(col.key) if spec else None
        typ = declared or _infer_type(raw_values, col.key if spec else col.header)
        types[col.key] = typ
        fn = CONVERTERS[typ]
        required = spec is not None and col.key in spec.required
        cache: dict[Any, Any] = {}
        out: list[Any] = []
        for v, n in zip(raw_values, numbers):
            if isinstance(v, _Uncalculated):
                problems.add(f"{_row(n)}，列“{col.header}”：单元格是公式“{_show(v)}”，但文件里没有保存计算结果"
                             "（请用 Excel 或 WPS 打开、保存后再导入）", col.header, n, col.index)
                out.append(None)
                continue
            if isinstance(v, _ExcelError):
                problems.add(f"{_row(n)}，列“{col.header}”：单元格是 Excel 错误值“{v}”", col.header, n, col.index)
                out.append(None)
                continue
            ck = (type(v), v)
            try:
                value = cache[ck] if ck in cache else cache.setdefault(ck, fn(v))
            except _Bad as e:
                problems.add(f"{_row(n)}，列“{col.header}”：{e}", col.header, n, col.index)
                out.append(None)
                continue
            if value is None and required:
                problems.add(f"{_row(n)}，列“{col.header}”：不能为空（目录中标为必填）", col.header, n, col.index)
            out.append(value)
        col.values = out
    return types


def _frame(cols: list[_Column], types: dict[str, str]):
    """A typed DataFrame (typed so DuckDB never guesses a column's type from a sample)."""
    import numpy as np
    import pandas as pd

    data = {}
    for i, col in enumerate(cols):
        typ, values = types[col.key], col.values
        if typ == "INTEGER":
            series = pd.Series(pd.array(values, dtype="Int64"))
        elif typ == "DOUBLE":
            series = pd.Series(np.array([np.nan if v is None else v for v in values], dtype="float64"))
        elif typ == "BOOLEAN":
            series = pd.Series(pd.array(values, dtype="boolean"))
        elif typ == "DATE":
            series = pd.Series(np.array([np.datetime64("NaT") if v is None else np.datetime64(v, "D")
                                         for v in values], dtype="datetime64[s]"))
        else:
            series = pd.Series(pd.array(values, dtype="string"))
        data[f"c{i}"] = series
    return pd.DataFrame(data)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------- the warehouse
def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


@contextmanager
def _load_lock(db: Path):
    """Serialise loads into one folder (they share its catalogue.d) with a lock on the folder."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no cross-process lock
        yield
        return
    fd = os.open(db.parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LoadError(f"另一个导入正在写入 {db.parent} 中的数据仓库，请稍后再试") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _open_read_only(db: Path):
    import duckdb

    try:
        return duckdb.connect(str(db), read_only=True)
    except Exception as e:
        msg = str(e)
        if "lock" in msg.lower():
            raise LoadError(f"数据仓库 {db} 正被其他程序写入，请稍后再试") from None
        raise LoadError(f"数据仓库文件无法打开：{db}（{_show(msg, 120)}）") from None


def _inspect(con) -> dict[str, Any]:
    """What is in the warehouse: its tables and views, and which tables the demo build made."""
    objects = {r[0].lower(): (r[0], r[1]) for r in con.execute(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
    built: set[str] = set()
    if "meta_build" in objects:
        try:
            for (counts,) in con.execute("SELECT row_counts FROM meta_build").fetchall():
                built |= {t.lower() for t in json.loads(counts or "{}")}
        except Exception:
            pass
    return {"objects": objects, "built": built}


def _check_protected(table: str, info: dict[str, Any]) -> dict[str, Any] | None:
    existing = info["objects"].get(table.lower())
    if existing and existing[1] != "BASE TABLE":
        raise LoadError(f"数据仓库中已有同名视图“{existing[0]}”，不能覆盖；请换一个表名")
    if table.lower() in info["built"]:
        raise LoadError(f"表“{table}”是 youshu warehouse build 生成的演示数据表，不能用导入的数据覆盖；请换一个表名")
    return existing


def _inspect_and_copy(db: Path, tmp: Path) -> dict[str, Any]:
    """Open the warehouse read-only (refused if another process is writing it) and copy it."""
    con = _open_read_only(db)
    try:
        info = _inspect(con)
        shutil.copyfile(db, tmp)
        wal = db.with_name(db.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, tmp.with_name(tmp.name + ".wal"))
    finally:
        con.close()
    return info


def _from_clause(model: dict[str, Any]) -> str:
    joins = model.get("joins") or {}
    ordered = sorted(joins.items(), key=lambda kv: 1 if (kv[1] or {}).get("via") else 0)
    sql = f"FROM {_quote(model['table'])} AS f"
    for alias, j in ordered:
        sql += f" LEFT JOIN {j['table']} AS {alias} ON {j['condition']}"
    return sql


def _dry_run(con, spec: _Spec, problems: _Problems) -> None:
    """Every metric and dimension expression of the user's catalogue must run on the new table."""

    def attempt(what: str, sql: str) -> None:
        try:
            con.execute(f"EXPLAIN {sql}")
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            problems.add(f"{what} 无法在表上执行：{_show(first, 160)}")

    for name, m in spec.metrics.items():
        model = spec.models[m["model"]]
        where = " AND ".join(f"({f})" for f in m.get("filters") or []) or "TRUE"
        attempt(f"指标 {name} 的表达式“{m['expr']}”", f"SELECT {m['expr']} {_from_clause(model)} WHERE {where}")
    for name, d in spec.dimensions.items():
        for model_name in d["models"]:
            model = spec.models.get(model_name)
            if model is None:
                continue
            expr = (d.get("exprs") or {}).get(model_name, d["expr"])
            attempt(f"维度 {name} 在模型 {model_name} 上的表达式“{expr}”", f"SELECT {expr} {_from_clause(model)}")
        src = d.get("members")
        if isinstance(src, dict) and src.get("table"):
            cols = [src.get("name")] + ([src["key"]] if src.get("key") else []) + list(src.get("attributes") or [])
            attempt(f"维度 {name} 的成员来源", f"SELECT DISTINCT {', '.join(map(str, cols))} FROM {src['table']}")


def _yaml_dump(content: dict[str, Any], header: str) -> str:
    body = yaml.safe_dump(content, allow_unicode=True, sort_keys=False, default_flow_style=None, width=120)
    return header + body


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------- the load
def load_user_file(path: Path | str, table: str, catalogue: Path | str | None = None,
                   db_path: Path | str | None = None, sheet: str | None = None,
                   progress: Callable[[str], None] | None = print) -> int:
    """Load a CSV/Excel file into ``table`` of the warehouse; returns the number of rows loaded.

    Raises :class:`LoadError` (a ``ValueError``) listing what is wrong — row and column for bad
    cells — and leaves the warehouse untouched.
    """
    import duckdb

    def say(msg: str) -> None:
        if progress is not None:
            progress(msg)

    path = Path(path).expanduser()
    db = (Path(db_path) if db_path is not None else Path(paths.DEFAULT_DB)).expanduser().resolve()
    table = table.strip() if isinstance(table, str) else table
    contract = contract_tables()
    _check_table_name(table, contract)

    user_dir = user_catalogue_dir(db)
    others: dict[str, dict] = {}
    if user_dir.is_dir():
        for f in sorted(user_dir.glob("*.yaml")):
            if f.stem.lower() != table.lower():
                try:
                    others[f.stem] = _read_yaml_mapping(f) or {}
                except yaml.YAMLError:
                    raise LoadError(f"已保存的数据目录 {f} 不是有效的 YAML，请修正或删除后再导入") from None
    shipped = _shipped_merged()
    for t, content in others.items():
        if table.lower() in {str(k).lower() for k in (content.get("tables") or {})} and t.lower() != table.lower():
            raise LoadError(f"表“{table}”已在 {USER_CATALOGUE_DIRNAME}/{t}.yaml 中定义，不能重复定义")

    if catalogue is None and (user_dir / f"{table}.yaml").exists():
        catalogue = user_dir / f"{table}.yaml"
        say(f"未指定 --catalogue：沿用上次为表 {table} 保存的数据目录 {catalogue}"
            "（如要按新文件重新推断列，请先删除该文件）")
    spec = _read_user_catalogue(Path(catalogue).expanduser(), table, shipped, others) if catalogue else None
    if not db.exists():
        raise LoadError(f"找不到数据仓库文件：{db}。请先运行 `youshu warehouse build`，或用 --db 指定已有的数据仓库")
    con = _open_read_only(db)  # refuse protected names before reading a large file
    try:
        _check_protected(table, _inspect(con))
    finally:
        con.close()

    raw = _read_file(path, sheet)
    for note in raw.notes:
        say(note)
    expected = {n: keys[0] for n, keys in _expected_names(spec).items()} if spec else None
    problems = _Problems()
    headers, data, numbers = _shape(raw, problems, expected, say)
    cols = _map_columns(headers, spec, problems)
    problems.raise_if_any()
    types = _convert(cols, data, numbers, spec, problems)
    problems.raise_if_any()

    desc = raw.kind
    if raw.encoding:
        desc += f"，编码 {raw.encoding}，分隔符：{_DELIM_NAMES.get(raw.delimiter or ',', raw.delimiter)}"
    if raw.sheet:
        desc += f"，工作表“{raw.sheet}”"
    say(f"读取 {path.name}（{desc}）：{len(cols)} 列，{len(data):,} 行数据，校验通过")
    for col in cols:
        if types[col.key] == "VARCHAR":
            hits = {v for v in col.values if v in _TOTAL_WORDS}
            if hits:
                n = next(numbers[i] for i, v in enumerate(col.values) if v in hits)
                say(f"注意：{_row(n)}像是合计行（列“{col.header}”为“{'、'.join(sorted(hits))}”），已照常导入；"
                    "按 SUM 汇总的指标会重复计算，请删去合计行或在指标 filters 中排除")

    # the catalogue entry that will be saved
    if spec is None:
        columns: dict[str, Any] = {}
        for col in cols:
            label, unit = col.header, None
            m = re.match(r"^(.+?)\s*[(（]([^()（）]{1,8})[)）]$", col.header)
            if m and _UNIT_WORDS.search(m.group(2)):
                label, unit = m.group(1).strip(), m.group(2).strip()
            c: dict[str, Any] = {"label": label}
            if unit:
                c["unit"] = unit
            c["type"] = types[col.key]
            columns[col.key] = c
        entry = {"label": table, "description": f"由 youshu warehouse load 从 {path.name} 导入；未提供数据目录，列类型为推断。",
                 "source": {"department": "", "system": f"用户导入：{path.name}"},
                 "update_frequency": "", "columns": columns}
        content: dict[str, Any] = {"tables": {table: entry}}
        say("未提供数据目录：已按数据推断列类型，并生成最简目录（中文名取自表头）：" +
            "、".join(f"{c.key}（{c.header}，{types[c.key]}）" for c in cols))
        say("提示：补充中文名、单位、指标(metrics)和维度(dimensions)后用 --catalogue 重新导入，"
            "才能用中文提问这张表（见 docs/loading-your-own-data.md）")
    else:
        entry = dict(spec.table)
        entry.setdefault("source", {"department": "", "system": f"用户导入：{path.name}"})
        entry["columns"] = {k: {**v, "type": types[k]} for k, v in spec.table["columns"].items()}
        content = {"tables": {table: entry}}
        for group in ("models", "metrics", "dimensions"):
            items = getattr(spec, group)
            if items:
                content[group] = items
        if spec.skipped:
            say(f"目录中不属于表 {table} 的项未保存（导入对应的表时再保存）：{'、'.join(spec.skipped)}")
        # the merged catalogue must still be valid
        from semantic_layer.catalogue import Catalogue

        try:
            Catalogue.from_mapping(merged_catalogue_mapping(db, override={table: content}))
        except ValueError as e:
            raise LoadError(f"合并到系统数据目录后，{e}") from None

    db.parent.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp = db.with_name(f".{db.name}.{token}.load.tmp")
    tmp_wal = tmp.with_name(tmp.name + ".wal")
    cat_file = user_dir / f"{table}.yaml"
    cat_tmp = user_dir / f".{table}.yaml.{token}.tmp"
    backup = db.with_name(f".{db.name}.{token}.bak")
    made_dir = replaced = False
    with _load_lock(db):
        try:
            existing = _check_protected(table, _inspect_and_copy(db, tmp))
            con = duckdb.connect(str(tmp))
            try:
                old_rows = None
                if existing:
                    old_rows = con.execute(f"SELECT count(*) FROM {_quote(existing[0])}").fetchall()[0][0]
                    if existing[0] != table:
                        con.execute(f"DROP TABLE {_quote(existing[0])}")
                frame = _frame(cols, types)
                con.register("_youshu_user_frame", frame)
                select = ", ".join(f"CAST(c{i} AS {SQL_TYPES[types[c.key]]}) AS {_quote(c.key)}"
                                   for i, c in enumerate(cols))
                con.execute(f"CREATE OR REPLACE TABLE {_quote(table)} AS SELECT {select} FROM _youshu_user_frame")
                con.unregister("_youshu_user_frame")
                n = con.execute(f"SELECT count(*) FROM {_quote(table)}").fetchall()[0][0]
                if n != len(data):
                    raise LoadError(f"写入的行数（{n:,}）与文件的行数（{len(data):,}）不一致，已放弃导入")
                con.execute(f"""CREATE TABLE IF NOT EXISTS {META_TABLE} (
                    table_name VARCHAR, source_file VARCHAR, source_sha256 VARCHAR, file_format VARCHAR,
                    encoding VARCHAR, sheet VARCHAR, row_count BIGINT, loaded_at TIMESTAMP,
                    catalogue_file VARCHAR)""")
                con.execute(f"DELETE FROM {META_TABLE} WHERE lower(table_name) = lower(?)", [table])
                con.execute(f"INSERT INTO {META_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                    table, str(path.resolve()), _sha256(path), raw.kind, raw.encoding, raw.sheet, n,
                    _dt.datetime.now().replace(microsecond=0), str(cat_file)])
                con.execute("CHECKPOINT")
            finally:
                con.close()
            if spec is not None and (spec.metrics or spec.dimensions):
                # on a read-only connection: a catalogue expression can never change the copy
                ro = duckdb.connect(str(tmp), read_only=True)
                try:
                    dry = _Problems()
                    _dry_run(ro, spec, dry)
                finally:
                    ro.close()
                dry.raise_if_any(title="数据目录中的指标/维度在导入的数据上无法执行，未导入")
            if not user_dir.exists():
                user_dir.mkdir(parents=True)
                made_dir = True
            header = (f"# 表 {table} 的数据目录：由 youshu warehouse load 生成（源文件 {path.name}，"
                      f"{_dt.datetime.now():%Y-%m-%d %H:%M}）。\n"
                      f"# 修改后用 youshu warehouse load … --catalogue 重新导入，不要只改这里。\n")
            with open(cat_tmp, "w", encoding="utf-8") as fh:
                fh.write(_yaml_dump(content, header))
                fh.flush()
                os.fsync(fh.fileno())
            try:  # a hard link to the current file, to put it back if saving the catalogue fails
                os.link(db, backup)
            except OSError:
                pass
            os.replace(tmp, db)
            replaced = True
            os.replace(cat_tmp, cat_file)
        except BaseException as e:
            if replaced and backup.exists():
                os.replace(backup, db)
            _remove(tmp)
            _remove(tmp_wal)
            _remove(cat_tmp)
            _remove(backup)
            if made_dir:
                try:
                    user_dir.rmdir()
                except OSError:
                    pass
            if isinstance(e, (LoadError, KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(e, duckdb.Error):
                raise LoadError(f"写入数据仓库失败：{_show(str(e), 200)}") from e
            raise
    _remove(backup)
    # the old file's WAL (already folded into the copy) must not be replayed onto the new file
    _remove(tmp_wal)
    _remove(db.with_name(db.name + ".wal"))
    if old_rows is not None:
        say(f"表 {table} 已存在（{old_rows:,} 行），已替换")
    say(f"已写入数据仓库 {db}：表 {table}，{n:,} 行；数据目录保存在 {cat_file}")
    return n
