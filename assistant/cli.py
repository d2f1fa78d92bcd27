"""The `youshu` command line: warehouse build, ask, eval run, serve, audit, bench."""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path


def _as_of(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"错误：--as-of 应为 YYYY-MM-DD 格式，例如 2026-11-15（收到：{text}）")


def cmd_warehouse_build(args) -> int:
    from warehouse.build import build_warehouse

    report = build_warehouse(Path(args.db) if args.db else None, scale=args.scale)
    if not args.no_index:
        try:
            from assistant.retrieval_index import build_index

            build_index(Path(args.db) if args.db else None, progress=print)
        except ImportError:
            pass
        except Exception as e:  # the warehouse is built; retrieval is optional
            print(f"提示：检索索引未建立（{e}），规则解析不受影响。", file=sys.stderr)
    del report
    return 0


def cmd_warehouse_load(args) -> int:
    from warehouse.loader import load_user_file

    n = load_user_file(Path(args.file), table=args.table, catalogue=Path(args.catalogue) if args.catalogue else None,
                       db_path=Path(args.db) if args.db else None, sheet=args.sheet)
    print(f"已导入 {n} 行到表 {args.table}。")
    return 0


def _assistant(args):
    from assistant.engine import Assistant

    audit = None
    if not getattr(args, "no_audit", False):
        try:
            from semantic_layer.audit import AuditLog

            audit = AuditLog()
        except ImportError:
            audit = None
    try:
        return Assistant(args.db, role=getattr(args, "role", None), audit=audit)
    except FileNotFoundError as e:
        raise SystemExit(f"错误：{e}")


def _error_object(question: str, message: str) -> dict:
    """The answer object for a failure before any answering started (bad --db, --role, --as-of)."""
    return {"status": "error", "question": question, "answer": "", "sql": None, "columns": [], "rows": [],
            "interpretation": {}, "sources": [], "chart": None, "clarification": None, "error": message,
            "timings_ms": {}}


def cmd_ask(args) -> int:
    import getpass

    try:
        as_of = _as_of(args.as_of)
        assistant = _assistant(args)
        result = assistant.ask(args.question, as_of=as_of, role=args.role, mode=args.mode,
                               user=os.environ.get("YOUSHU_USER") or getpass.getuser())
    except SystemExit as e:  # our own clear messages (missing warehouse, bad date)
        message = str(e.code).removeprefix("错误：")
        if not args.json:
            raise
        result = _error_object(args.question, message)
    except Exception as e:  # bad database file, locked file, unknown role …
        message = _friendly(e)
        if not args.json:
            print(f"错误：{message}", file=sys.stderr)
            return 2
        result = _error_object(args.question, message)
    if args.json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")
        return 0 if result["status"] in ("answered", "clarify", "refused") else 1
    from assistant.render import render_text

    print(render_text(result))
    return 0 if result["status"] in ("answered", "clarify", "refused") else 1


def _friendly(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if any("\u4e00" <= ch <= "\u9fff" for ch in text):
        return text
    return f"无法完成：{type(e).__name__}：{text[:200]}"


def cmd_eval_run(args) -> int:
    from eval.runner import run_eval

    return run_eval(args)


def cmd_eval_compare(args) -> int:
    from eval.scoring import compare_reports

    a = json.loads(Path(args.a).read_text(encoding="utf-8"))
    b = json.loads(Path(args.b).read_text(encoding="utf-8"))
    print(compare_reports(a, b))
    return 0


def cmd_serve(args) -> int:
    from assistant.ui import serve

    serve(host=args.host, port=args.port, db_path=args.db)
    return 0


def cmd_audit(args) -> int:
    from semantic_layer.audit import audit_main

    return audit_main(args) or 0


def cmd_bench(args) -> int:
    from eval.bench import main as bench_main

    return bench_main(args) or 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="youshu", description="有数：用中文问财政数据")
    sub = p.add_subparsers(dest="command", required=True)

    wh = sub.add_parser("warehouse", help="数据仓库").add_subparsers(dest="wh_command", required=True)
    b = wh.add_parser("build", help="生成演示数据仓库（DuckDB）")
    b.add_argument("--db", help="数据库文件路径（默认 data/youshu.duckdb）")
    b.add_argument("--scale", type=float, default=1.0, help="规模，1 为全量，测试可用 0.01")
    b.add_argument("--no-index", action="store_true", help="不建立检索索引")
    b.set_defaults(func=cmd_warehouse_build)
    ld = wh.add_parser("load", help="导入自己的 CSV/Excel 数据")
    ld.add_argument("file")
    ld.add_argument("--table", required=True, help="目标表名")
    ld.add_argument("--catalogue", help="描述该表的数据目录 YAML")
    ld.add_argument("--sheet", help="Excel 工作表名")
    ld.add_argument("--db")
    ld.set_defaults(func=cmd_warehouse_load)

    a = sub.add_parser("ask", help="回答一个问题")
    a.add_argument("question")
    a.add_argument("--db")
    a.add_argument("--as-of", dest="as_of", help="把哪天当作“今天”（YYYY-MM-DD）")
    a.add_argument("--role", help="角色：领导、分析师、部门用户:单位、审计")
    a.add_argument("--mode", choices=["rule", "llm", "hybrid"], default="rule")
    a.add_argument("--json", action="store_true", help="输出 JSON 答案对象")
    a.add_argument("--no-audit", action="store_true", help=argparse.SUPPRESS)
    a.set_defaults(func=cmd_ask)

    ev = sub.add_parser("eval", help="评测").add_subparsers(dest="eval_command", required=True)
    r = ev.add_parser("run", help="批量回答问题集并评分")
    r.add_argument("--questions", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--db")
    r.add_argument("--mode", choices=["rule", "llm", "hybrid"], default="rule")
    r.add_argument("--split", help="只跑某个划分（train/dev/test）")
    r.add_argument("--report", help="报告文件前缀（默认与 --out 同名的 .report.json/.report.md）")
    r.add_argument("--role")
    r.set_defaults(func=cmd_eval_run)
    c = ev.add_parser("compare", help="比较两次评测报告")
    c.add_argument("a")
    c.add_argument("b")
    c.set_defaults(func=cmd_eval_compare)

    s = sub.add_parser("serve", help="启动聊天界面")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--db")
    s.set_defaults(func=cmd_serve)

    au = sub.add_parser("audit", help="查看审计日志")
    from semantic_layer.audit import add_audit_arguments

    add_audit_arguments(au)
    au.set_defaults(func=cmd_audit)

    be = sub.add_parser("bench", help="性能基准")
    be.add_argument("--db")
    be.add_argument("--skip-build", action="store_true")
    be.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("已中断。", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        print(f"错误：{e}", file=sys.stderr)
        return 2
    except Exception as e:  # never a traceback for the user
        print(f"错误：{_friendly(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
