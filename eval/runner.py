"""`youshu eval run`: answer a question file in one process, write predictions, score them."""
from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    """Read a question file; every problem is reported with its line number, in Chinese."""
    if not path.exists():
        raise ValueError(f"找不到问题文件：{path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path} 不是 UTF-8 编码的文本（请另存为 UTF-8）") from None
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} 第{n}行不是合法的 JSON：{e.msg}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path} 第{n}行应是一个 JSON 对象（{{\"id\": …, \"question\": …}}）")
        if "question" not in obj or "id" not in obj:
            raise ValueError(f"{path} 第{n}行缺少 id 或 question 字段")
        if not isinstance(obj["question"], str):
            raise ValueError(f"{path} 第{n}行的 question 应是文本")
        if obj.get("as_of"):
            try:
                date.fromisoformat(str(obj["as_of"]))
            except ValueError:
                raise ValueError(f"{path} 第{n}行的 as_of 应为 YYYY-MM-DD 格式（收到：{obj['as_of']}）") from None
        if "expect" in obj and obj["expect"] not in ("answer", "clarify", "refuse"):
            raise ValueError(f"{path} 第{n}行的 expect 应为 answer、clarify 或 refuse")
        items.append(obj)
    return items


def answer_all(assistant, items: list[dict], mode: str = "rule", role: str | None = None, out=None) -> list[dict]:
    """Answer every item; stream each prediction to `out` (a text file) as it is made."""
    from tqdm import tqdm

    preds = []
    for item in tqdm(items, desc="回答问题", unit="题", file=sys.stderr, disable=not sys.stderr.isatty() and len(items) < 50):
        as_of = date.fromisoformat(item["as_of"]) if item.get("as_of") else None
        result = assistant.ask(item["question"], as_of=as_of, mode=mode, role=role, user="eval")
        pred = {"id": item["id"], **result}
        preds.append(pred)
        if out is not None:
            out.write(json.dumps(pred, ensure_ascii=False, default=str) + "\n")
            out.flush()
    return preds


def run_eval(args) -> int:
    from assistant.engine import Assistant

    questions = read_jsonl(Path(args.questions))
    if getattr(args, "split", None):
        questions = [q for q in questions if q.get("split") == args.split]
    assistant = Assistant(args.db)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with out_path.open("w", encoding="utf-8") as out:
        preds = answer_all(assistant, questions, mode=args.mode, role=getattr(args, "role", None), out=out)
    elapsed = time.perf_counter() - t0
    counts: dict[str, int] = {}
    for p in preds:
        counts[p["status"]] = counts.get(p["status"], 0) + 1
    print(f"共 {len(preds)} 题，用时 {elapsed:.1f} 秒（模式：{args.mode}）。状态：" +
          "，".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"预测已写入 {out_path}")
    if any("expect" in q or "gold_sql" in q for q in questions):
        from eval.scoring import report_to_json, report_to_markdown, score_predictions

        con = assistant.executor._cursor()  # gold SQL runs on the same read-only database
        try:
            report = score_predictions(questions, preds, con)
        finally:
            con.close()
        data = report_to_json(report)
        data.setdefault("meta", {}).update({"mode": args.mode, "questions": str(args.questions),
                                            "split": getattr(args, "split", None), "elapsed_s": round(elapsed, 2)})
        prefix = Path(args.report) if getattr(args, "report", None) else out_path.with_suffix("")
        json_path = prefix.with_name(prefix.name + ".report.json")
        md_path = prefix.with_name(prefix.name + ".report.md")
        json_path.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        md = report_to_markdown(report)
        md_path.write_text(md, encoding="utf-8")
        print("\n## ".join(md.split("\n## ")[:2]))
        print(f"报告：{json_path}，{md_path}")
    return 0
