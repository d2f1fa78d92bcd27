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

    线程安全：客户端和集合句柄在锁内惰性创建；``rebuild`` 互斥。
    """

    def __init__(
        self,
        path: Path,
        embeddings: "Embeddings",
        *,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        self.path = Path(path)
        self.embeddings = embeddings
        self.collection_name = collection
        self._lock = threading.RLock()
        self._client: Any = None
        self._collection: Any = None
        self._ef: Any = None

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
                configuration={"hnsw": {"space": "cosine"}},
                metadata={
                    _META_FINGERPRINT: "",  # 写完之前不算数
                    _META_EMBEDDINGS: self._embeddings_identity(),
                    _META_SCHEMA: _SCHEMA_VERSION,
                },
                embedding_function=self._ef,
            )
            try:
                self._add(col, entries)
                col.modify(
                    metadata={
                        _META_FINGERPRINT: fingerprint,
                        _META_EMBEDDINGS: self._embeddings_identity(),
                        _META_SCHEMA: _SCHEMA_VERSION,
                        _META_COUNT: len(entries),
                    }
                )
                self._collection = None
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
            return True

    def _add(self, col, entries: Sequence[RetrievalEntry]) -> None:
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
                metadatas=[
                    {
                        "kind": e.kind,
                        "target": e.target_key,
                        "payload": _dump_payload(e.payload),
                    }
                    for e in batch
                ],
            )

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
                total = col.count()
                if total == 0:
                    return []
                return self._query(col, total, vector, k, where)
            except NotFoundError:
                # 集合刚被另一个实例/进程的 rebuild 替换：刷新句柄重试一次。
                if attempt:
                    raise
                with self._lock:
                    self._collection = None
        return []  # pragma: no cover

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
        """释放句柄（chromadb 的持久化客户端按路径在进程内共享，不必显式关闭）。"""
        with self._lock:
            self._collection = None
            self._client = None


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
