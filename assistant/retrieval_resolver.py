"""Retrieval for what the dictionary misses: an unknown phrase is replaced by the nearest catalogue
name when retrieval is confident (土地财政 → 国有土地使用权出让收入), and the question is parsed
again by the same rule parser; below the threshold the assistant asks back with the candidates.
Embeddings load lazily: questions the dictionary answers never reach this module's heavy parts.
"""
from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

from .parser import ParseResult

KINDS = ["metric", "member"]


class RetrievalResolver:
    def __init__(self, assistant, store_path: Path | None = None):
        self.assistant = assistant
        self.store_path = store_path
        self._store = None
        self._lock = threading.Lock()
        self.available = True

    def store(self):
        with self._lock:
            if self._store is None and self.available:
                from .retrieval_index import index_path, open_store

                if not index_path(self.assistant.db_path).exists():
                    self.available = False
                    return None
                self._store = open_store(self.assistant.db_path)
            return self._store

    def nearest(self, phrase: str, k: int = 5) -> list:
        store = self.store()
        if store is None:
            return []
        return store.search(phrase, k=k, kinds=KINDS)

    def improve(self, question: str, parsed: ParseResult, as_of: date, ctx=None) -> ParseResult | None:
        if parsed.status == "refuse" and parsed.reason and "不在有数能回答的范围" not in parsed.reason:
            return None  # writes, sensitive data, injections: never second-guessed
        phrases = [p for p in parsed.unmatched if len(p) >= 2][:3]
        if not phrases:
            return None
        from .retrieval import DEFAULT_MARGIN, confident_hit

        strong: list[tuple[str, list[str]]] = []

        # a question the rules already understood is only rewritten on a strong match
        threshold = 0.45  # calibrated on right hits vs nonsense (assistant/retrieval.py)
        rewritten = question
        notes = []
        candidates: list[str] = []
        for phrase in phrases:
            hits = self.nearest(phrase)
            best = confident_hit(hits, threshold=threshold)
            if best is None:
                if hits and hits[0].score >= threshold and parsed.status != "ok":  # strong but tied: ask
                    close = [self._name(h) for h in hits if hits[0].score - h.score < DEFAULT_MARGIN]
                    strong.append((phrase, list(dict.fromkeys(close))[:4]))
                candidates += [self._name(h) for h in hits[:4] if h.score > 0.3]
                continue
            name = self._name(best)
            if phrase in rewritten and name not in rewritten:
                rewritten = rewritten.replace(phrase, name, 1)
                notes.append(f"检索：“{phrase}”→“{name}”（相似度{best.score:.2f}）")
        if notes:
            again = self.assistant.parser.parse(rewritten, as_of, context=ctx)
            again.notes = notes + again.notes
            if parsed.status == "ok" and again.status != "ok":
                return None  # the rewrite made an understood question worse: keep the rule reading
            if again.status != "ok" or not again.unmatched or len(again.unmatched) < len(parsed.unmatched):
                again.confidence = min(again.confidence, 0.85) if again.status == "ok" else again.confidence
                return again
        if strong:
            phrase, opts = strong[0]
            return ParseResult("clarify", clarification={
                "question": f"“{phrase}”可能指以下几项，您要查的是哪一个？", "options": opts, "word": phrase},
                reason="检索结果相近", unmatched=parsed.unmatched, confidence=0.3, terms=parsed.terms,
                notes=["检索：候选相近，反问确认"])
        if parsed.status == "ok" and candidates and parsed.confidence < 0.8:
            opts = list(dict.fromkeys(candidates))[:5]
            return ParseResult("clarify", clarification={
                "question": f"没有完全理解“{'、'.join(phrases)}”，您是指以下哪一项？", "options": opts, "word": phrases[0]},
                reason="检索相似度不足", unmatched=parsed.unmatched, confidence=0.3, terms=parsed.terms,
                notes=["检索：相似度低于阈值，反问确认"])
        return None

    @staticmethod
    def _name(hit) -> str:
        p = hit.entry.payload
        return p.get("name") or p.get("label") or hit.entry.text
