"""Build the demo warehouse into a DuckDB file, atomically.

``build_warehouse()`` writes into a temporary file next to the target, runs the generator
(:mod:`warehouse.generator`) and the yearbook loader (:mod:`warehouse.yearbook`), records a
``meta_build`` row, checkpoints, closes and then ``os.replace``s the temporary file onto the
target.  If anything fails the temporary file is removed and the previous warehouse is left
untouched.

Command line: ``python -m warehouse.build [--db PATH] [--scale F] [--seed N]``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import importlib.util
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import duckdb

from warehouse import generator as _generator
from warehouse import paths

__all__ = ["build_warehouse"]


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def build_warehouse(db_path: Path | None = None, scale: float = 1.0,
                    progress: Callable[[str], None] | None = print,
                    seed: int = _generator.DEFAULT_SEED) -> dict:
    """Build the warehouse at ``db_path`` (default ``warehouse.paths.DEFAULT_DB``).

    Returns the generator's result dict plus ``db_path``, ``seconds`` and ``yearbook_rows``
    (``None`` when ``warehouse.yearbook`` is not available).
    """
    db_path = Path(db_path) if db_path is not None else Path(paths.DEFAULT_DB)
    db_path = db_path.expanduser().resolve()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(f".{db_path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp_wal = tmp.with_name(tmp.name + ".wal")
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if progress is not None:
            progress(f"[{time.perf_counter() - t0:6.1f}s] {msg}")

    say(f"开始构建演示数仓：规模 {scale:g}，随机种子 {seed}，目标文件 {db_path}")
    try:
        con = duckdb.connect(str(tmp))
        try:
            result = _generator.generate(con, scale=scale, seed=seed, progress=say)
            result["yearbook_rows"] = _load_yearbook(con, say)
            _write_meta(con, result, scale, seed, time.perf_counter() - t0)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, db_path)
    except BaseException:
        _remove(tmp)
        _remove(tmp_wal)
        raise
    # a WAL left over from the previous file must not be replayed onto the new one
    _remove(tmp_wal)
    _remove(db_path.with_name(db_path.name + ".wal"))
    result["db_path"] = str(db_path)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    size_mb = db_path.stat().st_size / 2**20
    say(f"完成：{db_path}（{size_mb:,.1f} MB），共 {sum(result['row_counts'].values()):,} 行，"
        f"用时 {result['seconds']:.1f} 秒")
    return result


def _load_yearbook(con: duckdb.DuckDBPyConnection, say: Callable[[str], None]) -> int | None:
    if importlib.util.find_spec("warehouse.yearbook") is None:
        say("警告：未找到 warehouse.yearbook（分地区一般公共预算收支加载器），"
            "本次未生成 pub_region_budget 表")
        return None
    yearbook = importlib.import_module("warehouse.yearbook")
    n = yearbook.load_yearbook(con)
    say(f"载入统计年鉴分地区预算收支 … {n:,} 行")
    return n


def _write_meta(con, result: dict, scale: float, seed: int, seconds: float) -> None:
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()]
    counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    result["row_counts"] = counts
    con.execute("""
        CREATE TABLE meta_build (
            seed BIGINT, scale DOUBLE, built_at TIMESTAMP, data_as_of DATE,
            generator_version VARCHAR, duckdb_version VARCHAR, build_seconds DOUBLE,
            row_counts VARCHAR)""")
    con.execute("INSERT INTO meta_build VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
        seed, float(scale), _dt.datetime.now().replace(microsecond=0),
        _dt.date.fromisoformat(_generator.DATA_AS_OF), _generator.GENERATOR_VERSION,
        duckdb.__version__, round(seconds, 2), json.dumps(counts, ensure_ascii=False)])
    con.execute("CREATE TABLE meta_table_rows (table_name VARCHAR, row_count BIGINT)")
    con.executemany("INSERT INTO meta_table_rows VALUES (?, ?)", list(counts.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="构建有数演示数仓（DuckDB）")
    ap.add_argument("--db", type=Path, default=None, help=f"目标文件（默认 {paths.DEFAULT_DB}）")
    ap.add_argument("--scale", type=float, default=1.0, help="规模系数，1 为全量")
    ap.add_argument("--seed", type=int, default=_generator.DEFAULT_SEED)
    args = ap.parse_args(argv)
    build_warehouse(args.db, scale=args.scale, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
