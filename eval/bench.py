"""`youshu bench`: the performance benchmark on the full-scale warehouse, as ONE table.

What it measures (wall time everywhere, CPU time next to it: the machine may be shared):

* warm latency of ``Assistant.ask`` (rule mode, in this process) for every benchmark question
  that is answered, median of a few runs each, next to the time DuckDB itself takes to run the
  answer's final ``sql`` on the same read-only connection (median of a few runs each);
* cold start: ``youshu ask "…"`` as a whole new process, median of 5;
* ``youshu warehouse build`` (scale 1): wall, CPU, peak RSS, and its warehouse / retrieval-index parts;
* ``youshu eval run`` over the whole benchmark (all splits), whole process;
* ``youshu serve``: peak and current resident memory after 200 questions sent through Gradio's API.

Each subprocess is reaped with ``os.wait4`` so its own CPU time and peak RSS are exact.
The table is printed and appended (dated) to ``eval/bench_results.md``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "eval" / "questions.jsonl"
RESULTS = ROOT / "eval" / "bench_results.md"
COLD_QUESTION = "2021年经开区一般公共预算收入是多少？"
COLD_RUNS = 5
WARM_RUNS = 3  # Assistant.ask per question (after one warm-up pass over all questions)
DB_RUNS = 3  # DuckDB alone per final SQL
SERVE_QUESTIONS = 200

# targets
WARM_FACTOR, WARM_SLACK_MS = 1.5, 15.0
COLD_TARGET_S = 1.5
BUILD_TARGET_S = 60.0
SERVE_TARGET_MB = 1.5 * 1024
EVAL_TARGET_S = 60.0


# ----------------------------------------------------------------------------- helpers
@dataclass
class Proc:
    """One finished subprocess: wall seconds, CPU seconds (user+sys), peak RSS (MiB), output."""

    wall: float
    cpu: float
    maxrss_mb: float
    returncode: int
    output: str = ""
    extra: dict = field(default_factory=dict)


def _youshu() -> list[str]:
    exe = Path(sys.executable).with_name("youshu")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("youshu")
    return [found] if found else [sys.executable, "-m", "assistant.cli"]


def _reap(proc: subprocess.Popen) -> tuple[int, float, float]:
    """wait4 the child: (exit code, CPU seconds, peak RSS MiB) of that process alone."""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


# A child's peak RSS (ru_maxrss) includes the memory of the process it was forked from, up to
# exec — and this process holds the warm assistant. So commands run under a small launcher:
# the command is forked from the launcher, and the launcher reports its wall, CPU and peak RSS.
_LAUNCHER = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, ru = os.wait4(p.pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    json.dump({"code": os.waitstatus_to_exitcode(status), "wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
               "rss_mb": ru.ru_maxrss / 1024}, f)
"""


def _run(cmd: list[str], env: dict, log: Path) -> Proc:
    stats = log.with_suffix(".rusage.json")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(stats), *cmd], cwd=str(ROOT), env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        proc.wait()
    r = json.loads(stats.read_text()) if stats.exists() else {"code": proc.returncode, "wall": float("nan"),
                                                              "cpu": float("nan"), "rss_mb": float("nan")}
    code, wall, cpu, rss = r["code"], r["wall"], r["cpu"], r["rss_mb"]
    text = log.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        print(f"  ! {' '.join(cmd[1:3])} 退出码 {code}：\n{text[-2000:]}", file=sys.stderr)
    return Proc(wall, cpu, rss, code, text)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _p95(xs: list[float]) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(0.95 * len(s) + 0.5)) - 1))]


def _git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return (rev or "?") + ("（工作区有未提交改动）" if dirty else "")
    except Exception:  # noqa: BLE001
        return "?"


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _questions() -> list[dict]:
    from eval.runner import read_jsonl

    return read_jsonl(QUESTIONS)


def _ok(flag: bool | None) -> str:
    return "—" if flag is None else ("✓" if flag else "✗")


# ----------------------------------------------------------------------------- parts
def bench_build(db: Path, env: dict, work: Path) -> Proc:
    print(f"· 构建全量仓库 → {db}", flush=True)
    p = _run(_youshu() + ["warehouse", "build", "--db", str(db)], env, work / "build.log")
    m = re.search(r"完成：.*用时 ([0-9.]+) 秒", p.output)
    p.extra["warehouse_s"] = float(m.group(1)) if m else None
    m = re.search(r"检索索引(已重建|无变化，跳过)（([0-9.]+) 秒）", p.output)
    if m:
        p.extra["index_s"] = float(m.group(2))
        p.extra["index"] = "重建" if m.group(1) == "已重建" else "复用"
    else:
        p.extra["index"] = "未建立"
    return p


def bench_warm(db: Path, questions: list[dict]) -> dict:
    from assistant.engine import Assistant

    print(f"· 热启动延迟：{len(questions)} 题，先全部答一遍预热，再每题 {WARM_RUNS} 次 + DuckDB {DB_RUNS} 次", flush=True)
    a = Assistant(db)
    as_of = {q["id"]: _dt.date.fromisoformat(q["as_of"]) if q.get("as_of") else None for q in questions}
    first, first_ms, first_cpu = [], {}, {}
    for q in questions:  # the warm-up pass: a warm process, but each question for the first time
        c0, t0 = time.process_time(), time.perf_counter()
        first.append(a.ask(q["question"], as_of=as_of[q["id"]], mode="rule"))
        first_ms[q["id"]] = (time.perf_counter() - t0) * 1000
        first_cpu[q["id"]] = (time.process_time() - c0) * 1000
    answered = [(q, r) for q, r in zip(questions, first) if r["status"] == "answered" and r.get("sql")]
    lat, cpu, dbt, dbcpu, over = [], [], [], [], []
    stages: dict[str, list[float]] = {}
    paths: dict[str, int] = {}
    for q, r in answered:
        runs, cruns = [], []
        last = r
        for _ in range(WARM_RUNS):
            c0, t0 = time.process_time(), time.perf_counter()
            last = a.ask(q["question"], as_of=as_of[q["id"]], mode="rule")
            runs.append((time.perf_counter() - t0) * 1000)
            cruns.append((time.process_time() - c0) * 1000)
        d_runs, d_cpu = [], []
        cur = a.executor._cursor()
        try:
            for _ in range(DB_RUNS):
                c0, t0 = time.process_time(), time.perf_counter()
                cur.execute(r["sql"]).fetchall()
                d_runs.append((time.perf_counter() - t0) * 1000)
                d_cpu.append((time.process_time() - c0) * 1000)
        finally:
            cur.close()
        lat.append(_median(runs))
        cpu.append(_median(cruns))
        dbt.append(_median(d_runs))
        dbcpu.append(_median(d_cpu))
        over.append(lat[-1] - dbt[-1])
        for k, v in (last.get("timings_ms") or {}).items():
            stages.setdefault(k, []).append(v)
        paths[last.get("path") or "?"] = paths.get(last.get("path") or "?", 0) + 1
    statuses: dict[str, int] = {}
    for r in first:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    a.executor.close()
    return {"n": len(answered), "total": len(questions), "lat": lat, "cpu": cpu, "db": dbt, "dbcpu": dbcpu,
            "first": [first_ms[q["id"]] for q, _ in answered], "first_cpu": [first_cpu[q["id"]] for q, _ in answered],
            "over": over, "stages": {k: _median(v) for k, v in stages.items()}, "paths": paths,
            "statuses": statuses}


def bench_cold(db: Path, env: dict, work: Path) -> dict:
    print(f"· 冷启动：youshu ask（新进程）× {COLD_RUNS}（另先跑 1 次不计时）", flush=True)
    cmd = _youshu() + ["ask", COLD_QUESTION, "--db", str(db)]
    _run(cmd, env, work / "cold-0.log")
    runs = [_run(cmd, env, work / f"cold-{i + 1}.log") for i in range(COLD_RUNS)]
    return {"wall": _median([p.wall for p in runs]), "cpu": _median([p.cpu for p in runs]),
            "rss": _median([p.maxrss_mb for p in runs]), "walls": [p.wall for p in runs],
            "ok": all(p.returncode == 0 for p in runs), "answer": runs[-1].output.strip().splitlines()[:1]}


def bench_eval(db: Path, env: dict, work: Path) -> dict:
    print("· 全部基准评测：youshu eval run（新进程）", flush=True)
    out = work / "pred.jsonl"
    p = _run(_youshu() + ["eval", "run", "--questions", str(QUESTIONS), "--out", str(out), "--db", str(db)],
             env, work / "eval.log")
    res = {"wall": p.wall, "cpu": p.cpu, "rss": p.maxrss_mb, "ok": p.returncode == 0}
    m = re.search(r"共 (\d+) 题，用时 ([0-9.]+) 秒", p.output)
    if m:
        res["n"], res["answering_s"] = int(m.group(1)), float(m.group(2))
    report = out.with_suffix("").with_name(out.stem + ".report.json")
    if report.exists():
        o = json.loads(report.read_text(encoding="utf-8")).get("overall", {})
        res["accuracy"] = o.get("accuracy")
        res["execution_accuracy"] = o.get("execution_accuracy")
    return res


def bench_serve(db: Path, env: dict, work: Path, questions: list[dict]) -> dict:
    print(f"· youshu serve：{SERVE_QUESTIONS} 个问题经 Gradio API", flush=True)
    port = _free_port()
    log = work / "serve.log"
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(_youshu() + ["serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)],
                                cwd=str(ROOT), env=env, stdout=out, stderr=subprocess.STDOUT)
    res: dict = {"ok": False}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"youshu serve 提前退出：{log.read_text(errors='replace')[-1500:]}")
            try:
                with urllib.request.urlopen(url, timeout=3) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.25)
        else:
            raise RuntimeError("youshu serve 300 秒内没有启动")
        res["startup_s"] = time.perf_counter() - t0
        from gradio_client import Client

        client = Client(url, verbose=False, download_files=False)
        t1 = time.perf_counter()
        errors = 0
        for i in range(SERVE_QUESTIONS):
            q = questions[i % len(questions)]["question"]
            try:
                client.predict(q, "分析师", [], api_name="/ask_text")
            except Exception:  # noqa: BLE001 - counted, the memory figure still matters
                errors += 1
        res["questions_s"] = time.perf_counter() - t1
        res["errors"] = errors
        status = Path(f"/proc/{proc.pid}/status").read_text()
        for key in ("VmHWM", "VmRSS"):
            m = re.search(rf"{key}:\s+(\d+) kB", status)
            res[key] = int(m.group(1)) / 1024 if m else None
        res["ok"] = errors == 0
        try:
            client.close()
        except Exception:  # noqa: BLE001
            pass
    except Exception as e:  # noqa: BLE001
        res["error"] = str(e)[:300]
        print(f"  ! serve：{e}", file=sys.stderr)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                _, cpu, _ = _reap(proc)
                res["cpu"] = cpu
            except ChildProcessError:
                pass
    return res


# ----------------------------------------------------------------------------- report
def _ms(x: float) -> str:
    return f"{x:,.1f} ms"


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:,.2f} s"


def render(meta: dict, build: Proc | None, warm: dict, cold: dict, ev: dict, serve: dict) -> str:
    rows: list[tuple[str, str, str, str]] = []
    lat_med, db_med = _median(warm["lat"]), _median(warm["db"])
    limit = WARM_FACTOR * db_med + WARM_SLACK_MS
    rows.append((f"热启动延迟 Assistant.ask（规则模式，{warm['n']}/{warm['total']} 题已回答，每题 {WARM_RUNS} 次取中位数）",
                 f"中位数 {_ms(lat_med)}，p95 {_ms(_p95(warm['lat']))}；CPU 中位数 {_ms(_median(warm['cpu']))}",
                 f"≤ 1.5 × DuckDB + 15 ms = {_ms(limit)}", _ok(lat_med <= limit)))
    rows.append(("同上，每题第一次回答（预热那一遍：进程已热，但这道题是第一次问）",
                 f"中位数 {_ms(_median(warm['first']))}，p95 {_ms(_p95(warm['first']))}；CPU 中位数 {_ms(_median(warm['first_cpu']))}",
                 "", ""))
    rows.append((f"DuckDB 自身执行同一最终 SQL（同进程同连接，每题 {DB_RUNS} 次取中位数）",
                 f"中位数 {_ms(db_med)}，p95 {_ms(_p95(warm['db']))}；CPU 中位数 {_ms(_median(warm['dbcpu']))}", "", ""))
    rows.append(("**比值（延迟中位数 ÷ DuckDB 中位数）**", f"**{lat_med / db_med:.2f}×**" if db_med else "—", "", ""))
    rows.append(("中位数额外开销（每题 延迟 − DuckDB，取中位数 / p95）",
                 f"{_ms(_median(warm['over']))} / {_ms(_p95(warm['over']))}", "", ""))
    st = warm["stages"]
    rows.append(("各阶段中位数（timings_ms）",
                 "，".join(f"{k} {st[k]:.1f}" for k in ("parse", "retrieve", "compile", "guard", "execute", "format", "total") if k in st)
                 + " ms", "", ""))
    rows.append((f"冷启动 `youshu ask \"{COLD_QUESTION}\"`（新进程，{COLD_RUNS} 次中位数）",
                 f"{_s(cold['wall'])}（CPU {_s(cold['cpu'])}，峰值内存 {cold['rss']:,.0f} MB；各次 "
                 + " ".join(f"{w:.2f}" for w in cold["walls"]) + "）",
                 f"< {COLD_TARGET_S:g} s", _ok(cold["ok"] and cold["wall"] < COLD_TARGET_S)))
    if build is None:
        rows.append(("`youshu warehouse build`（全量）", "已跳过（--skip-build）", f"< {BUILD_TARGET_S:g} s", "—"))
    else:
        parts = f"仓库 {_s(build.extra.get('warehouse_s'))}；检索索引 {_s(build.extra.get('index_s'))}（{build.extra.get('index')}）"
        rows.append(("`youshu warehouse build`（全量，scale 1）",
                     f"{_s(build.wall)}（CPU {_s(build.cpu)}，峰值内存 {build.maxrss_mb:,.0f} MB）；{parts}",
                     f"< {BUILD_TARGET_S:g} s", _ok(build.returncode == 0 and build.wall < BUILD_TARGET_S)))
    acc = ""
    if ev.get("accuracy") is not None:
        acc = f"；准确率 {ev['accuracy'] * 100:.1f}%（执行准确率 {ev['execution_accuracy'] * 100:.1f}%）"
    rows.append((f"全部基准评测 `youshu eval run`（{ev.get('n', '?')} 题，规则模式，整个进程）",
                 f"{_s(ev['wall'])}（CPU {_s(ev['cpu'])}，其中答题 {_s(ev.get('answering_s'))}，峰值内存 {ev['rss']:,.0f} MB）{acc}",
                 f"< {EVAL_TARGET_S:g} s", _ok(ev["ok"] and ev["wall"] < EVAL_TARGET_S)))
    if serve.get("VmHWM") is not None:
        rows.append((f"`youshu serve` {SERVE_QUESTIONS} 问后常驻内存（/proc VmHWM 峰值 / VmRSS 当前）",
                     f"{serve['VmHWM']:,.0f} MB / {serve['VmRSS']:,.0f} MB（启动 {_s(serve.get('startup_s'))}，"
                     f"{SERVE_QUESTIONS} 问 {_s(serve.get('questions_s'))}，CPU {_s(serve.get('cpu'))}，出错 {serve.get('errors')}）",
                     f"< {SERVE_TARGET_MB / 1024:g} GB", _ok(serve["ok"] and serve["VmHWM"] < SERVE_TARGET_MB)))
    else:
        rows.append((f"`youshu serve` {SERVE_QUESTIONS} 问后常驻内存", f"失败：{serve.get('error')}",
                     f"< {SERVE_TARGET_MB / 1024:g} GB", "✗"))
    head = (f"### {meta['when']} · commit {meta['rev']}\n\n"
            f"机器：{meta['cpus']} 核，{platform.python_implementation()} {platform.python_version()}；"
            f"负载（1/5/15 分钟）开始 {meta['load_start']}，结束 {meta['load_end']}；仓库 `{meta['db']}`；"
            f"用时 {meta['elapsed']:.0f} 秒。热启动路径：" + "，".join(f"{k} {v}" for k, v in sorted(warm["paths"].items())) + "。\n\n")
    lines = ["| 项目 | 测量 | 目标 | |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return head + "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- entry point
def main(args) -> int:
    from warehouse.paths import DEFAULT_DB

    db = Path(getattr(args, "db", None) or DEFAULT_DB).expanduser().resolve()
    started = time.perf_counter()
    meta = {"when": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "rev": _git_rev(), "cpus": os.cpu_count(),
            "load_start": _load(), "db": str(db)}
    work = Path(tempfile.mkdtemp(prefix="youshu-bench-"))
    env = dict(os.environ)
    env.update({"YOUSHU_AUDIT_LOG": str(work / "audit.jsonl"), "GRADIO_TEMP_DIR": str(work / "gradio"),
                "PYTHONUNBUFFERED": "1", "ANONYMIZED_TELEMETRY": "False", "GRADIO_ANALYTICS_ENABLED": "False"})
    env.pop("GRADIO_SERVER_PORT", None)
    try:
        build = None
        if not (getattr(args, "skip_build", False) and db.exists()):
            db.parent.mkdir(parents=True, exist_ok=True)
            build = bench_build(db, env, work)
            if build.returncode != 0:
                print("错误：仓库构建失败，基准中止。", file=sys.stderr)
                return 1
        elif not db.exists():
            print(f"错误：找不到数据仓库 {db}", file=sys.stderr)
            return 1
        questions = _questions()
        warm = bench_warm(db, questions)
        cold = bench_cold(db, env, work)
        ev = bench_eval(db, env, work)
        serve = bench_serve(db, env, work, questions)
        meta["load_end"] = _load()
        meta["elapsed"] = time.perf_counter() - started
        table = render(meta, build, warm, cold, ev, serve)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table)
    new = not RESULTS.exists()
    with RESULTS.open("a", encoding="utf-8") as f:
        if new:
            f.write("# 有数性能基准记录\n\n`youshu bench`（`make bench`）每次运行在此追加一节；每节是一次运行的完整结果。\n\n")
        f.write("\n" + table)
    print(f"已追加到 {RESULTS.relative_to(ROOT) if RESULTS.is_relative_to(ROOT) else RESULTS}")
    return 0
