"""有数 chat UI: a Gradio Blocks app served on the intranet (`youshu serve`).

One `Assistant` per process (created at start-up, shared by every session: it is thread-safe
for reads); one `Conversation` per browser session (gr.State) so follow-ups such as
“那2020年呢？” reuse the previous question's context.

Layout
  问答      chat on the left; the latest answer's chart, table (CSV/Excel downloads) and a
            collapsible 来源 panel (metric definitions, source tables, as-of date, SQL) on the right.
            Clarifying questions show their options as buttons.
  分析师    the last answer's SQL in an editor; 校验 (validate_sql) and 运行 (run_sql).
  数据目录  search over metrics, tables, columns, dimensions, synonyms and sources.

Everything is served from this machine: Gradio's frontend (including the Vega charts of
gr.LinePlot/gr.BarPlot and its local fonts) ships inside the gradio package; analytics and
share links are off, so the page works on an intranet without internet.
"""
from __future__ import annotations

import os

# Must be set before gradio is imported: no analytics, no version check, no telemetry.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_SSR_MODE", "False")

import atexit  # noqa: E402
import datetime as _dt  # noqa: E402
import decimal  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from .engine import Assistant, Conversation  # noqa: E402

log = logging.getLogger("youshu.ui")

EXAMPLE_QUESTIONS = [
    "2021年经开区一般公共预算收入是多少？",
    "去年财政收入增长了多少？",
    "2021年各部门一般公共预算支出排名前5",
    "2019年广东省税收收入是多少",
    "近三年地区生产总值",
]
MAX_OPTIONS = 8  # clarification option buttons
MAX_CHART_POINTS = 60
EXPORT_TTL_S = 3 * 3600
FIXED_ROLES = ["领导", "分析师", "审计"]

CSS = """
.gradio-container {max-width: 1480px !important; width: 100% !important; margin: 0 auto;}
#ys-chat small {line-height: 1.5;}
#ys-header h1 {margin-bottom: 0;}
#ys-header p {margin-top: 2px; color: var(--body-text-color-subdued);}
#ys-answer-head {min-height: 2.5em;}
#ys-examples button {font-size: 0.85em;}
#ys-clarify {gap: 6px;}
footer {display: none !important;}
"""


# ====================================================================== formatting helpers
def _plain(v: Any) -> Any:
    """A cell value fit for a DataFrame / CSV / Excel (Decimal → float, dates → text)."""
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (_dt.date, _dt.datetime, _dt.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, (list, tuple, dict, set)):
        return str(v)
    return v


def _header(col: dict) -> str:
    label = col.get("label") or col.get("name") or ""
    unit = col.get("unit")
    return f"{label}（{unit}）" if unit else str(label)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool)


def result_frame(columns: list[dict], rows: list[list]) -> tuple[pd.DataFrame, list[str]]:
    """The answer's rows as a DataFrame with Chinese headers “标签（单位）”, plus Gradio datatypes."""
    headers: list[str] = []
    seen: set[str] = set()
    for c in columns:
        h = _header(c)
        if h in seen:
            h = f"{h}·{c.get('name')}"
        seen.add(h)
        headers.append(h)
    data = [[_plain(v) for v in r] for r in rows]
    if not headers and data:
        headers = [f"列{i + 1}" for i in range(len(data[0]))]
    df = pd.DataFrame(data, columns=headers)
    types: list[str] = []
    for j, h in enumerate(headers):
        vals = [r[j] for r in data if r[j] is not None]
        numeric = bool(vals) and all(_is_number(v) for v in vals)
        if numeric:
            if any(isinstance(v, float) for v in vals):
                df[h] = pd.to_numeric(df[h], errors="coerce").round(2)
            types.append("number")
        else:
            types.append("str")
    return df, types


_EXPORT_DIR: Path | None = None


def _export_dir() -> Path:
    global _EXPORT_DIR
    if _EXPORT_DIR is None or not _EXPORT_DIR.exists():
        _EXPORT_DIR = Path(tempfile.mkdtemp(prefix="youshu-ui-"))
        atexit.register(shutil.rmtree, _EXPORT_DIR, True)
    return _EXPORT_DIR


def _prune_exports(root: Path) -> None:
    cutoff = time.time() - EXPORT_TTL_S
    for d in root.iterdir():
        try:
            if d.stat().st_mtime < cutoff:
                shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink()
        except OSError:
            pass


def _file_stem(result: dict) -> str:
    interp = result.get("interpretation") or {}
    parts = [interp.get("time_label") or "", interp.get("filter_labels") or "", "、".join(interp.get("metric_labels") or [])]
    stem = "".join(p for p in parts if p) or "查询结果"
    stem = re.sub(r"[\\/:*?\"<>|\s]+", "_", stem)[:40]
    return f"有数_{stem}_{time.strftime('%Y%m%d-%H%M%S')}"


def export_files(result: dict, df: pd.DataFrame) -> tuple[str, str]:
    """Write the answer's table as CSV (UTF-8 with BOM, opens in Excel) and .xlsx; return paths."""
    root = _export_dir()
    _prune_exports(root)
    folder = root / uuid.uuid4().hex
    folder.mkdir(parents=True)
    stem = _file_stem(result)
    csv_path = folder / f"{stem}.csv"
    xlsx_path = folder / f"{stem}.xlsx"
    df.to_csv(csv_path, index=False, encoding="utf-8-sig")
    _write_xlsx(xlsx_path, result, df)
    return str(csv_path), str(xlsx_path)


def _write_xlsx(path: Path, result: dict, df: pd.DataFrame) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = "数据"
    ws.append(list(df.columns))
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
        cell.alignment = Alignment(horizontal="center")
    for row in df.itertuples(index=False):
        ws.append([None if (isinstance(v, float) and math.isnan(v)) else v for v in row])
    for j, name in enumerate(df.columns, 1):
        width = max([len(str(name)) * 2] + [len(str(v)) + 2 for v in df.iloc[:200, j - 1].tolist()])
        ws.column_dimensions[get_column_letter(j)].width = min(max(width, 8), 60)
        if df.dtypes.iloc[j - 1].kind == "f":
            for r in range(2, len(df) + 2):
                ws.cell(row=r, column=j).number_format = "#,##0.00"
    ws.freeze_panes = "A2"
    info = wb.create_sheet("说明")
    info.append(["项目", "内容"])
    for cell in info[1]:
        cell.font = Font(bold=True)
    info.append(["问题", result.get("question") or ""])
    info.append(["回答", result.get("answer") or ""])
    for s in result.get("sources") or []:
        if s.get("kind") == "metric":
            info.append([f"指标：{s.get('label')}", f"{s.get('definition') or ''}（单位：{s.get('unit') or '—'}）"])
        elif s.get("kind") == "table":
            info.append([f"数据表：{s.get('label')}（{s.get('name')}）",
                         f"来源：{s.get('department') or ''} {s.get('system') or ''}；更新频率：{s.get('update_frequency') or ''}；"
                         f"数据截至：{s.get('as_of') or ''}"])
        elif s.get("kind") == "as_of":
            info.append(["数据截至", str(s.get("as_of"))])
    info.append(["SQL", result.get("sql") or ""])
    info.append(["导出时间", time.strftime("%Y-%m-%d %H:%M:%S")])
    info.column_dimensions["A"].width = 28
    info.column_dimensions["B"].width = 100
    for row in info.iter_rows(min_row=2):
        row[1].alignment = Alignment(wrap_text=True, vertical="top")
    wb.save(path)


# ====================================================================== charts
def _scale_unit(values: list[float], unit: str | None) -> tuple[float, str | None]:
    """Divide large money values into a readable unit: 209900 万元 → 20.99 亿元."""
    finite = [abs(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    top = max(finite) if finite else 0
    if unit == "万元" and top >= 1e4:
        return 1e4, "亿元"
    if unit == "元":
        if top >= 1e8:
            return 1e8, "亿元"
        if top >= 1e4:
            return 1e4, "万元"
    return 1.0, unit


def chart_frame(chart: dict | None) -> tuple[str, pd.DataFrame, dict] | None:
    """A chart spec of the answer object → (kind line|bar, long DataFrame x/y/series, plot options)."""
    if not chart or not chart.get("x") or not chart.get("series"):
        return None
    xs = [str(x) for x in chart["x"]][:MAX_CHART_POINTS]
    # duplicate categories would be summed by the plot: keep them apart
    seen: dict[str, int] = {}
    for i, x in enumerate(xs):
        if x in seen:
            seen[x] += 1
            xs[i] = f"{x}（{seen[x]}）"
        else:
            seen[x] = 1
    raw = []
    for s in chart["series"]:
        vals = [_plain(v) for v in (s.get("values") or [])][: len(xs)]
        raw.append((str(s.get("name") or ""), [float(v) if _is_number(v) else None for v in vals]))
    unit = chart.get("unit") or chart.get("y_label")
    factor, shown_unit = _scale_unit([v for _, vals in raw for v in vals if v is not None], unit)
    records = []
    for name, vals in raw:
        for x, v in zip(xs, vals):
            records.append({"x": x, "y": None if v is None else round(v / factor, 4), "series": name})
    df = pd.DataFrame(records, columns=["x", "y", "series"])
    if df["y"].notna().sum() == 0:
        return None
    kind = "line" if chart.get("type") == "line" else "bar"  # pie (shares) is drawn as bars
    ys = df["y"].dropna()
    # bars must start at zero (a bar's length is its value); lines may zoom in on the trend
    y_lim = [min(0.0, float(ys.min())), max(0.0, float(ys.max())) * 1.05 or 1.0] if kind == "bar" else None
    y_label = chart.get("y_label") or ""
    names = [n for n, _ in raw]
    if not y_label or y_label == unit:
        y_label = names[0] if len(names) == 1 and names[0] else "数值"
    y_title = f"{y_label}（{shown_unit}）" if shown_unit and shown_unit not in y_label else y_label
    opts = {
        "title": chart.get("title") or "",
        "x_title": chart.get("x_label") or "",
        "y_title": y_title,
        "color": "series" if len(names) > 1 else None,
        "sort": list(dict.fromkeys(xs)),
        "y_lim": y_lim,
        "x_label_angle": -35 if (len(xs) > 6 or max(len(x) for x in xs) > 6) and kind == "bar" else 0,
    }
    return kind, df, opts


def _year_like(vals: list) -> bool:
    return bool(vals) and all(_is_number(v) and float(v).is_integer() and 1900 <= float(v) <= 2100 for v in vals)


def sql_chart(columns: list[dict], rows: list[list]) -> dict | None:
    """A chart spec for an ad-hoc SQL result: a label (or year/month) column and a numeric column."""
    if not rows or not columns or len(rows) < 1:
        return None
    n = len(columns)
    cols = [[_plain(r[j]) for r in rows] for j in range(n)]
    names = [(c.get("name") or "").lower() for c in columns]
    numeric = [j for j in range(n) if any(v is not None for v in cols[j])
               and all(v is None or _is_number(v) for v in cols[j])]
    time_cols = [j for j in numeric if names[j] in ("year", "month", "quarter", "年度", "年份", "月份")
                 or (names[j].endswith("year") and _year_like([v for v in cols[j] if v is not None]))]
    code_like = {j for j in numeric if names[j].endswith(("_code", "_id")) or names[j] in ("id", "code", "level")}
    values = [j for j in numeric if j not in time_cols and j not in code_like]
    if not values:
        return None
    y = values[0]
    labels = [j for j in range(n) if j not in numeric]
    if labels:
        lab = labels[0]
        extra = [j for j in time_cols]
        xs = []
        for r in range(len(rows)):
            parts = [str(cols[lab][r])] + [str(cols[j][r]) for j in extra]
            xs.append(" ".join(parts))
        kind, x_label = "bar", _header(columns[lab]) if columns[lab].get("label") else columns[lab].get("name")
    elif time_cols:
        tc = sorted(time_cols, key=lambda j: {"year": 0, "年度": 0, "年份": 0, "quarter": 1, "month": 2, "月份": 2}.get(names[j], 0))
        order = sorted(range(len(rows)), key=lambda r: tuple((cols[j][r] or 0) for j in tc))
        suffix = {"year": "年", "年度": "年", "年份": "年", "quarter": "季度", "month": "月", "月份": "月"}
        xs = ["".join(f"{int(cols[j][r])}{suffix.get(names[j], '')}" for j in tc) for r in order]
        cols[y] = [cols[y][r] for r in order]
        kind, x_label = ("line" if len(rows) > 1 else "bar"), "时间"
    else:
        return None
    if len(xs) > MAX_CHART_POINTS and kind == "bar":
        xs = xs[:MAX_CHART_POINTS]
    ycol = columns[y]
    return {"type": kind, "title": "", "x_label": x_label, "y_label": ycol.get("label") or ycol.get("name"),
            "unit": ycol.get("unit"), "x": xs, "series": [{"name": ycol.get("label") or ycol.get("name"),
                                                          "values": cols[y][: len(xs)]}]}


def _plot_updates(chart: dict | None) -> tuple[Any, Any, Any]:
    """(LinePlot update, BarPlot update, note update) for a chart spec."""
    try:
        made = chart_frame(chart)
    except Exception:  # a malformed spec must not lose the answer
        log.exception("chart spec could not be drawn")
        made = None
    if made is None:
        return gr.update(visible=False, value=None), gr.update(visible=False, value=None), gr.update(visible=bool(chart), value="（图表无法绘制）" if chart else "")
    kind, df, opts = made
    common = dict(value=df, x="x", y="y", title=opts["title"], x_title=opts["x_title"], y_title=opts["y_title"],
                  color=opts["color"], sort=opts["sort"], visible=True, x_label_angle=opts["x_label_angle"],
                  y_lim=opts["y_lim"])
    if kind == "line":
        return gr.update(**common), gr.update(visible=False, value=None), gr.update(visible=False)
    return gr.update(visible=False, value=None), gr.update(**common), gr.update(visible=False)


# ====================================================================== answer rendering
def _md_escape(text: Any) -> str:
    s = "" if text is None else str(text)
    return re.sub(r"([\\`*_{}\[\]<>|#])", r"\\\1", s)


def chat_text(result: dict) -> str:
    """The chat message for one answer object (markdown)."""
    status = result.get("status")
    if status == "refused":
        return f"**无法回答**：{_md_escape(result.get('error') or '该问题超出可查询范围。')}"
    if status == "error":
        return f"**出错了**：{_md_escape(result.get('error') or '处理问题时出错，请换个说法再试。')}"
    if status == "clarify":
        c = result.get("clarification") or {}
        q = c.get("question") or result.get("answer") or "请补充说明您的问题。"
        opts = c.get("options") or []
        tail = "\n\n请点击下方的选项之一，或直接补充说明。" if opts else ""
        return f"**请确认**：{_md_escape(q)}{tail}"
    text = f"**{_md_escape(result.get('answer') or '')}**"
    interp = result.get("interpretation") or {}
    bits = []
    if interp.get("metric_labels"):
        bits.append("指标：" + "、".join(interp["metric_labels"]))
    if interp.get("time_label"):
        bits.append("时间：" + str(interp["time_label"]))
    if interp.get("filter_labels"):
        bits.append("范围：" + str(interp["filter_labels"]))
    if interp.get("dimension_labels"):
        bits.append("按：" + "、".join(interp["dimension_labels"]))
    meta = []
    if bits:
        meta.append("理解为　" + "　｜　".join(_md_escape(b) for b in bits))
    for note in result.get("notes") or []:
        meta.append(f"注：{_md_escape(note)}")
    if result.get("rows"):
        meta.append("图表、数据表和来源见右侧“回答详情”。")
    if meta:
        text += "\n\n<small>" + "<br>".join(meta) + "</small>"
    return text


def sources_markdown(result: dict) -> str:
    srcs = result.get("sources") or []
    metrics = [s for s in srcs if s.get("kind") == "metric"]
    tables = [s for s in srcs if s.get("kind") == "table"]
    as_of = [s for s in srcs if s.get("kind") == "as_of"]
    out: list[str] = []
    if metrics:
        out.append("**指标口径**")
        for m in metrics:
            unit = f"（单位：{m.get('unit')}）" if m.get("unit") else ""
            out.append(f"- **{_md_escape(m.get('label'))}**{unit}：{_md_escape(m.get('definition') or '—')}")
        out.append("")
    if tables:
        out.append("**数据表**")
        out.append("")
        out.append("| 数据表 | 表名 | 来源部门 | 来源系统 | 更新频率 | 数据截至 |")
        out.append("|---|---|---|---|---|---|")
        for t in tables:
            out.append("| " + " | ".join(_md_escape(t.get(k) or "—") for k in
                                          ("label", "name", "department", "system", "update_frequency", "as_of")) + " |")
        out.append("")
    if as_of:
        out.append(f"**数据截至**：{_md_escape(as_of[0].get('as_of'))}")
    interp = result.get("interpretation") or {}
    if interp.get("confidence") is not None and result.get("status") == "answered":
        out.append(f"\n<small>解析置信度：{interp['confidence']}；路径：{_md_escape(result.get('path') or 'rule')}；"
                   f"耗时：{(result.get('timings_ms') or {}).get('total', '—')} 毫秒</small>")
    return "\n".join(out) if out else "本次回答没有来源信息。"


# ====================================================================== the app
def departments(assistant: Assistant) -> list[tuple[str, str]]:
    """(code, name) of the budget units, for the 部门用户 entries of the role picker."""
    depts = getattr(assistant, "departments", None)
    if isinstance(depts, dict) and depts:
        return sorted(((str(code), str(name)) for name, code in depts.items()), key=lambda cn: cn[0])
    try:
        result = assistant.executor.run("SELECT dept_code, dept_name FROM dim_department ORDER BY dept_code")
        return [(str(c), str(n)) for c, n in result.rows]
    except Exception:  # a user warehouse without departments: no 部门用户 entries
        log.warning("无法读取预算单位表，角色列表中不含部门用户", exc_info=True)
        return []


def role_choices(assistant: Assistant) -> list[tuple[str, str]]:
    """(label, value) pairs: 领导 / 分析师 / 审计 and 部门用户:<单位名称> (value 部门用户:<单位编码>)."""
    roles = list(getattr(assistant.catalogue, "roles", {}) or {})
    out: list[tuple[str, str]] = []
    for r in FIXED_ROLES:
        if not roles or r in roles:
            out.append((r, r))
    if not roles or "部门用户" in roles:
        for code, name in departments(assistant):
            out.append((f"部门用户:{name}", f"部门用户:{code}"))
    for r in roles:  # roles a user catalogue adds
        if r not in FIXED_ROLES and r != "部门用户":
            out.append((r, r))
    return out


def catalogue_rows(catalogue, query: str = "") -> pd.DataFrame:
    """Search the catalogue: metrics, dimensions, tables and columns (all terms must match)."""
    rows: list[list[str]] = []
    for m in catalogue.metrics.values():
        src = ""
        model = catalogue.models.get(m.model)
        table = catalogue.tables.get(model.table) if model else None
        if table is not None:
            src = f"{table.label}（{table.source.department}）"
        rows.append(["指标", m.label, m.name, m.description, m.unit or "", "、".join(m.synonyms), src])
    for d in catalogue.dimensions.values():
        rows.append(["维度", d.label, d.name, "", "", "、".join(d.synonyms), ""])
    for t in catalogue.tables.values():
        src = f"{t.source.department} · {t.source.system} · {t.update_frequency}更新" + (f" · 截至{t.as_of}" if t.as_of else "")
        rows.append(["数据表", t.label, t.name, t.description, "", "", src])
        for cname, c in t.columns.items():
            rows.append(["字段", c.label, f"{t.name}.{cname}", c.description, c.unit or "", "、".join(c.synonyms),
                         f"{t.label}（{t.source.department}）"])
    terms = [w.lower() for w in re.split(r"[\s,，、;；]+", query or "") if w]
    if terms:
        rows = [r for r in rows if all(any(w in (cell or "").lower() for cell in r) for w in terms)]
    return pd.DataFrame(rows, columns=["类型", "中文名", "名称", "说明 / 口径", "单位", "同义词", "来源"])


def build_app(assistant: Assistant) -> gr.Blocks:
    """The Gradio Blocks app around one shared `Assistant`."""
    cat = assistant.catalogue
    choices = role_choices(assistant)
    try:  # pay the import at start-up, not on the first answer
        import openpyxl  # noqa: F401
    except ImportError:
        pass
    default_role = getattr(getattr(assistant, "default_role", None), "role", None) or getattr(cat, "default_role", "分析师")
    if default_role not in [v for _, v in choices]:
        default_role = choices[0][1] if choices else None
    as_of = getattr(cat, "as_of", "")

    def user_of(request: gr.Request | None) -> str:
        try:
            host = request.client.host if request and request.client else ""
        except Exception:
            host = ""
        return f"web@{host}" if host else "web"

    with gr.Blocks(title="有数 · 财政数据问答", analytics_enabled=False, delete_cache=(3600, 3 * 3600),
                   fill_width=True) as app:
        conv_state = gr.State(Conversation())
        last_state = gr.State(None)  # the last answer object (dict)
        refined_state = gr.State([])  # refined questions of a clarification
        pending_state = gr.State(None)  # the answer whose details are still to be drawn

        with gr.Row(equal_height=True):
            with gr.Column(scale=4, elem_id="ys-header"):
                gr.Markdown(f"# 有数\n用中文问财政数据：一般公共预算、政府性基金、税收、支出、地区生产总值……　数据截至 {as_of}")
            with gr.Column(scale=1, min_width=220):
                role = gr.Dropdown(choices=choices, value=default_role, label="角色", interactive=True,
                                   elem_id="ys-role", info="决定可查询的数据范围与脱敏")

        with gr.Tabs(elem_id="ys-tabs") as tabs:
            # ------------------------------------------------------------ 问答
            with gr.Tab("问答", id="chat", elem_id="ys-tab-chat"):
                with gr.Row():
                    with gr.Column(scale=5, min_width=380):
                        gr.Markdown("**试试这样问：**")
                        with gr.Row(elem_id="ys-examples"):
                            example_btns = [gr.Button(q, size="sm", variant="secondary") for q in EXAMPLE_QUESTIONS]
                        chatbot = gr.Chatbot(label="对话", height=500, elem_id="ys-chat", buttons=["copy"],
                                             feedback_options=None, group_consecutive_messages=False,
                                             placeholder="请输入问题，例如：2021年经开区一般公共预算收入是多少？")
                        with gr.Row(visible=False, elem_id="ys-clarify") as clarify_row:
                            clarify_btns = [gr.Button("", visible=False, size="sm", variant="primary",
                                                      elem_classes=["ys-option"]) for _ in range(MAX_OPTIONS)]
                        with gr.Row():
                            question = gr.Textbox(placeholder="输入问题后按回车，例如：那2020年呢？", show_label=False,
                                                  scale=8, lines=1, max_lines=3, elem_id="ys-question", autofocus=True)
                            send = gr.Button("发送", variant="primary", scale=1, min_width=80, elem_id="ys-send")
                            reset = gr.Button("新对话", variant="secondary", scale=1, min_width=80, elem_id="ys-reset")
                    with gr.Column(scale=6, min_width=420):
                        answer_head = gr.Markdown("#### 回答详情\n提问后，这里显示图表、数据表和来源。", elem_id="ys-answer-head")
                        line_plot = gr.LinePlot(visible=False, elem_id="ys-chart-line", label="图表", height=320)
                        bar_plot = gr.BarPlot(visible=False, elem_id="ys-chart-bar", label="图表", height=320)
                        chart_note = gr.Markdown(visible=False)
                        table = gr.Dataframe(visible=False, interactive=False, label="数据表（点击表头排序）",
                                             elem_id="ys-table", max_height=320, wrap=True)
                        with gr.Row():
                            csv_btn = gr.DownloadButton("下载 CSV", visible=False, size="sm", elem_id="ys-csv")
                            xlsx_btn = gr.DownloadButton("下载 Excel", visible=False, size="sm", elem_id="ys-xlsx")
                        with gr.Accordion("来源", open=False, visible=False, elem_id="ys-sources") as sources_acc:
                            sources_md = gr.Markdown(elem_id="ys-sources-md")
                            sources_sql = gr.Code(language="sql", interactive=False, label="SQL", elem_id="ys-sources-sql",
                                                  wrap_lines=True, lines=3, max_lines=14)

            # ------------------------------------------------------------ 分析师
            with gr.Tab("分析师", id="analyst", elem_id="ys-tab-analyst"):
                gr.Markdown("编辑上一条回答的 SQL，先 **校验** 再 **运行**。只允许只读查询，且受当前角色的数据范围和脱敏约束。")
                sql_editor = gr.Code(language="sql", interactive=True, lines=6, max_lines=24, label="SQL（可编辑）",
                                     elem_id="ys-sql", wrap_lines=True)
                with gr.Row():
                    validate_btn = gr.Button("校验", variant="secondary", elem_id="ys-validate")
                    run_btn = gr.Button("运行", variant="primary", elem_id="ys-run")
                    load_btn = gr.Button("载入上一条回答的 SQL", variant="secondary", elem_id="ys-load-sql")
                sql_msg = gr.Markdown(elem_id="ys-sql-msg")
                sql_table = gr.Dataframe(visible=False, interactive=False, label="查询结果（点击表头排序）",
                                         elem_id="ys-sql-table", max_height=360, wrap=True)
                with gr.Row():
                    sql_csv = gr.DownloadButton("下载 CSV", visible=False, size="sm", elem_id="ys-sql-csv")
                    sql_xlsx = gr.DownloadButton("下载 Excel", visible=False, size="sm", elem_id="ys-sql-xlsx")
                sql_line = gr.LinePlot(visible=False, elem_id="ys-sql-line", label="图表", height=300)
                sql_bar = gr.BarPlot(visible=False, elem_id="ys-sql-bar", label="图表", height=300)
                sql_chart_note = gr.Markdown(visible=False)

            # ------------------------------------------------------------ 数据目录
            with gr.Tab("数据目录", id="catalogue", elem_id="ys-tab-catalogue"):
                gr.Markdown("搜索指标、维度、数据表和字段（中文名、名称、同义词、口径说明、来源部门都可搜索）。")
                with gr.Row():
                    cat_query = gr.Textbox(placeholder="例如：税收、支出、财政金融局、dept", show_label=False, scale=8,
                                           elem_id="ys-cat-query")
                    cat_btn = gr.Button("搜索", variant="primary", scale=1, min_width=80, elem_id="ys-cat-search")
                cat_count = gr.Markdown()
                cat_table = gr.Dataframe(value=catalogue_rows(cat), interactive=False, wrap=True, max_height=560,
                                         elem_id="ys-cat-table", label="数据目录",
                                         column_widths=["7%", "14%", "18%", "30%", "6%", "15%", "10%"])
                roles_md = "\n".join(f"- **{n}**：{r.description}" for n, r in (getattr(cat, "roles", {}) or {}).items())
                if roles_md:
                    with gr.Accordion("角色与权限", open=False):
                        gr.Markdown(roles_md)

        # ================================================================ handlers
        chat_outputs = [chatbot, question, conv_state, refined_state, pending_state, clarify_row, *clarify_btns]
        detail_outputs = [pending_state, last_state, answer_head, line_plot, bar_plot, chart_note, table, csv_btn,
                          xlsx_btn, sources_acc, sources_md, sources_sql, sql_editor]
        answer_outputs = list(dict.fromkeys(chat_outputs + detail_outputs))

        def _answer_updates(history: list, conv, result: dict | None, message: str) -> dict:
            """Chat message plus the right-hand panel for one answer object."""
            history = list(history or [])
            history.append({"role": "assistant", "content": message})
            out: dict = {chatbot: history, question: "", conv_state: conv}
            status = (result or {}).get("status")
            # clarification buttons
            opts = ((result or {}).get("clarification") or {}).get("options") or [] if status == "clarify" else []
            refined = ((result or {}).get("clarification") or {}).get("refined_questions") or []
            refined = [refined[i] if i < len(refined) else opt for i, opt in enumerate(opts)]
            out[refined_state] = refined[:MAX_OPTIONS]
            out[clarify_row] = gr.update(visible=bool(opts))
            for i, b in enumerate(clarify_btns):
                out[b] = gr.update(value=opts[i], visible=True) if i < len(opts) else gr.update(value="", visible=False)
            return out

        def _detail_updates(result: dict) -> dict:
            """The right-hand panel (chart, table, downloads, 来源) for an answered question."""
            out: dict = {last_state: result}
            out[answer_head] = f"#### 回答详情\n{_md_escape(result.get('answer'))}"
            rows, cols = result.get("rows") or [], result.get("columns") or []
            try:
                df, types = result_frame(cols, rows)
                if len(df):
                    csv_p, xlsx_p = export_files(result, df)
                    out[table] = gr.update(value=df, datatype=types, visible=True)
                    out[csv_btn] = gr.update(value=csv_p, visible=True)
                    out[xlsx_btn] = gr.update(value=xlsx_p, visible=True)
                else:
                    out[table] = gr.update(value=None, visible=False)
                    out[csv_btn] = gr.update(visible=False)
                    out[xlsx_btn] = gr.update(visible=False)
            except Exception:
                log.exception("table/export failed")
                out[table] = gr.update(visible=False)
                out[csv_btn] = gr.update(visible=False)
                out[xlsx_btn] = gr.update(visible=False)
            out[line_plot], out[bar_plot], out[chart_note] = _plot_updates(result.get("chart"))
            out[sources_acc] = gr.update(visible=True, open=False)
            out[sources_md] = sources_markdown(result)
            out[sources_sql] = result.get("sql") or ""
            out[sql_editor] = result.get("sql") or ""
            return out

        def _ask(text: str, role_value: str, history: list, conv, request: gr.Request | None):
            """Generator: the question at once, then the answer sentence, then the details panel."""
            text = (text or "").strip()
            history = list(history or [])
            if conv is None:
                conv = Conversation()
            if not text:
                yield {question: ""}
                return
            history.append({"role": "user", "content": text})
            yield {chatbot: history, question: ""}
            t0 = time.perf_counter()
            try:
                result = assistant.ask(text, role=role_value or None, conversation=conv, user=user_of(request))
                if not isinstance(result, dict):
                    raise TypeError("answer object is not a dict")
                message = chat_text(result)
            except Exception:
                log.exception("ask failed: %s", text)
                result = None
                message = "**出错了**：处理问题时发生内部错误，请换个说法再试，或联系管理员。"
            try:
                out = _answer_updates(history, conv, result, message)
            except Exception:
                log.exception("rendering the answer failed")
                history.append({"role": "assistant", "content": "**出错了**：答案显示失败，请重试。"})
                yield {chatbot: history, question: "", conv_state: conv}
                return
            # the details panel is drawn by a follow-on event (show_details), so the chat is free
            # for the next question as soon as the sentence is shown; a clarification or refusal
            # keeps the previous answer's details on screen
            out[pending_state] = result if result is not None and result.get("status") == "answered" else None
            yield out
            log.info("问答 %s → %s，处理 %.0f 毫秒", text[:40], (result or {}).get("status"),
                     (time.perf_counter() - t0) * 1000)

        def ask_text(text, role_value, history, conv, request: gr.Request):
            yield from _ask(text, role_value, history, conv, request)

        def ask_refined(i: int):
            def handler(refined, role_value, history, conv, request: gr.Request):
                refined = refined or []
                if i >= len(refined):
                    yield {clarify_row: gr.update(visible=False)}
                    return
                yield from _ask(refined[i], role_value, history, conv, request)
            return handler

        def ask_example(i: int):
            def handler(role_value, history, conv, request: gr.Request):
                yield from _ask(EXAMPLE_QUESTIONS[i], role_value, history, conv, request)
            return handler

        def new_conversation():
            out = {chatbot: [], question: "", conv_state: Conversation(), last_state: None, refined_state: [],
                   pending_state: None,
                   clarify_row: gr.update(visible=False),
                   answer_head: "#### 回答详情\n提问后，这里显示图表、数据表和来源。",
                   line_plot: gr.update(visible=False, value=None), bar_plot: gr.update(visible=False, value=None),
                   chart_note: gr.update(visible=False), table: gr.update(visible=False, value=None),
                   csv_btn: gr.update(visible=False), xlsx_btn: gr.update(visible=False),
                   sources_acc: gr.update(visible=False), sources_md: "", sources_sql: ""}
            for b in clarify_btns:
                out[b] = gr.update(visible=False, value="")
            return out

        def show_details(pending):
            if not pending:  # a clarification or refusal: leave the panel as it is
                return {pending_state: None}
            try:
                return {**_detail_updates(pending), pending_state: None}
            except Exception:
                log.exception("rendering the answer details failed")
                return {pending_state: None}

        common = dict(outputs=chat_outputs, show_progress="minimal")
        details = dict(fn=show_details, inputs=[pending_state], outputs=detail_outputs, show_progress="hidden")
        send.click(ask_text, inputs=[question, role, chatbot, conv_state], **common).then(**details)
        question.submit(ask_text, inputs=[question, role, chatbot, conv_state], **common).then(**details)
        for i, b in enumerate(clarify_btns):
            b.click(ask_refined(i), inputs=[refined_state, role, chatbot, conv_state], **common).then(**details)
        for i, b in enumerate(example_btns):
            b.click(ask_example(i), inputs=[role, chatbot, conv_state], **common).then(**details)
        reset_outputs = [c for c in answer_outputs if c is not sql_editor]
        reset.click(new_conversation, inputs=None, outputs=reset_outputs, queue=False)
        chatbot.clear(new_conversation, inputs=None, outputs=reset_outputs, queue=False)

        # ------------------------------------------------------------ analyst handlers
        def do_validate(sql: str, role_value: str):
            sql = (sql or "").strip()
            if not sql:
                return "请先输入 SQL。"
            try:
                ok, message = assistant.validate_sql(sql, role=role_value or None)[:2]
            except Exception as e:
                log.exception("validate_sql failed")
                return f"**校验出错**：{_md_escape(type(e).__name__)}，请检查 SQL 或联系管理员。"
            head = "**校验通过**　" if ok else "**校验未通过**："
            return head + _md_escape(message).replace("\n", "  \n")

        sql_outputs = [sql_msg, sql_table, sql_csv, sql_xlsx, sql_line, sql_bar, sql_chart_note]

        def do_run(sql: str, role_value: str, request: gr.Request):
            hidden = {sql_table: gr.update(visible=False, value=None), sql_csv: gr.update(visible=False),
                      sql_xlsx: gr.update(visible=False), sql_line: gr.update(visible=False, value=None),
                      sql_bar: gr.update(visible=False, value=None), sql_chart_note: gr.update(visible=False)}
            sql = (sql or "").strip()
            if not sql:
                return {sql_msg: "请先输入 SQL。", **hidden}
            try:
                result = assistant.run_sql(sql, role=role_value or None, user=user_of(request))
            except Exception as e:
                log.exception("run_sql failed")
                return {sql_msg: f"**执行出错**：{_md_escape(type(e).__name__)}。", **hidden}
            status = result.get("status")
            if status != "answered":
                word = "**已拒绝**：" if status == "refused" else "**出错了**："
                return {sql_msg: word + _md_escape(result.get("error") or "无法执行该 SQL。"), **hidden}
            out = dict(hidden)
            rows, cols = result.get("rows") or [], result.get("columns") or []
            msg = f"**运行成功**　{_md_escape(result.get('answer') or f'查询返回{len(rows)}行。')}"
            for note in result.get("notes") or []:
                msg += f"　<small>注：{_md_escape(note)}</small>"
            tables = [s for s in result.get("sources") or [] if s.get("kind") == "table"]
            if tables:
                msg += "  \n<small>来源：" + "；".join(
                    f"{_md_escape(t.get('label'))}（{_md_escape(t.get('name'))}，{_md_escape(t.get('department'))}）" for t in tables) + "</small>"
            out[sql_msg] = msg
            try:
                df, types = result_frame(cols, rows)
                if len(df):
                    csv_p, xlsx_p = export_files(result, df)
                    out[sql_table] = gr.update(value=df, datatype=types, visible=True)
                    out[sql_csv] = gr.update(value=csv_p, visible=True)
                    out[sql_xlsx] = gr.update(value=xlsx_p, visible=True)
            except Exception:
                log.exception("sql table/export failed")
            try:
                out[sql_line], out[sql_bar], out[sql_chart_note] = _plot_updates(sql_chart(cols, rows))
            except Exception:
                log.exception("sql chart failed")
            return out

        def load_last_sql(last):
            return (last or {}).get("sql") or ""

        validate_btn.click(do_validate, inputs=[sql_editor, role], outputs=[sql_msg], show_progress="minimal")
        run_btn.click(do_run, inputs=[sql_editor, role], outputs=sql_outputs, show_progress="minimal")
        load_btn.click(load_last_sql, inputs=[last_state], outputs=[sql_editor], queue=False)

        # ------------------------------------------------------------ catalogue handlers
        def do_search(q: str):
            try:
                df = catalogue_rows(cat, q)
            except Exception:
                log.exception("catalogue search failed")
                return gr.update(), "搜索出错，请重试。"
            if not (q or "").strip():
                return df, f"共 {len(df)} 项。"
            return df, (f"找到 {len(df)} 项。" if len(df) else f"没有找到与“{_md_escape(q)}”相关的项目，换个词试试。")

        cat_btn.click(do_search, inputs=[cat_query], outputs=[cat_table, cat_count], queue=False)
        cat_query.submit(do_search, inputs=[cat_query], outputs=[cat_table, cat_count], queue=False)

    app.queue(default_concurrency_limit=8, max_size=256)
    return app


def _theme() -> gr.themes.Base:
    # Local fonts only (served by Gradio itself); never GoogleFont, which needs the internet.
    return gr.themes.Default(
        primary_hue="red", secondary_hue="slate", neutral_hue="slate",
        font=[gr.themes.LocalFont("Source Sans Pro", weights=(400, 600)), "Noto Sans CJK SC", "Microsoft YaHei",
              "PingFang SC", "sans-serif"],
        font_mono=[gr.themes.LocalFont("IBM Plex Mono", weights=(400, 600)), "Noto Sans Mono CJK SC", "monospace"],
    )


def launch_kwargs() -> dict:
    """launch() options shared by `serve` and the tests: nothing reaches the internet."""
    return dict(share=False, theme=_theme(), css=CSS, footer_links=[], ssr_mode=False, pwa=False, mcp_server=False,
                show_error=False, max_threads=40, enable_monitoring=False, quiet=True)


def make_assistant(db_path=None) -> Assistant:
    audit = None
    try:
        from semantic_layer.audit import AuditLog

        audit = AuditLog()
    except Exception:  # the audit log is optional for the UI
        audit = None
    return Assistant(db_path, audit=audit)


def serve(host: str = "127.0.0.1", port: int = 7860, db_path=None) -> None:
    """Start the UI and block (`youshu serve`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        assistant = make_assistant(db_path)
    except FileNotFoundError as e:
        raise SystemExit(f"错误：{e}")
    app = build_app(assistant)
    try:
        app.launch(server_name=host, server_port=port, inbrowser=False, prevent_thread_lock=True, **launch_kwargs())
    except OSError as e:
        raise SystemExit(f"错误：无法在 {host}:{port} 启动界面（端口可能已被占用，可用 --port 换一个端口）：{e}")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    print(f"有数已启动：http://{shown}:{port}/ （监听 {host}:{port}，按 Ctrl+C 停止）", flush=True)
    try:
        app.block_thread()
    finally:
        app.close()
