"""Smoke test of the LLM path against a real small model served locally.

Needs `bash scripts/setup_local_llm.sh` (llama-cpp-python[server] + the
Qwen2.5-Coder-0.5B-Instruct GGUF); skips with the reason otherwise.
Run it alone with `pytest -m realllm`.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from llm_server import DEFAULT_MODEL_PATH, MODEL_ALIAS, llama_cpp_available, local_llama_server

pytestmark = pytest.mark.realllm


class QueryPlan(BaseModel):
    """财政数据查询计划"""

    metric: str = Field(description="指标名称，例如 一般公共预算收入")
    region: str = Field(description="地区名称，例如 浙江省")
    year: int = Field(description="年份，四位整数")
    analysis: Literal["value", "yoy"] = Field(description="value=取值, yoy=同比增长")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _skip_reason() -> str | None:
    if not _installed("langchain_openai"):
        return "langchain-openai is not installed (pip install -e '.[llm]')"
    if not _installed("llama_cpp"):
        return "llama-cpp-python is not installed (run: bash scripts/setup_local_llm.sh)"
    if not llama_cpp_available():
        return "llama_cpp.server cannot be imported (server extras missing? run: bash scripts/setup_local_llm.sh)"
    if not DEFAULT_MODEL_PATH.is_file():
        return f"model file absent: {DEFAULT_MODEL_PATH} (run: bash scripts/setup_local_llm.sh)"
    return None


@pytest.fixture(scope="module")
def base_url():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with local_llama_server(DEFAULT_MODEL_PATH) as url:
        yield url


def test_structured_question_through_langchain_openai(base_url):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=base_url,
        api_key="x",
        model=MODEL_ALIAS,
        temperature=0,
        max_tokens=128,
        timeout=300,
        max_retries=0,
    )
    structured = llm.with_structured_output(QueryPlan, method="function_calling")
    plan = structured.invoke(
        [
            ("system", "把用户关于财政数据的问题解析为查询计划。"),
            ("human", "2021年浙江省一般公共预算收入是多少？"),
        ]
    )
    assert isinstance(plan, QueryPlan)
    assert plan.year == 2021
    assert "浙江" in plan.region
    assert "预算收入" in plan.metric
