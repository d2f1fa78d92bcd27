"""The read-only query executor.

One DuckDB connection per database file, opened READ-ONLY with file system access, extension
auto-loading and configuration changes switched off (a second line of defence behind the
guard); every call runs on its own cursor so threads can share the executor. A query that
runs longer than its timeout is interrupted. Values come back JSON-friendly.

The executor does not guard: callers pass SQL returned by ``guard_sql``.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import heapq
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

READ_ONLY_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
    "memory_limit": "1GB",  # a runaway expression fails cleanly instead of exhausting the server
}


class QueryError(RuntimeError):
    """The query failed in DuckDB; the message is for the user (Chinese)."""


class QueryTimeout(QueryError):
    """The query ran longer than allowed and was interrupted."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list]
    elapsed_ms: float
    truncated: bool = False  # more rows existed than max_rows passed to run()
    types: list[str] = field(default_factory=list)

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def as_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, r)) for r in self.rows]


def to_jsonable(value: Any) -> Any:
    """DuckDB value → JSON-friendly Python (Decimal→float, date→ISO, NaN→None …)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        try:
            return to_jsonable(value.item())
        except Exception:  # noqa: BLE001
            pass
    return str(value)


def _friendly(e: Exception) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    kind = type(e).__name__
    if "Catalog" in kind or first.startswith("Catalog Error"):
        prefix = "查询引用了不存在的表、字段或函数"
    elif "Binder" in kind or first.startswith("Binder Error"):
        prefix = "查询中的字段或表达式有误"
    elif "Parser" in kind or first.startswith("Parser Error"):
        prefix = "SQL 语法有误"
    elif "Conversion" in kind or "Conversion" in first:
        prefix = "数据类型转换失败"
    elif "OutOfMemory" in kind or "Out of Memory" in first:
        prefix = "查询占用内存过多"
    elif "Permission" in kind or "read-only" in first or "Permission" in first:
        prefix = "不允许的操作（数据库为只读）"
    else:
        prefix = "查询执行失败"
    return f"{prefix}：{first}"


class _Watchdog:
    """One daemon thread that interrupts queries past their deadline.

    Replaces a ``threading.Timer`` per query: starting a thread costs little CPU but, on a busy
    machine, ``Thread.start()`` waits until the new thread is scheduled — milliseconds on every
    query. Semantics are the Timer's: ``fn`` runs once at the deadline unless cancelled first.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None

    def schedule(self, delay_s: float, fn) -> int:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + delay_s, self._seq, fn))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="youshu-query-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][1] == self._seq:  # new earliest deadline
                self._cond.notify()
            return self._seq

    def cancel(self, token: int) -> None:
        with self._cond:
            for i, item in enumerate(self._heap):
                if item[1] == token:
                    self._heap[i] = self._heap[-1]
                    self._heap.pop()
                    heapq.heapify(self._heap)
                    return

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic()))
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # noqa: BLE001 - a failed interrupt must not stop the watchdog
                pass


_WATCHDOG = _Watchdog()


def _reset_watchdog_after_fork() -> None:  # the thread does not survive fork; its lock may be held
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=_reset_watchdog_after_fork)


_SHARED: dict[str, "Executor"] = {}
_SHARED_LOCK = threading.Lock()


class Executor:
    """Read-only, thread-safe DuckDB executor for one database file.

    DuckDB refuses a second connection to the same file with a different configuration in
    one process, so share one executor per file (``Executor.shared(path)``) and pass it
    wherever a connection is needed (``parse_role(text, executor)`` accepts it).
    """

    @classmethod
    def shared(cls, db_path: str | Path | None = None) -> "Executor":
        """The process-wide executor for a database file (opened on first use)."""
        if db_path is None:
            from warehouse.paths import DEFAULT_DB

            db_path = DEFAULT_DB
        key = str(Path(db_path).resolve())
        with _SHARED_LOCK:
            ex = _SHARED.get(key)
            if ex is None or ex._closed:
                ex = _SHARED[key] = cls(db_path)
            return ex

    def __init__(self, db_path: str | Path | None = None, *, config: dict | None = None):
        if db_path is None:
            from warehouse.paths import DEFAULT_DB

            db_path = DEFAULT_DB
        self.db_path = Path(db_path)
        if not self.db_path.exists():
            raise QueryError(f"数据库文件不存在：{self.db_path}")
        cfg = dict(READ_ONLY_CONFIG)
        cfg.update(config or {})
        try:
            self._con = duckdb.connect(str(self.db_path), read_only=True, config=cfg)
        except duckdb.Error as e:
            raise QueryError(f"无法以只读方式打开数据库 {self.db_path}：{e}") from e
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._con.close()

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._closed:
                raise QueryError("查询执行器已关闭")
            return self._con.cursor()

    # ------------------------------------------------------------------ queries
    def run(self, sql: str, timeout_s: float = 10.0, max_rows: int | None = None) -> QueryResult:
        """Run one (already guarded) query; interrupt it after ``timeout_s`` seconds."""
        cur = self._cursor()
        timed_out = threading.Event()

        def interrupt() -> None:
            timed_out.set()
            try:
                cur.interrupt()
            except Exception:  # noqa: BLE001
                pass

        watchdog = _WATCHDOG
        token = watchdog.schedule(timeout_s, interrupt) if timeout_s and timeout_s > 0 else None
        t0 = time.perf_counter()
        try:
            try:
                rel = cur.execute(sql)
                desc = cur.description or []
                if max_rows is None:
                    raw = rel.fetchall()
                    truncated = False
                else:
                    raw = rel.fetchmany(max_rows + 1)
                    truncated = len(raw) > max_rows
                    raw = raw[:max_rows]
            except duckdb.InterruptException as e:
                if timed_out.is_set():
                    raise QueryTimeout(f"查询超时（超过 {timeout_s:g} 秒），已中止。请缩小时间范围或增加筛选条件。") from e
                raise QueryError("查询被中止") from e
            except duckdb.Error as e:
                if timed_out.is_set():
                    raise QueryTimeout(f"查询超时（超过 {timeout_s:g} 秒），已中止。") from e
                raise QueryError(_friendly(e)) from e
            except (TypeError, ValueError, OverflowError, MemoryError) as e:
                raise QueryError(f"查询结果无法读取：{e}") from e
        finally:
            if token is not None:
                watchdog.cancel(token)
            try:
                cur.close()
            except Exception:  # noqa: BLE001
                pass
        elapsed = (time.perf_counter() - t0) * 1000
        columns = [d[0] for d in desc]
        types = [str(d[1]) for d in desc]
        rows = [[to_jsonable(v) for v in r] for r in raw]
        return QueryResult(columns=columns, rows=rows, elapsed_ms=round(elapsed, 3), truncated=truncated, types=types)

    def tables(self) -> list[str]:
        """Base tables and views of the main schema."""
        res = self.run(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND NOT internal "
            "UNION SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal "
            "ORDER BY 1",
            timeout_s=30,
        )
        return [r[0] for r in res.rows]

    def table_checksums(self) -> dict[str, int]:
        """Per object (tables and views of main): a checksum of (row count, sum of row hashes).

        Plus '__schema__': a checksum of every object's name, type and columns, so created,
        dropped or altered objects show up too. For tests: equal dicts = unchanged database.
        """
        out: dict[str, int] = {}
        schema = self.run(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE NOT internal ORDER BY database_name, schema_name, table_name, column_index",
            timeout_s=60,
        )
        out["__schema__"] = _digest(schema.rows)
        for name in self.tables():
            quoted = '"' + name.replace('"', '""') + '"'
            res = self.run(f"SELECT count(*), coalesce(sum(hash(t)), 0) FROM {quoted} AS t", timeout_s=300)
            count, total = res.rows[0]
            out[name] = _digest([count, str(total)])
        return out


def _digest(value: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(value).encode("utf-8")).digest()[:8], "big")


__all__ = ["Executor", "QueryResult", "QueryError", "QueryTimeout", "to_jsonable", "READ_ONLY_CONFIG"]
