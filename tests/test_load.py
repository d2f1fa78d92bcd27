"""Load test: 20 concurrent sessions ask 500 questions in total of a real `youshu serve` on
127.0.0.1 through Gradio's HTTP API. Bounded in count and time; zero errors; the audit log holds
every question. Throughput and p95 latency go to test-artifacts/load.json.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = 20
PER_SESSION = 25
DEADLINE_S = 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _questions() -> list[str]:
    out = []
    for line in (ROOT / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line)["question"])
    return out


@pytest.mark.slow
def test_twenty_sessions_five_hundred_questions(small_db, tmp_path):
    from gradio_client import Client

    db = tmp_path / "load.duckdb"
    shutil.copy(small_db, db)
    audit = tmp_path / "audit.jsonl"
    port = _free_port()
    env = dict(os.environ, YOUSHU_AUDIT_LOG=str(audit), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve", "--port", str(port), "--db", str(db)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        start = time.time()
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.time() - start > 120:
                    pytest.fail("youshu serve did not start: " + (proc.stdout.read() if proc.poll() is not None else "timeout"))
                time.sleep(0.5)
        questions = _questions()
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        t_start = time.time()

        def session(i: int) -> None:
            client = Client(url, verbose=False, httpx_kwargs={"timeout": 300})
            for j in range(PER_SESSION):
                if time.time() - t_start > DEADLINE_S:
                    with lock:
                        errors.append(f"session {i}: deadline reached")
                    return
                q = questions[(i * PER_SESSION + j) % len(questions)]
                t0 = time.perf_counter()
                try:
                    history, _ = client.predict(q, "分析师", [], api_name="/ask_text")
                    reply = history[-1]
                    text = reply["content"][0]["text"] if isinstance(reply["content"], list) else str(reply["content"])
                    ok = reply["role"] == "assistant" and text and "Traceback" not in text
                except Exception as e:  # an HTTP or app error is a failure of the load test
                    ok, text = False, repr(e)
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if not ok:
                        errors.append(f"{q}: {text[:200]}")

        threads = [threading.Thread(target=session, args=(i,)) for i in range(SESSIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE_S + 60)
        elapsed = time.time() - t_start
        assert not errors, errors[:5]
        assert len(latencies) == SESSIONS * PER_SESSION
        lines = [json.loads(x) for x in audit.read_text(encoding="utf-8").splitlines() if x.strip()]
        asked = [r for r in lines if r.get("question") is not None]
        assert len(asked) >= SESSIONS * PER_SESSION, f"audit log has {len(asked)} of {SESSIONS * PER_SESSION}"
        lat = sorted(latencies)
        stats = {"sessions": SESSIONS, "questions": len(lat), "elapsed_s": round(elapsed, 1),
                 "throughput_qps": round(len(lat) / elapsed, 2), "p50_ms": round(statistics.median(lat) * 1000),
                 "p95_ms": round(lat[int(0.95 * len(lat)) - 1] * 1000), "audit_records": len(asked), "errors": 0}
        out = ROOT / "test-artifacts"
        out.mkdir(exist_ok=True)
        (out / "load.json").write_text(json.dumps(stats, ensure_ascii=False, indent=2), encoding="utf-8")
        print("load test:", stats)
        assert proc.poll() is None, "the server died under load"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
