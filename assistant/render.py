"""Readable terminal rendering of an answer object."""
from __future__ import annotations


def render_text(result: dict, max_rows: int = 30) -> str:
    lines: list[str] = []
    status = result.get("status")
    if status == "refused":
        return f"无法回答：{result.get('error')}"
    if status == "error":
        return f"出错了：{result.get('error')}"
    if status == "clarify":
        c = result.get("clarification") or {}
        lines.append(c.get("question", "请补充说明"))
        for i, opt in enumerate(c.get("options", []), 1):
            lines.append(f"  {i}. {opt}")
        return "\n".join(lines)
    lines.append(result.get("answer", ""))
    for note in result.get("notes", []) or []:
        lines.append(f"（{note}）")
    cols = result.get("columns") or []
    rows = result.get("rows") or []
    if cols and rows:
        lines.append("")
        header = [c["label"] + (f"（{c['unit']}）" if c.get("unit") else "") for c in cols]
        table = [header] + [[_cell(v, c) for v, c in zip(r, cols)] for r in rows[:max_rows]]
        widths = [max(_width(row[i]) for row in table) for i in range(len(header))]
        for j, row in enumerate(table):
            lines.append("  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths)))
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        if len(rows) > max_rows:
            lines.append(f"……共 {len(rows)} 行，仅显示前 {max_rows} 行")
    srcs = result.get("sources") or []
    if srcs:
        lines.append("")
        lines.append("来源：")
        for s in srcs:
            if s.get("kind") == "metric":
                lines.append(f"  · 指标 {s['label']}：{s.get('definition', '')}")
            elif s.get("kind") == "table":
                lines.append(f"  · {s['label']}（{s['name']}）— {s.get('department', '')} {s.get('system', '')}，{s.get('update_frequency', '')}更新")
            elif s.get("kind") == "as_of":
                lines.append(f"  · 数据截至 {s['as_of']}")
    if result.get("sql"):
        lines.append("")
        lines.append("SQL：")
        lines.append(result["sql"])
    return "\n".join(lines)


def _cell(v, col) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}"
    return "" if v is None else str(v)


def _width(s: str) -> int:
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in s)
