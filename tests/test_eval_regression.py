"""The dev split in rule mode must not score below the figures recorded in eval/baseline.json."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb

from assistant.engine import Assistant
from eval.runner import answer_all, read_jsonl
from eval.scoring import score_predictions

ROOT = Path(__file__).resolve().parents[1]


def test_dev_split_accuracy_not_below_baseline(small_db, tmp_path):
    baseline = json.loads((ROOT / "eval" / "baseline.json").read_text(encoding="utf-8"))["dev"]
    questions = [q for q in read_jsonl(ROOT / "eval" / "questions.jsonl") if q.get("split") == "dev"]
    assistant = Assistant(small_db)
    preds = answer_all(assistant, questions, mode="rule")
    copy = tmp_path / "gold.duckdb"  # gold SQL runs on its own copy, outside the assistant's connection
    shutil.copy(small_db, copy)
    con = duckdb.connect(str(copy), read_only=True)
    try:
        report = score_predictions(questions, preds, con)
    finally:
        con.close()
    overall = report.overall if isinstance(report.overall, dict) else dict(report.overall)
    assert overall["broken"] == 0
    failing = [i for i in report.items if not (i["correct"] if isinstance(i, dict) else i.correct)]
    detail = "; ".join(f"{(i['id'] if isinstance(i, dict) else i.id)}" for i in failing)
    assert overall["correct"] >= baseline["correct"], f"dev 正确数 {overall['correct']} 低于基线 {baseline['correct']}：{detail}"
    assert overall["accuracy"] >= baseline["accuracy"]
    assert overall["execution_accuracy"] >= baseline["execution_accuracy"]
