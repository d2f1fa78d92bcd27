"""The fast paths give exactly what the slow paths gave.

* the in-memory jieba prefix dictionary segments like jieba's own dictionary built from a file;
* a remembered guard result equals a fresh check, and callers get independent copies;
* a remembered compilation equals a fresh one, and callers get independent copies.
"""
from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import pytest

from semantic_layer.guard import _guard_uncached, guard_sql, parse_role

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [json.loads(line) for line in (ROOT / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()]


@pytest.fixture(scope="module")
def assistant(small_db):
    from assistant.engine import Assistant

    return Assistant(small_db)


def _file_tokenizer(vocab, tmp_path):
    """The tokenizer as jieba builds it from a dictionary file (one line per word, repeats too)."""
    import jieba

    from assistant.vocabulary import FORM_WORDS

    jieba.setLogLevel(logging.WARNING)
    words = list(vocab.terms) + FORM_WORDS
    path = tmp_path / "dict.txt"
    path.write_text("".join(f"{w} {100000 + 1000 * len(w)}\n" for w in words if " " not in w), encoding="utf-8")
    tk = jieba.Tokenizer(dictionary=str(path))
    tk.tmp_dir = str(tmp_path)
    tk.initialize()
    return tk


def test_prefix_dictionary_is_jiebas_dictionary(assistant, tmp_path):
    ref = _file_tokenizer(assistant.vocab, tmp_path)
    fast = assistant.vocab.tokenizer()
    assert fast.total == ref.total
    # every entry of jieba's dictionary (words and their prefixes) answers the same
    for key, value in ref.FREQ.items():
        assert key in fast.FREQ and fast.FREQ[key] == value and fast.FREQ.get(key) == value, key
    for frag in ["", "不存在的词语", "一般公共预算收入不存在", "zz", "Ｘ", "2021年"]:
        assert (frag in fast.FREQ) == (frag in ref.FREQ)
        assert fast.FREQ.get(frag, -1) == ref.FREQ.get(frag, -1)
    texts = [q["question"] for q in QUESTIONS]
    texts += [t[::-1] for t in texts[:50]] + ["".join(texts[i:i + 3]) for i in range(0, 60, 3)]
    for text in texts:
        for hmm in (False, True):
            assert list(fast.cut(text, HMM=hmm)) == list(ref.cut(text, HMM=hmm)), text


def test_guard_cache_equals_fresh_check_and_hands_out_copies(assistant):
    cat = assistant.catalogue
    sqls = [q["gold_sql"] for q in QUESTIONS if q.get("gold_sql")][:40]
    for role_text in ("分析师", "领导", "部门用户:001"):
        role = parse_role(role_text, catalogue=cat)
        for sql in sqls:
            fresh = _guard_uncached(sql, cat, role, 500)
            first = guard_sql(sql, cat, role, max_rows=500)
            again = guard_sql(sql, cat, role, max_rows=500)
            assert first == fresh and again == fresh
            first.tables.append("x")
            first.masked.append("x")
            assert guard_sql(sql, cat, role, max_rows=500) == fresh
    # the key includes the role and the row limit
    dept = parse_role("部门用户:001", catalogue=cat)
    sql = "SELECT amount_yuan FROM fact_payment"
    assert guard_sql(sql, cat, dept, max_rows=5).sql != guard_sql(sql, cat, parse_role("审计", catalogue=cat), max_rows=5).sql
    assert "LIMIT 5" in guard_sql(sql, cat, dept, max_rows=5).sql
    assert "LIMIT 7" in guard_sql(sql, cat, dept, max_rows=7).sql


def test_compile_cache_equals_fresh_compile_and_hands_out_copies(assistant):
    seen = 0
    for q in QUESTIONS[:120]:
        r = assistant.ask(q["question"], as_of=date.fromisoformat(q["as_of"]))
        if not r.get("query"):
            continue
        from semantic_layer.query import StructuredQuery

        sq = StructuredQuery.model_validate(r["query"])
        fresh = assistant.compiler._compile(sq)
        cached = assistant.compiler.compile(sq)
        assert (cached.sql, cached.columns, cached.tables, cached.metrics, cached.notes) == \
            (fresh.sql, fresh.columns, fresh.tables, fresh.metrics, fresh.notes)
        cached.notes.append("x")
        cached.columns[0].label = "x"
        again = assistant.compiler.compile(sq)
        assert again.notes == fresh.notes and again.columns == fresh.columns
        seen += 1
    assert seen > 50
