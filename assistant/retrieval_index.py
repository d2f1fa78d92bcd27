"""The retrieval index beside a warehouse: catalogue metrics, dimensions, columns, members and
worked examples (benchmark train split only), embedded and stored in chromadb.

Built by `youshu warehouse build`; rebuilt only when the catalogue, the members or the examples
change (a fingerprint of all three).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from semantic_layer.catalogue import Catalogue, load_catalogue
from warehouse.paths import DEFAULT_DB, PROJECT_ROOT

# Enterprise names are exact dictionary words already and would dominate build time; status-like
# and total-row members are generic words that only add false matches.
SKIP_MEMBER_DIMENSIONS = {"enterprise", "enterprise_status", "dept_type", "grade", "payee_type"}
EXAMPLES_FILE = PROJECT_ROOT / "eval" / "questions.jsonl"


def index_path(db_path: Path | str | None = None) -> Path:
    db = Path(db_path or DEFAULT_DB)
    return db.with_name(db.stem + ".chroma")


def train_examples(path: Path = EXAMPLES_FILE) -> list[dict]:
    """Worked examples from the benchmark's train split (never dev or test)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            if item.get("split") == "train" and item.get("expect") == "answer" and item.get("gold_sql"):
                out.append({"question": item["question"], "gold_sql": item["gold_sql"], "tags": item.get("tags", [])})
    return out


def catalogue_entries(catalogue: Catalogue, members: list, examples: list[dict]) -> list:
    from .retrieval import RetrievalEntry, entries_for

    entries: list[RetrievalEntry] = []
    for m in catalogue.metrics.values():
        entries += entries_for("metric", m.name, [m.label, *m.synonyms], {"metric": m.name, "label": m.label})
    for d in catalogue.dimensions.values():
        if d.sensitive:
            continue
        entries += entries_for("dimension", d.name, [d.label, *d.synonyms], {"dimension": d.name, "label": d.label})
    for t in catalogue.tables.values():
        for c, meta in t.columns.items():
            entries += entries_for("column", f"{t.name}.{c}", [meta.label, *meta.synonyms],
                                   {"table": t.name, "column": c, "label": meta.label})
    totals = {(t.dimension, t.value) for m in catalogue.models.values() for t in m.totals}
    for mem in members:
        if mem.dimension in SKIP_MEMBER_DIMENSIONS or (mem.dimension, mem.name) in totals:
            continue
        d = catalogue.dimensions[mem.dimension]
        texts = [mem.name, *d.member_synonyms.get(mem.name, [])]
        entries += entries_for("member", f"{mem.dimension}={mem.key}", texts,
                               {"dimension": mem.dimension, "value": mem.key, "name": mem.name})
    for i, ex in enumerate(examples):
        entries.append(RetrievalEntry(id=f"example:{i}", kind="example", text=ex["question"], payload=ex,
                                      target=f"example:{i}"))
    return entries


def fingerprint(catalogue: Catalogue, members: list, examples: list[dict]) -> str:
    h = hashlib.sha256(catalogue.fingerprint().encode())
    for mem in sorted((m.dimension, m.key, m.name) for m in members if m.dimension not in SKIP_MEMBER_DIMENSIONS):
        h.update("|".join(mem).encode())
    h.update(json.dumps(examples, ensure_ascii=False, sort_keys=True).encode())
    return h.hexdigest()[:24]


def open_store(db_path: Path | str | None = None):
    from .embeddings import get_embeddings
    from .retrieval import RetrievalStore

    return RetrievalStore(index_path(db_path), get_embeddings())


def build_index(db_path: Path | str | None = None, progress: Callable[[str], None] | None = print,
                catalogue: Catalogue | None = None) -> bool:
    """(Re)build the index for a warehouse; returns True when it was rebuilt."""
    import time

    import duckdb

    from .vocabulary import load_members

    t0 = time.perf_counter()
    catalogue = catalogue or load_catalogue()
    con = duckdb.connect(str(Path(db_path or DEFAULT_DB)), read_only=True)
    try:
        members = load_members(con, catalogue)
    finally:
        con.close()
    examples = train_examples()
    entries = catalogue_entries(catalogue, members, examples)
    store = open_store(db_path)
    if progress:
        progress(f"建立检索索引 … {len(entries):,} 条（指标、维度、字段、成员、{len(examples)} 个示例）")
    rebuilt = store.rebuild(entries, fingerprint(catalogue, members, examples))
    if progress:
        progress(f"检索索引{'已重建' if rebuilt else '无变化，跳过'}（{time.perf_counter() - t0:.1f} 秒）")
    return rebuilt
