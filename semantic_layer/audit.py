"""Append-only audit log of every question and query (JSONL).

One JSON object per line, written with a single ``write`` on a file opened in append mode,
under a process-wide lock per file and an advisory ``flock`` (other processes), then flushed
and fsync'ed. Nothing here rewrites or deletes lines.

Path: the ``path`` argument, else ``$YOUSHU_AUDIT_LOG``, else ``warehouse.paths.DATA_DIR /
'audit.jsonl'``.

``audit_main(argv)`` is the ``youshu audit`` subcommand: it prints a table of matching
records (or JSON lines with ``--json``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import threading
import unicodedata
from pathlib import Path
from typing import Any, Iterable, TextIO

try:  # POSIX advisory locks; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

FIELDS = ("ts", "user", "role", "question", "status", "interpretation", "sql", "row_count", "timings_ms", "error")
STATUSES = ("ok", "error", "refused", "clarify", "timeout")  # conventional values; any string is accepted

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def default_audit_path() -> Path:
    env = os.environ.get("YOUSHU_AUDIT_LOG")
    if env:
        return Path(env)
    from warehouse.paths import DATA_DIR

    return Path(DATA_DIR) / "audit.jsonl"


def _lock_for(path: Path) -> threading.Lock:
    key = str(path.resolve())
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.Lock()
        return lock


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="milliseconds")


def _parse_ts(value: Any) -> dt.datetime | None:
    """ISO timestamp / date / datetime → aware datetime (naive values are local time)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        d = value
    elif isinstance(value, dt.date):
        d = dt.datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            d = dt.datetime.fromisoformat(text)
        except ValueError:
            try:
                d = dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
            except ValueError as e:
                raise ValueError(f"无法识别的时间：{text}（请用 YYYY-MM-DD 或 YYYY-MM-DDTHH:MM）") from e
    if d.tzinfo is None:
        d = d.astimezone()
    return d


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    return str(value)


class AuditLog:
    """Append-only JSONL audit log."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_audit_path()
        self._lock = _lock_for(self.path)

    # ------------------------------------------------------------------ writing
    def append(self, record: dict) -> dict:
        """Append one record; fills ``ts`` and the standard fields; returns what was written."""
        rec: dict[str, Any] = {k: None for k in FIELDS}
        rec.update(record or {})
        if not rec.get("ts"):
            rec["ts"] = _now()
        elif not isinstance(rec["ts"], str):
            rec["ts"] = _jsonable(rec["ts"])
        if rec.get("role") is not None and not isinstance(rec["role"], str):
            rec["role"] = str(rec["role"])  # RoleContext → '部门用户:004'
        line = json.dumps(rec, ensure_ascii=False, default=_jsonable, separators=(",", ":"))
        if "\n" in line:  # json.dumps escapes newlines; defensive only
            line = line.replace("\n", "\\n")
        data = (line + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    view = memoryview(data)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                    os.fsync(fd)
                finally:
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        return rec

    # ------------------------------------------------------------------ reading
    def records(self) -> Iterable[dict]:
        """Every readable record, oldest first (a torn or corrupt line is skipped)."""
        if not self.path.exists():
            return
        with open(self.path, "r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict):
                    yield rec

    def query(
        self,
        since: Any = None,
        user: str | None = None,
        role: str | None = None,
        status: str | None = None,
        contains: str | None = None,
        limit: int | None = 100,
        until: Any = None,
    ) -> list[dict]:
        """Matching records, newest first, at most ``limit`` (None = all).

        ``since``/``until``: ISO date or timestamp (or date/datetime), inclusive/exclusive;
        ``role``: '部门用户' matches '部门用户:004' too; ``contains``: case-insensitive
        substring of question, interpretation, sql or error.
        """
        since_d = _parse_ts(since)
        until_d = _parse_ts(until)
        needle = contains.lower() if contains else None
        out: list[dict] = []
        for rec in self.records():
            if user is not None and rec.get("user") != user:
                continue
            if role is not None:
                r = str(rec.get("role") or "")
                if r != role and r.split(":", 1)[0] != role:
                    continue
            if status is not None and rec.get("status") != status:
                continue
            if since_d or until_d:
                try:
                    ts = _parse_ts(rec.get("ts"))
                except ValueError:
                    continue
                if ts is None or (since_d and ts < since_d) or (until_d and ts >= until_d):
                    continue
            if needle:
                hay = " ".join(
                    json.dumps(rec.get(k), ensure_ascii=False) if not isinstance(rec.get(k), str) else rec[k]
                    for k in ("question", "interpretation", "sql", "error")
                    if rec.get(k) is not None
                ).lower()
                if needle not in hay:
                    continue
            out.append(rec)
        out.reverse()
        return out if limit is None else out[: max(0, int(limit))]


# ----------------------------------------------------------------------------- CLI
def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _fit(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    if _width(text) > width:
        out, w = "", 0
        for ch in text:
            cw = _width(ch)
            if w + cw > width - 1:
                break
            out += ch
            w += cw
        text = out + "…"
    return text + " " * (width - _width(text))


def _total_ms(timings: Any) -> str:
    if isinstance(timings, dict):
        if "total" in timings:
            return f"{float(timings['total']):.0f}"
        try:
            return f"{sum(float(v) for v in timings.values()):.0f}"
        except (TypeError, ValueError):
            return ""
    if isinstance(timings, (int, float)):
        return f"{timings:.0f}"
    return ""


def format_table(records: list[dict], *, show_sql: bool = False) -> str:
    """A fixed-width table (CJK-aware) of audit records."""
    cols = [("时间", 19), ("用户", 10), ("角色", 14), ("状态", 8), ("行数", 6), ("耗时ms", 7), ("问题", 40)]
    if show_sql:
        cols.append(("SQL / 错误", 60))
    lines = ["  ".join(_fit(h, w) for h, w in cols).rstrip()]
    lines.append("  ".join("-" * w for _, w in cols))
    for r in records:
        ts = str(r.get("ts") or "")[:19].replace("T", " ")
        values = [
            ts,
            r.get("user") or "",
            r.get("role") or "",
            r.get("status") or "",
            "" if r.get("row_count") is None else str(r.get("row_count")),
            _total_ms(r.get("timings_ms")),
            r.get("question") or "",
        ]
        if show_sql:
            values.append(r.get("error") or r.get("sql") or "")
        lines.append("  ".join(_fit(v, w) for v, (_, w) in zip(values, cols)).rstrip())
    lines.append(f"共 {len(records)} 条")
    return "\n".join(lines)


def add_audit_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``youshu audit`` (usable on a subparser)."""
    parser.add_argument("--since", help="起始时间（含），如 2026-11-01 或 2026-11-01T09:00")
    parser.add_argument("--until", help="截止时间（不含）")
    parser.add_argument("--user", help="用户")
    parser.add_argument("--role", help="角色，如 领导、部门用户（也匹配 部门用户:004）")
    parser.add_argument("--status", help="状态，如 ok、error、refused、timeout")
    parser.add_argument("--contains", help="问题、SQL、解释或错误中包含的文字")
    parser.add_argument("--limit", type=int, default=100, help="最多显示条数（默认 100，最新的在前）")
    parser.add_argument("--sql", action="store_true", help="同时显示 SQL 或错误")
    parser.add_argument("--json", action="store_true", help="输出 JSON 行而不是表格")
    parser.add_argument("--log", help="审计日志路径（默认 $YOUSHU_AUDIT_LOG 或 data/audit.jsonl）")
    return parser


def audit_main(argv: list[str] | argparse.Namespace | None = None, out: TextIO | None = None) -> int:
    """``youshu audit [--since …] [--user …] [--role …] [--status …] [--contains …] [--limit N] [--sql] [--json]``.

    Accepts an argv list or a Namespace already parsed with ``add_audit_arguments``.
    Returns the process exit code.
    """
    out = out or sys.stdout
    if isinstance(argv, argparse.Namespace):
        args = argv
    else:
        parser = add_audit_arguments(argparse.ArgumentParser(prog="youshu audit", description="查看审计日志"))
        args = parser.parse_args(argv)
    log = AuditLog(getattr(args, "log", None))
    try:
        records = log.query(
            since=args.since,
            until=getattr(args, "until", None),
            user=args.user,
            role=args.role,
            status=args.status,
            contains=args.contains,
            limit=args.limit,
        )
    except ValueError as e:
        print(f"错误：{e}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        for r in records:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    else:
        out.write(f"审计日志：{log.path}\n")
        out.write(format_table(records, show_sql=getattr(args, "sql", False)) + "\n")
    return 0


__all__ = ["AuditLog", "audit_main", "add_audit_arguments", "format_table", "default_audit_path", "FIELDS"]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(audit_main())
