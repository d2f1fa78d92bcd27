"""持久化检索库：把目录条目（指标、维度、成员、列、表、示例……）的各种说法
向量化后存进 chromadb，供规则解析器在词典未命中时按语义找候选。

用法::

    from assistant.embeddings import get_embeddings
    from assistant.retrieval import RetrievalStore, confident_hit, entries_for

    store = RetrievalStore(Path("data/chroma"), get_embeddings())
    store.rebuild(entries, fingerprint=catalogue_hash)   # 指纹未变则什么也不做
    hits = store.search("土地财政", k=5, kinds=["metric"])
    best = confident_hit(hits)          # None → 反问用户（可列出 hits 作候选）

约定
----
* 一个目标（如指标"国有土地使用权出让收入"）的名称和每个同义词各是一条
  ``RetrievalEntry``（各自的 id，相同的 kind/payload/target），各自作为一个文档
  入库；``search`` 按目标去重，只保留每个目标得分最高的那条。
* ``Hit.score`` 是余弦相似度，范围 [-1, 1]（集合使用 cosine 空间，score = 1 - 距离）。
* 导入本模块不导入 chromadb、numpy 或 langchain：chromadb 在第一次
  ``rebuild``/``search`` 时才导入，词典就能回答的问题不为它付出代价。
* 始终把显式的 embedding function（包装我们自己的 langchain ``Embeddings``）交给
  chromadb，绝不让它使用默认模型（默认模型要联网下载）；遥测关闭。
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from langchain_core.embeddings import Embeddings

__all__ = [
    "RetrievalEntry",
    "Hit",
    "RetrievalStore",
    "entries_for",
    "confident_hit",
    "DEFAULT_THRESHOLD",
    "DEFAULT_MARGIN",
    "DEFAULT_COLLECTION",
    "DEFAULT_EXACT_LIMIT",
    "chroma_embedding_function",
]

# 默认相似度阈值（多语种 USE v3 + tests/test_retrieval.py 的词表实测选定）：
# 低于它就反问，不猜。实测 69 个口语/简称/错字查询里答对的 top-1 得分最低 0.425、
# 中位数 0.78；14 个无关问句最高 0.426（"老百姓的钱"），其余 ≤ 0.33。
# 0.45 让全部无关问句落在阈值下，代价是 3 个低分的正确命中改为反问。
# 换向量模型后须重新标定。
DEFAULT_THRESHOLD = 0.45
# 第一名与第二名（不同目标）得分差小于它时也反问（列出候选让用户选）：
# 同一批数据上答错的 12 个里有 8 个差距 < 0.03，答对的 57 个里只有 3 个。
DEFAULT_MARGIN = 0.03

DEFAULT_COLLECTION = "youshu_retrieval"
_SCHEMA_VERSION = "1"
_META_FINGERPRINT = "youshu_fingerprint"
_META_EMBEDDINGS = "youshu_embeddings"
_META_SCHEMA = "youshu_schema"
_META_COUNT = "youshu_count"
_BUILDING_SUFFIX = "__building"
_EMBED_BATCH = 512
_ADD_BATCH = 2000  # 低于 chromadb 的 max_batch_size
_GET_PAGE = 5000
# 文档数不超过它时，search 在内存里对全部向量做精确余弦（numpy 一次矩阵乘，3000 条约 0.1 ms），
# 不走 HNSW：实测 3000 条时 chromadb 的 HNSW（默认参数）recall@10 只有 0.993，会把
# "零售业"的正确答案（0.656）整个漏掉、返回 0.525 的"利润"。目录规模（几千条）远低于此值。
DEFAULT_EXACT_LIMIT = 50_000
_HNSW = {"space": "cosine", "ef_search": 200}


@dataclass(frozen=True)
class RetrievalEntry:
    """一个可检索的文本。

    * ``id``：全库唯一（如 ``"metric:land_sale#2"``）。
    * ``kind``：'metric' / 'dimension' / 'member' / 'column' / 'table' / 'example' 等。
    * ``text``：被向量化的文本（名称或一个同义词）。
    * ``payload``：可 JSON 序列化的 dict，命中后原样返回（以 JSON 存在元数据里）。
    * ``target``：去重键；同一目标的多条文本应相同。缺省时为 kind + payload 的规范 JSON，
      即"payload 相同即同一目标"。
    """

    id: str
    kind: str
    text: str
    payload: dict = field(default_factory=dict)
    target: str | None = None

    @property
    def target_key(self) -> str:
        if self.target:
            return self.target
        return f"{self.kind}:{_dump_payload(self.payload)}"


@dataclass(frozen=True)
class Hit:
    entry: RetrievalEntry
    score: float  # 余弦相似度，[-1, 1]


def entries_for(
    kind: str,
    target: str,
    texts: Iterable[str],
    payload: dict | None = None,
) -> list[RetrievalEntry]:
    """一个目标的名称 + 同义词 → 多条同 target、同 payload 的条目（空白和重复文本去掉）。"""
    payload = dict(payload or {})
    out: list[RetrievalEntry] = []
    seen: set[str] = set()
    for text in texts:
        text = (text or "").strip()
        if not text or text in seen:
            continue
        seen.add(text)
        out.append(
            RetrievalEntry(
                id=f"{kind}:{target}#{len(out)}",
                kind=kind,
                text=text,
                payload=payload,
                target=f"{kind}:{target}",
            )
        )
    return out


def confident_hit(
    hits: Sequence[Hit],
    threshold: float = DEFAULT_THRESHOLD,
    margin: float = DEFAULT_MARGIN,
) -> Hit | None:
    """可以直接采用的第一名；得分低于阈值、或与第二名太接近（该反问）时返回 None。

    ``hits`` 应是 ``search`` 的结果（已按目标去重、降序）。
    """
    if not hits or hits[0].score < threshold:
        return None
    if len(hits) > 1 and hits[0].score - hits[1].score < margin:
        return None
    return hits[0]


def _dump_payload(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------
# chromadb 适配：langchain Embeddings → chromadb EmbeddingFunction
# ---------------------------------------------------------------------------

_ADAPTER_CLS: Any = None
_ADAPTER_LOCK = threading.Lock()


def _chroma_settings():
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False, allow_reset=False)


def _adapter_class():
    """惰性定义（并向 chromadb 注册）适配器类：只有真正用到 chromadb 时才导入它。"""
    global _ADAPTER_CLS
    if _ADAPTER_CLS is not None:
        return _ADAPTER_CLS
    with _ADAPTER_LOCK:
        if _ADAPTER_CLS is not None:
            return _ADAPTER_CLS
        from chromadb.api.types import Documents, EmbeddingFunction
        from chromadb.utils.embedding_functions import register_embedding_function

        class YoushuEmbeddingFunction(EmbeddingFunction[Documents]):
            """把 langchain ``Embeddings`` 交给 chromadb（chromadb 1.x 的 EmbeddingFunction 协议）。"""

            def __init__(self, embeddings: "Embeddings") -> None:
                self._embeddings = embeddings

            def __call__(self, input: Documents) -> Any:
                return self._embeddings.embed_documents(list(input))

            def embed_query(self, input: Documents) -> Any:
                return [self._embeddings.embed_query(t) for t in input]

            @staticmethod
            def name() -> str:
                return "youshu_langchain"

            def default_space(self) -> str:
                return "cosine"

            def supported_spaces(self) -> list:
                return ["cosine", "ip", "l2"]

            def get_config(self) -> dict:
                from .embeddings import embeddings_identity

                return {
                    "spec": getattr(self._embeddings, "spec", None),
                    "identity": embeddings_identity(self._embeddings),
                }

            @staticmethod
            def build_from_config(config: dict) -> "YoushuEmbeddingFunction":
                from .embeddings import get_embeddings

                spec = (config or {}).get("spec")
                if not spec:
                    raise ValueError("检索库记录的向量后端不可重建（非 get_embeddings 构造），请显式传入 embeddings")
                return YoushuEmbeddingFunction(get_embeddings(spec))

        register_embedding_function(YoushuEmbeddingFunction)
        _ADAPTER_CLS = YoushuEmbeddingFunction
        return _ADAPTER_CLS


def chroma_embedding_function(embeddings: "Embeddings"):
    """对外也可用：把任意 langchain Embeddings 包装成 chromadb 的 EmbeddingFunction。"""
    return _adapter_class()(embeddings)


# ---------------------------------------------------------------------------
# 检索库
# ---------------------------------------------------------------------------


class RetrievalStore:
    """chromadb 持久化检索库（余弦空间）。

    * 文档数 ≤ ``exact_limit`` 时，首次 search 把库里的全部向量读进内存，之后做精确余弦
      （结果确定、无近似误差）；超过时用 chromadb 的 HNSW 查询。
    * 线程安全：客户端、集合句柄和内存矩阵在锁内惰性创建；``rebuild`` 互斥。
    * 库被别的实例/进程重建后，下一次 search 会发现（集合 id 变了）并重新加载。
    """

    def __init__(
        self,
        path: Path,
        embeddings: "Embeddings",
        *,
        collection: str = DEFAULT_COLLECTION,
        exact_limit: int = DEFAULT_EXACT_LIMIT,
    ) -> None:
        self.path = Path(path)
        self.embeddings = embeddings
        self.collection_name = collection
        self.exact_limit = exact_limit
        self._lock = threading.RLock()
        self._client: Any = None
        self._collection: Any = None
        self._ef: Any = None
        self._matrix: _Matrix | None = None

    # ---- 内部：chromadb 句柄 ----------------------------------------------

    def _get_client(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    settings = _chroma_settings()
                    import chromadb

                    self.path.mkdir(parents=True, exist_ok=True)
                    self._ef = chroma_embedding_function(self.embeddings)
                    self._client = chromadb.PersistentClient(path=str(self.path), settings=settings)
        return self._client

    def _get_collection(self, name: str | None = None):
        """取已有集合；不存在返回 None。"""
        client = self._get_client()
        name = name or self.collection_name
        if name == self.collection_name and self._collection is not None:
            return self._collection
        if name not in _collection_names(client):
            return None
        col = client.get_collection(name=name, embedding_function=self._ef)
        if name == self.collection_name:
            self._collection = col
        return col

    def _embeddings_identity(self) -> str:
        from .embeddings import embeddings_identity

        return embeddings_identity(self.embeddings)

    # ---- 元信息 -----------------------------------------------------------

    def stored_fingerprint(self) -> str | None:
        """库里记录的指纹；库不存在、或由另一个向量模型建成时返回 None。"""
        with self._lock:
            self._collection = None  # 重新读取：库可能已被别的进程重建
        col = self._get_collection()
        if col is None:
            return None
        meta = col.metadata or {}
        if meta.get(_META_EMBEDDINGS) != self._embeddings_identity():
            return None
        if meta.get(_META_SCHEMA) != _SCHEMA_VERSION:
            return None
        return meta.get(_META_FINGERPRINT)

    def count(self) -> int:
        """已入库的文档（文本）数。"""
        col = self._get_collection()
        return 0 if col is None else col.count()

    def __len__(self) -> int:
        return self.count()

    # ---- 建库 -------------------------------------------------------------

    def rebuild(self, entries: Iterable[RetrievalEntry], fingerprint: str) -> bool:
        """指纹（或向量模型）与库中记录不同时整体替换集合；相同则不动。返回是否重建。

        新集合先建在临时名下，全部写完再替换旧集合：中途失败时旧库仍然可用。
        """
        with self._lock:
            if self.stored_fingerprint() == fingerprint:
                return False
            entries = list(entries)
            _validate(entries)
            client = self._get_client()
            tmp_name = self.collection_name + _BUILDING_SUFFIX
            _drop(client, tmp_name)
            col = client.create_collection(
                name=tmp_name,
                configuration={"hnsw": dict(_HNSW)},
                metadata={
                    _META_FINGERPRINT: "",  # 写完之前不算数
                    _META_EMBEDDINGS: self._embeddings_identity(),
                    _META_SCHEMA: _SCHEMA_VERSION,
                },
                embedding_function=self._ef,
            )
            try:
                vectors = self._add(col, entries)
                col.modify(
                    metadata={
                        _META_FINGERPRINT: fingerprint,
                        _META_EMBEDDINGS: self._embeddings_identity(),
                        _META_SCHEMA: _SCHEMA_VERSION,
                        _META_COUNT: len(entries),
                    }
                )
                self._collection = None
                self._matrix = None
                _drop(client, self.collection_name)
                col.modify(name=self.collection_name)
            except BaseException:
                try:
                    _drop(client, tmp_name)
                except Exception:  # pragma: no cover - 保留原始异常
                    pass
                raise
            self._collection = client.get_collection(
                name=self.collection_name, embedding_function=self._ef
            )
            if len(entries) <= self.exact_limit:
                # 刚算好的向量直接放进内存矩阵，首次 search 不必再从库里读一遍
                self._matrix = _Matrix(
                    self._collection.id,
                    [e.id for e in entries],
                    [e.text for e in entries],
                    [_metadata(e) for e in entries],
                    vectors,
                )
            return True

    def _add(self, col, entries: Sequence[RetrievalEntry]) -> list:
        out: list = []
        for start in range(0, len(entries), _ADD_BATCH):
            batch = entries[start : start + _ADD_BATCH]
            texts = [e.text for e in batch]
            vectors: list = []
            for s in range(0, len(texts), _EMBED_BATCH):
                vectors.extend(self.embeddings.embed_documents(texts[s : s + _EMBED_BATCH]))
            col.add(
                ids=[e.id for e in batch],
                documents=texts,
                embeddings=vectors,
                metadatas=[_metadata(e) for e in batch],
            )
            out.extend(vectors)
        return out

    def warm(self) -> None:
        """预热：加载向量模型，并把库读进内存（可在启动时放到后台线程里调用）。"""
        self.embeddings.embed_query("预热")
        col = self._get_collection()
        if col is not None:
            total = col.count()
            if 0 < total <= self.exact_limit:
                self._exact(col, total)

    # ---- 检索 -------------------------------------------------------------

    def search(
        self,
        text: str,
        k: int = 5,
        kinds: list[str] | None = None,
    ) -> list[Hit]:
        """返回至多 k 个目标（按目标去重，每个目标取得分最高的文本），按 score 降序。"""
        if k <= 0 or not (text or "").strip():
            return []
        where: dict | None = None
        if kinds:
            kinds = list(dict.fromkeys(kinds))
            where = {"kind": kinds[0]} if len(kinds) == 1 else {"kind": {"$in": kinds}}
        if self._get_collection() is None:
            return []
        vector = self.embeddings.embed_query(text)
        from chromadb.errors import NotFoundError

        for attempt in range(2):
            col = self._get_collection()
            if col is None:
                return []
            try:
                total = col.count()  # 也用来发现"集合已被替换"
                if total == 0:
                    return []
                if total <= self.exact_limit:
                    return self._exact(col, total).search(vector, k, kinds)
                return self._query(col, total, vector, k, where)
            except NotFoundError:
                # 集合刚被另一个实例/进程的 rebuild 替换：刷新句柄重试一次。
                if attempt:
                    raise
                with self._lock:
                    self._collection = None
                    self._matrix = None
        return []  # pragma: no cover

    def _exact(self, col, total: int) -> "_Matrix":
        m = self._matrix
        if m is not None and m.collection_id == col.id and m.count == total:
            return m
        with self._lock:
            m = self._matrix
            if m is None or m.collection_id != col.id or m.count != total:
                m = _Matrix.load(col)
                self._matrix = m
        return m

    @staticmethod
    def _query(col, total: int, vector, k: int, where: dict | None) -> list[Hit]:
        # 同一目标有多条文本，所以多取一些再去重；不够 k 个目标时扩大再取。
        n = min(total, max(4 * k, 20))
        while True:
            res = col.query(
                query_embeddings=[vector],
                n_results=n,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
            hits = _dedupe(res, k)
            if len(hits) >= k or n >= total or len(res["ids"][0]) < n:
                return hits
            n = min(total, n * 4)

    def close(self) -> None:
        """释放句柄和内存矩阵（chromadb 的持久化客户端按路径在进程内共享，不必显式关闭）。"""
        with self._lock:
            self._collection = None
            self._matrix = None
            self._client = None


class _Matrix:
    """一个集合全部向量的内存副本，做精确余弦检索。"""

    def __init__(self, collection_id, ids, docs, metas, vectors) -> None:
        import numpy as np

        self.collection_id = collection_id
        self.count = len(ids)
        self.ids = ids
        self.docs = docs
        self.metas = metas
        m = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        self.vectors = m / norms
        kinds = [meta.get("kind", "") for meta in metas]
        # 每种 kind 一个布尔掩码（np.isin 在字符串数组上每次要几毫秒）
        self.kind_masks = {kd: np.array([x == kd for x in kinds], dtype=bool) for kd in set(kinds)}
        self.targets = [meta.get("target") or id_ for id_, meta in zip(ids, metas)]

    @classmethod
    def load(cls, col) -> "_Matrix":
        import numpy as np

        ids: list = []
        docs: list = []
        metas: list = []
        pages: list = []
        offset = 0
        while True:
            page = col.get(
                include=["embeddings", "documents", "metadatas"], limit=_GET_PAGE, offset=offset
            )
            n = len(page["ids"])
            if n == 0:
                break
            ids += page["ids"]
            docs += page["documents"]
            metas += page["metadatas"]
            pages.append(np.asarray(page["embeddings"], dtype=np.float32))
            offset += n
            if n < _GET_PAGE:
                break
        vectors = np.concatenate(pages) if pages else np.zeros((0, 1), dtype=np.float32)
        return cls(col.id, ids, docs, metas, vectors)

    def search(self, vector, k: int, kinds: list[str] | None) -> list[Hit]:
        import numpy as np

        v = np.asarray(vector, dtype=np.float32)
        v = v / (float(np.linalg.norm(v)) or 1.0)
        # einsum 而非 @：不进 BLAS，不受 BLAS 多线程在繁忙机器上空转的影响（3000×512 约 0.5 ms）。
        scores = np.einsum("ij,j->i", self.vectors, v)
        if kinds:
            mask = np.zeros(len(scores), dtype=bool)
            for kd in kinds:
                if kd in self.kind_masks:
                    mask |= self.kind_masks[kd]
            scores = np.where(mask, scores, -np.inf)
        n = len(scores)
        # 同一目标有多条文本：先取前 m 条排序去重，不够 k 个目标再全排。
        m = min(n, max(64, 8 * k))
        while True:
            if m < n:
                top = np.argpartition(-scores, m - 1)[:m]
                order = top[np.argsort(-scores[top], kind="stable")]
            else:
                order = np.argsort(-scores, kind="stable")
            hits = self._hits(order, scores, k)
            if len(hits) >= k or m >= n:
                return hits
            m = n

    def _hits(self, order, scores, k: int) -> list[Hit]:
        hits: list[Hit] = []
        seen: set[str] = set()
        for i in order:
            score = float(scores[i])
            if score == float("-inf"):
                break
            target = self.targets[i]
            if target in seen:
                continue
            seen.add(target)
            meta = self.metas[i]
            entry = RetrievalEntry(
                id=self.ids[i],
                kind=meta.get("kind", ""),
                text=self.docs[i],
                payload=json.loads(meta.get("payload") or "{}"),
                target=target,
            )
            hits.append(Hit(entry=entry, score=max(-1.0, min(1.0, score))))
            if len(hits) >= k:
                break
        return hits


def _metadata(e: RetrievalEntry) -> dict:
    return {"kind": e.kind, "target": e.target_key, "payload": _dump_payload(e.payload)}


def _dedupe(res: dict, k: int) -> list[Hit]:
    best: dict[str, Hit] = {}
    ids = res["ids"][0]
    docs = res["documents"][0]
    metas = res["metadatas"][0]
    dists = res["distances"][0]
    for id_, doc, meta, dist in zip(ids, docs, metas, dists):
        score = max(-1.0, min(1.0, 1.0 - float(dist)))
        target = meta.get("target") or id_
        if target in best and best[target].score >= score:
            continue
        entry = RetrievalEntry(
            id=id_,
            kind=meta.get("kind", ""),
            text=doc,
            payload=json.loads(meta.get("payload") or "{}"),
            target=target,
        )
        best[target] = Hit(entry=entry, score=score)
    return sorted(best.values(), key=lambda h: -h.score)[:k]


def _validate(entries: Sequence[RetrievalEntry]) -> None:
    seen: set[str] = set()
    for e in entries:
        if not isinstance(e, RetrievalEntry):
            raise TypeError(f"检索条目必须是 RetrievalEntry：{e!r}")
        if not e.id:
            raise ValueError(f"检索条目缺少 id：{e!r}")
        if e.id in seen:
            raise ValueError(f"检索条目 id 重复：{e.id!r}")
        seen.add(e.id)
        if not (e.text or "").strip():
            raise ValueError(f"检索条目文本为空：{e.id!r}")
        try:
            _dump_payload(e.payload)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"检索条目 {e.id!r} 的 payload 不能序列化为 JSON：{exc}") from exc


def _collection_names(client) -> set[str]:
    return {c if isinstance(c, str) else c.name for c in client.list_collections()}


def _drop(client, name: str) -> None:
    if name in _collection_names(client):
        client.delete_collection(name=name)
