"""The parser's dictionary, built from the catalogue and the warehouse's dimension members.

Every term (metric names and synonyms, dimension names, members and their synonyms, flag words,
sensitive column names) maps to one or more senses. jieba segments questions with these terms
as its dictionary, so catalogue words come out whole.
"""
from __future__ import annotations

import logging
import re
import threading
from bisect import bisect_left
from dataclasses import dataclass, field

import duckdb

from semantic_layer.catalogue import Catalogue

FORM_WORDS = [
    "同比", "环比", "增长", "增速", "增幅", "增长率", "下降", "减少", "增加", "占比", "比重", "占", "执行率",
    "执行进度", "完成率", "排名", "排行", "最多", "最高", "最大", "最少", "最低", "最小", "多少", "几家", "几笔",
    "多少家", "多少笔", "多少个", "哪个", "哪些", "哪家", "各", "分别", "按", "超过", "大于", "高于", "低于",
    "小于", "不足", "以上", "以下", "前", "是多少", "有多少", "情况", "趋势", "走势",
]


@dataclass(frozen=True)
class Sense:
    kind: str  # metric | member | dimension | flag | sensitive
    target: str  # metric name / dimension name
    value: str | None = None  # member key (subject code) or name
    name: str | None = None  # member display name


@dataclass
class Member:
    dimension: str
    key: str
    name: str
    attrs: dict = field(default_factory=dict)


class Vocabulary:
    """Terms → senses, plus a jieba tokenizer that knows every term."""

    def __init__(self, catalogue: Catalogue, members: list[Member]):
        self.cat = catalogue
        self.members = members
        self.terms: dict[str, list[Sense]] = {}
        self.member_attrs: dict[tuple[str, str], dict] = {}
        self._build()
        self._tokenizer = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ building
    def _add(self, term: str, sense: Sense) -> None:
        term = term.strip()
        if len(term) < 2 and not re.match(r"[A-Za-z]", term) and sense.kind != "dimension":
            return
        senses = self.terms.setdefault(term, [])
        if sense not in senses:
            senses.append(sense)

    def _build(self) -> None:
        cat = self.cat
        for m in cat.metrics.values():
            for t in [m.label, *m.synonyms]:
                self._add(t, Sense("metric", m.name))
                if re.search(r"[a-z]", t):
                    self._add(t.lower(), Sense("metric", m.name))
        for d in cat.dimensions.values():
            if d.sensitive:
                for t in [d.label, *d.synonyms]:
                    self._add(t, Sense("sensitive", d.name))
                continue
            for t in [d.label, *d.synonyms]:
                self._add(t, Sense("dimension", d.name))
            for w in d.flag_words:
                self._add(w, Sense("flag", d.name))
            if d.count_metric:
                for base in [d.label, *d.synonyms]:
                    if not base.startswith("各"):
                        for suffix in ("总数", "数量", "个数", "户数", "家数", "总量"):
                            self._add(base + suffix, Sense("metric", d.count_metric))
        for table in cat.tables.values():
            for col in table.columns.values():
                if col.sensitivity == "sensitive":
                    for t in [col.label, *col.synonyms]:
                        self._add(t, Sense("sensitive", table.name))
        stems: dict[str, list[Sense]] = {}
        abbrevs: dict[str, list[Sense]] = {}
        totals = {(t.dimension, t.value) for m in cat.models.values() for t in m.totals}
        for mem in self.members:
            d = cat.dimensions[mem.dimension]
            sense = Sense("member", d.name, mem.key, mem.name)
            self.member_attrs[(d.name, mem.key)] = mem.attrs
            if (d.name, mem.name) not in totals:
                self._add(mem.name, sense)
            for syn in d.member_synonyms.get(mem.name, []):
                self._add(syn, sense)
            if d.members and d.members.suffix:
                self._add(mem.name + d.members.suffix, sense)
            if d.name == "region" and mem.name != "地方合计":
                for suffix in ("省", "市", "自治区"):
                    self._add(mem.name + suffix, sense)
            stem = re.sub(r"(支出|收入)$", "", mem.name)
            if stem != mem.name and len(stem) >= 2 and not stem.startswith("其他"):
                stems.setdefault(stem, []).append(sense)
            if d.name == "department":
                for abbr in _abbreviations(mem.name):
                    abbrevs.setdefault(abbr, []).append(sense)
        # near misses of short member lists: one character dropped (公安分局 → 公安局)
        variants: dict[str, list[Sense]] = {}
        by_dim: dict[str, list] = {}
        for mem in self.members:
            by_dim.setdefault(mem.dimension, []).append(mem)
        for dim, mems in by_dim.items():
            if dim not in ("department", "industry"):  # unit and industry names are the ones shortened in speech
                continue
            for mem in mems:
                if len(mem.name) < 4:
                    continue
                for i in range(1, len(mem.name) - 1):
                    v = mem.name[:i] + mem.name[i + 1:]
                    variants.setdefault(v, []).append(Sense("member", dim, mem.key, mem.name))
        for v, senses in variants.items():
            if len(senses) == 1 and v not in self.terms:
                self._add(v, senses[0])
        for stem, senses in stems.items():  # 教育 → 教育支出 (the same name in every dimension that has it)
            if len({s.name for s in senses}) == 1 and stem not in self.terms:
                for sense in senses:
                    self._add(stem, sense)
        for abbr, senses in abbrevs.items():  # 经发局 → 经济发展局
            if len(senses) == 1 and abbr not in self.terms:
                self._add(abbr, senses[0])
        self._fuzzy = self._fuzzy_index()

    def _fuzzy_index(self) -> dict[str, str]:
        """One-character typos of longer catalogue words (预箅 → 预算): pattern with '?' → term."""
        index: dict[str, str | None] = {}
        for term, senses in self.terms.items():
            names = any(s.kind == "member" and s.target in ("subject", "department", "industry") for s in senses)
            if len(term) < (4 if names else 5) or not re.fullmatch(r"[\u4e00-\u9fff()（）]+", term):
                continue
            if any(s.kind == "member" and s.target in ("enterprise", "project") for s in senses):
                continue
            if re.search(r"了|多少|的|钱|怎么|哪", term):  # phrases, not names
                continue
            for i in range(len(term)):
                key = term[:i] + "?" + term[i + 1:]
                index[key] = None if key in index and index[key] != term else term
        return {k: v for k, v in index.items() if v}

    def correct_typos(self, text: str) -> tuple[str, list[str]]:
        """Replace a run that differs from a catalogue word by one character; returns notes."""
        notes = []
        found = self.match(text)
        exact = [(a, b) for a, b, term, _ in found if len(term) >= 3]
        named = {i for a, b, term, _ in found for i in range(a, b)}  # never change a character of a real name
        for length in range(10, 3, -1):
            i = 0
            while i + length <= len(text):
                window = text[i:i + length]
                if window in self.terms or not re.fullmatch(r"[\u4e00-\u9fff]+", window) or \
                        any(a < i + length and i < b for a, b in exact):
                    i += 1
                    continue
                hit = None
                for j in range(length):
                    if i + j in named or (length == 4 and j == 0):  # a short word's first character carries its meaning
                        continue
                    cand = self._fuzzy.get(window[:j] + "?" + window[j + 1:])
                    if cand:
                        hit = cand
                        break
                if hit:
                    text = text[:i] + hit + text[i + length:]
                    notes.append(f"纠正错别字：“{window}”→“{hit}”")
                    exact.append((i, i + length))
                    i += length
                else:
                    i += 1
        return text, notes

    # ------------------------------------------------------------------ segmentation
    def tokenizer(self):
        """A jieba tokenizer whose dictionary is the catalogue vocabulary (built once).

        jieba would read the words from a file and build its prefix dictionary (every prefix of
        every word: ~100k entries for 13k words; 1.5 s to build, 0.3 s to load from its cache
        file). The tokenizer gets that same dictionary in memory instead (``_PrefixFreq``):
        each word's frequency, a proper prefix of a word → 0, and the total jieba would count
        from the file, so every segmentation is the one the file would give.
        """
        with self._lock:
            if self._tokenizer is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                words = [w for w in list(self.terms) + FORM_WORDS if " " not in w]
                tk = jieba.Tokenizer()
                tk.FREQ = _PrefixFreq({w: _word_freq(w) for w in words})
                tk.total = sum(_word_freq(w) for w in words)  # one dictionary line per word, repeats too
                tk.initialized = True
                self._tokenizer = tk
            return self._tokenizer

    def segment(self, text: str) -> list[str]:
        return list(self.tokenizer().cut(text, HMM=False))

    def match(self, text: str) -> list[tuple[int, int, str, list[Sense]]]:
        """Catalogue terms found in text: (start, end, term, senses), longest first, no overlaps."""
        tokens = self.segment(text)
        out: list[tuple[int, int, str, list[Sense]]] = []
        pos = [0]
        for t in tokens:
            pos.append(pos[-1] + len(t))
        i = 0
        while i < len(tokens):
            best = None
            for j in range(min(len(tokens), i + 8), i, -1):
                cand = "".join(tokens[i:j])
                if cand in self.terms:
                    best = (j, cand)
                    break
            if best:
                j, cand = best
                out.append((pos[i], pos[j], cand, self.terms[cand]))
                i = j
            else:
                i += 1
        return out


def _word_freq(word: str) -> int:
    """The frequency every catalogue word gets (longer words win)."""
    return 100000 + 1000 * len(word)


class _PrefixFreq(dict):
    """jieba's prefix dictionary, answered on demand: word → its frequency, a proper prefix of
    some word → 0, anything else absent (what ``jieba.Tokenizer.gen_pfdict`` builds eagerly)."""

    def __init__(self, freqs: dict[str, int]):
        super().__init__(freqs)
        self._sorted = sorted(freqs)

    def _is_prefix(self, frag: str) -> bool:
        if not frag:
            return False
        i = bisect_left(self._sorted, frag)
        return i < len(self._sorted) and self._sorted[i].startswith(frag)

    def __contains__(self, frag) -> bool:
        return dict.__contains__(self, frag) or (isinstance(frag, str) and self._is_prefix(frag))

    def __missing__(self, frag):
        if isinstance(frag, str) and self._is_prefix(frag):
            return 0
        raise KeyError(frag)

    def get(self, frag, default=None):
        if dict.__contains__(self, frag):
            return dict.__getitem__(self, frag)
        return 0 if isinstance(frag, str) and self._is_prefix(frag) else default


def _abbreviations(name: str) -> list[str]:
    """Common short forms of unit names: 经济发展局 → 经发局, 市场监督管理局 → 市监局、市监管局."""
    m = re.fullmatch(r"(.+?)(局|分局|中心|办公室|委员会)", name)
    if m and m.group(2) == "办公室" and len(m.group(1)) >= 2:
        return [m.group(1) + "办"] + (_abbreviations(m.group(1) + "局")[:0])
    if not m or len(m.group(1)) < 4 or len(m.group(1)) % 2:
        return []
    stem, suffix = m.group(1), m.group(2)
    initials = "".join(stem[i] for i in range(0, len(stem), 2))
    out = [initials + suffix]
    if suffix == "办公室":
        out.append(stem + "办")
    if len(initials) > 2:
        out.append(initials[:2] + suffix)
    return out


def load_members(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> list[Member]:
    """Read every dimension's members from the warehouse (names, keys, attributes)."""
    members: list[Member] = []
    existing = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    for d in catalogue.dimensions.values():
        src = d.members
        if not src or src.table not in existing:
            continue
        cols = [src.name] + ([src.key] if src.key else []) + src.attributes
        rows = con.execute(
            f'SELECT DISTINCT {", ".join(cols)} FROM {src.table} WHERE {src.name} IS NOT NULL'
        ).fetchall()
        for row in rows:
            name = str(row[0])
            key = str(row[1]) if src.key else name
            attrs = dict(zip(src.attributes, row[2 if src.key else 1:]))
            members.append(Member(d.name, key, name, attrs))
    return members
