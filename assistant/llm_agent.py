"""The LLM agent: a chat model on any OpenAI-compatible endpoint, governed by the semantic layer.

Configuration (environment)
---------------------------
============================  =================================================================
``YOUSHU_LLM_BASE_URL``       OpenAI-compatible endpoint, e.g. ``https://api.deepseek.com/v1``,
                              ``https://dashscope.aliyuncs.com/compatible-mode/v1``,
                              ``http://vllm:8000/v1``, ``http://ollama:11434/v1``. Unset: no LLM
                              (``--mode llm|hybrid`` answer with the rule parser and say so in
                              ``notes``).
``YOUSHU_LLM_MODEL``          model name as the endpoint knows it (``deepseek-chat``,
                              ``qwen-plus``, ``Qwen2.5-7B-Instruct``, ``qwen2.5:7b`` …). Required
                              together with the base URL.
``YOUSHU_LLM_API_KEY``        API key; optional for local servers (vLLM, Ollama, llama.cpp).
``YOUSHU_LLM_TIMEOUT``        seconds per model call, default 30.
``YOUSHU_LLM_STRUCTURED``     how the JSON answer is requested: ``json_mode`` (default, the most
                              widely supported: ``response_format={"type": "json_object"}`` plus
                              the shape described in the prompt), ``json_schema`` (OpenAI
                              structured outputs, vLLM/llama.cpp grammar) or ``function_calling``
                              (a forced tool call).
``YOUSHU_LLM_MAX_ROUNDS``     model calls per question including corrections, default 3.
``YOUSHU_LLM_EXAMPLES``       optional: the question file whose ``split == "train"`` items give
                              worked examples (default ``eval/questions.jsonl``; ``none`` = only
                              the hand-written examples in ``prompts/agent_examples.md``).
============================  =================================================================

How it works
------------
``LLMAgent.from_env(assistant)`` builds the agent (``None`` when the variables are unset) and
``Assistant.ask(..., mode='llm'|'hybrid')`` calls ``agent.answer(...)``:

1. The prompt (``prompts/agent_system.md``, ``agent_user.md``) carries a compact catalogue
   summary (metrics with labels/synonyms/units grouped by semantic model and the dimensions
   each model allows, small dimensions' members, subject codes, tables and columns for SQL),
   catalogue entries retrieved for the question (the rule parser's vocabulary matches, plus
   the retrieval store's hits when one is attached), hand-written examples and the most
   similar TRAIN-split benchmark questions, "today", the latest data month of each model, the
   previous turn's structured query (follow-ups) and the rule parser's draft.
2. The model answers one JSON object (``AgentOutput``): ``query`` (a ``StructuredQuery``),
   ``sql`` (governed SQL for what the structured query cannot express), ``clarify`` or
   ``refuse``. The reply is parsed robustly (fences, prose around the object, ``<think>``),
   lightly normalised (labels → names, member names → keys, ``"2021"`` → ``2021-01``…) and
   validated with pydantic, member checks and ``Compiler.compile``; SQL goes through the
   guard. Statements that write or run commands are refused at once and never executed.
3. A validation or execution error (Chinese, from pydantic/compiler/guard/executor) is sent
   back with ``prompts/agent_fix.md`` and the model tries again, ``YOUSHU_LLM_MAX_ROUNDS``
   calls in all; then the agent asks a clarifying question ("没能理解…，您是想问…？").
4. Timeouts, connection errors and HTTP errors end the attempt with a clear Chinese message:
   ``llm`` mode answers ``status: error``; ``hybrid`` mode returns ``None`` so the engine
   gives the rule answer, with a note "大模型服务暂时不可用：…，已改用规则解析". After three
   such failures in a row the endpoint is not called again for 30 s (fast failure in batch runs).

Every answer records ``path`` (``llm`` or ``llm-sql``), ``llm`` = ``{"calls", "tokens", "rounds",
"model"}`` (tokens from the response's usage when the endpoint reports it, else estimated) and
``timings_ms["llm"]`` (time spent waiting for the model).
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from semantic_layer.compiler import CompiledQuery, CompileError
from semantic_layer.query import StructuredQuery, TimeRange

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_ROUNDS = 3
DEFAULT_STRUCTURED = "json_mode"
STRUCTURED_METHODS = ("json_mode", "json_schema", "function_calling")
DEFAULT_MAX_TOKENS = 1024
CIRCUIT_FAILURES = 3  # consecutive unavailability errors that open the circuit
CIRCUIT_COOLDOWN_S = 30.0
TRAIN_EXAMPLES = 3  # similar TRAIN-split questions shown per question
PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
QUESTIONS_FILE = Path(__file__).resolve().parents[1] / "eval" / "questions.jsonl"

ENV_VARS = ("YOUSHU_LLM_BASE_URL", "YOUSHU_LLM_MODEL", "YOUSHU_LLM_API_KEY", "YOUSHU_LLM_TIMEOUT",
            "YOUSHU_LLM_STRUCTURED", "YOUSHU_LLM_MAX_ROUNDS", "YOUSHU_LLM_EXAMPLES")


# ----------------------------------------------------------------------------- output schema
class Clarification(BaseModel):
    """A question back to the user, with the choices to offer."""

    question: str
    options: list[str] = Field(default_factory=list)


class AgentOutput(BaseModel):
    """有数查询规划：query、sql、clarify、refuse 四选一（只填一个）。"""

    query: StructuredQuery | None = Field(default=None, description="结构化查询（首选）")
    sql: str | None = Field(default=None, description="一条只读 SELECT，只查数据目录中的表")
    clarify: Clarification | None = Field(default=None, description="需要反问用户时")
    refuse: str | None = Field(default=None, description="拒绝回答的原因")
    explanation: str | None = Field(default=None, description="可选：一句话说明如何理解问题")

    @model_validator(mode="after")
    def _one_kind(self) -> "AgentOutput":
        if self.query is None and not (self.sql or "").strip() and self.clarify is None and not (self.refuse or "").strip():
            raise ValueError("必须给出 query、sql、clarify、refuse 之一")
        return self

    @property
    def kind(self) -> str:
        # a reply that fills several keeps the most governed one
        if self.query is not None:
            return "query"
        if (self.sql or "").strip():
            return "sql"
        if self.clarify is not None:
            return "clarify"
        return "refuse"


# ----------------------------------------------------------------------------- configuration
@dataclass
class LLMConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    structured: str = DEFAULT_STRUCTURED
    max_rounds: int = DEFAULT_MAX_ROUNDS
    max_tokens: int = DEFAULT_MAX_TOKENS
    examples_path: Path | None = QUESTIONS_FILE
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls, env: dict | None = None) -> "LLMConfig | None":
        env = os.environ if env is None else env
        base_url = (env.get("YOUSHU_LLM_BASE_URL") or "").strip()
        model = (env.get("YOUSHU_LLM_MODEL") or "").strip()
        if not base_url or not model:
            return None
        warnings: list[str] = []

        def number(name: str, default: float, kind=float, low: float = 0.0):
            raw = (env.get(name) or "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                warnings.append(f"{name}={raw!r} 不是有效数值，已使用默认值 {default}")
                return default
            if value <= low:
                warnings.append(f"{name}={raw!r} 应大于 {low:g}，已使用默认值 {default}")
                return default
            return value

        structured = (env.get("YOUSHU_LLM_STRUCTURED") or DEFAULT_STRUCTURED).strip().lower()
        if structured not in STRUCTURED_METHODS:
            warnings.append(f"YOUSHU_LLM_STRUCTURED={structured!r} 无效（可选 {'、'.join(STRUCTURED_METHODS)}），已使用 {DEFAULT_STRUCTURED}")
            structured = DEFAULT_STRUCTURED
        examples = (env.get("YOUSHU_LLM_EXAMPLES") or "").strip()
        examples_path = None if examples.lower() in ("none", "off", "0") else (Path(examples) if examples else QUESTIONS_FILE)
        cfg = cls(
            base_url=base_url.rstrip("/"), model=model,
            api_key=(env.get("YOUSHU_LLM_API_KEY") or "").strip() or None,
            timeout=float(number("YOUSHU_LLM_TIMEOUT", DEFAULT_TIMEOUT)),
            structured=structured,
            max_rounds=int(number("YOUSHU_LLM_MAX_ROUNDS", DEFAULT_MAX_ROUNDS, int)),
            examples_path=examples_path, warnings=warnings,
        )
        for w in warnings:
            log.warning(w)
        return cfg


class LLMUnavailable(Exception):
    """The endpoint did not answer (timeout, connection, HTTP error); message in Chinese."""


class _RoundError(Exception):
    """This round's output is unusable; the Chinese message is fed back to the model."""


class _Blocked(Exception):
    """The model produced a statement that writes or runs commands: refuse, never execute."""


# ----------------------------------------------------------------------------- helpers
_CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def estimate_tokens(text: str) -> int:
    """Rough token count when the endpoint reports no usage: 1 per CJK char, 1 per 4 others."""
    text = text or ""
    cjk = len(_CJK.findall(text))
    return cjk + max(0, len(text) - cjk) // 4


def load_prompt(name: str) -> str:
    """A prompt template from the ``prompts`` package (package data)."""
    try:
        from importlib.resources import files

        return (files("prompts") / name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return (PROMPTS_DIR / name).read_text(encoding="utf-8")


def render(template: str, **values: Any) -> str:
    """Fill ``{{name}}`` placeholders (JSON braces in templates stay as they are)."""
    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise KeyError(f"提示词模板缺少参数：{key}")
        return str(values[key])

    return re.sub(r"\{\{(\w+)\}\}", sub, template)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


def extract_json(text: str) -> Any:
    """The JSON object in a model reply: bare, fenced (```json), or inside prose."""
    if text is None:
        raise _RoundError("输出为空，请只输出一个 JSON 对象")
    text = _THINK.sub("", str(text)).strip()
    if not text:
        raise _RoundError("输出为空，请只输出一个 JSON 对象")
    candidates = [text] + [m.group(1).strip() for m in _FENCE.finditer(text)]
    for cand in candidates:
        try:
            return json.loads(cand)
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                obj, _ = decoder.raw_decode(text, i)
                return obj
            except ValueError:
                continue
    snippet = text[:120].replace("\n", " ")
    raise _RoundError(f"输出不是合法的 JSON 对象（收到：{snippet}…）。请只输出一个 JSON 对象，不要其他文字")


def _pydantic_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        msg = err.get("msg", "")
        kind = err.get("type", "")
        ctx = err.get("ctx") or {}
        if kind == "missing":
            msg = "缺少该字段"
        elif kind == "literal_error":
            msg = f"取值只能是 {ctx.get('expected', '')}（收到 {err.get('input')!r}）"
        elif kind in ("too_short", "list_too_short"):
            msg = "不能为空"
        elif kind == "extra_forbidden":
            msg = "不认识的字段"
        elif kind.endswith("_type") or kind.endswith("_parsing"):
            msg = f"类型不对（收到 {err.get('input')!r}）"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        parts.append(f"{loc}：{msg}" if loc else msg)
    return "JSON 结构不符合要求：" + "；".join(parts)


_WRITE_WORDS = re.compile(
    r"^\s*(insert|update|delete|drop|create|alter|truncate|attach|detach|copy|pragma|install|load|"
    r"set|reset|call|grant|revoke|merge|export|import|vacuum|checkpoint|use|replace|upsert)\b", re.I)


def is_write_statement(sql: str) -> bool:
    """True when the SQL (any of its statements) is not a query: DDL, DML, commands."""
    import sqlglot
    from sqlglot import exp

    try:
        statements = [s for s in sqlglot.parse(sql, dialect="duckdb") if s is not None]
    except Exception:
        return bool(_WRITE_WORDS.search(sql) or re.search(r";\s*\w", sql) and any(
            _WRITE_WORDS.search(part) for part in sql.split(";")))
    if not statements:
        return False
    for stmt in statements:
        if not isinstance(stmt, (exp.Query, exp.Subquery)):
            return True
        if any(isinstance(n, (exp.Insert, exp.Update, exp.Delete, exp.Drop, exp.Create, exp.Alter,
                              exp.Command, exp.Pragma, exp.Copy)) for n in stmt.walk()
               if isinstance(n, exp.Expression)):
            return True
    return False


def _clean_sql(sql: str) -> str:
    sql = sql.strip()
    m = _FENCE.search(sql)
    if m:
        sql = m.group(1).strip()
    return sql.rstrip().rstrip(";").strip()


def time_label(tr: TimeRange) -> str:
    (y1, m1), (y2, m2) = tr.start_ym, tr.end_ym
    if y1 == y2:
        if m1 == 1 and m2 == 12:
            return f"{y1}年"
        if m1 == m2:
            return f"{y1}年{m1}月"
        if (m1 - 1) % 3 == 0 and m2 == m1 + 2:
            return f"{y1}年第{(m1 + 2) // 3}季度"
        return f"{y1}年{m1}—{m2}月"
    if m1 == 1 and m2 == 12:
        return f"{y1}—{y2}年"
    return f"{y1}年{m1}月至{y2}年{m2}月"


def _bigrams(text: str) -> set[str]:
    text = re.sub(r"[\s，。？?！!、：:（）()“”\"']", "", text or "")
    return {text[i:i + 2] for i in range(len(text) - 1)} or {text}


# ----------------------------------------------------------------------------- the agent
class LLMAgent:
    """Answers a question through an OpenAI-compatible chat model, governed by the semantic layer."""

    def __init__(self, assistant, config: LLMConfig | None = None, *, llm=None, **overrides: Any):
        if config is None:
            if "base_url" not in overrides or "model" not in overrides:
                raise ValueError("LLMAgent 需要 config，或 base_url 与 model")
            config = LLMConfig(base_url=str(overrides.pop("base_url")).rstrip("/"), model=str(overrides.pop("model")))
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise TypeError(f"未知参数：{key}")
            setattr(config, key, value)
        if config.structured not in STRUCTURED_METHODS:
            raise ValueError(f"structured 只能是 {'、'.join(STRUCTURED_METHODS)}")
        self.assistant = assistant
        self.config = config
        self.cat = assistant.catalogue
        self._llm = llm or self._make_llm()
        self._runnable = None
        self.method = config.structured  # the method in use (json_mode when the endpoint lacks the other)
        self.method_note = ""
        self._lock = threading.Lock()
        self._failures = 0
        self._circuit_until = 0.0
        self._last_failure = ""
        self._templates = {n: load_prompt(f"agent_{n}.md") for n in ("system", "user", "fix")}
        self._members = self._member_index()
        self._catalogue_text = self.catalogue_summary()
        self._hand_examples = self._load_hand_examples()
        self._train: list[dict] | None = None
        self._example_cache: dict[str, dict] = {}
        self._label_maps = self._build_label_maps()

    @classmethod
    def from_env(cls, assistant, env: dict | None = None) -> "LLMAgent | None":
        """The agent configured by YOUSHU_LLM_* (None when the endpoint is not configured)."""
        config = LLMConfig.from_env(env)
        if config is None:
            return None
        return cls(assistant, config)

    # ------------------------------------------------------------------ model plumbing
    def _make_llm(self):
        from langchain_openai import ChatOpenAI

        c = self.config
        # max_tokens goes in the body under its classic name: every OpenAI-compatible server knows
        # it, while some reject or ignore the newer max_completion_tokens that langchain would send.
        return ChatOpenAI(base_url=c.base_url, api_key=c.api_key or "not-needed", model=c.model,
                          timeout=c.timeout, max_retries=0, temperature=0,
                          extra_body={"max_tokens": c.max_tokens})

    def _structured(self):
        """The chat model bound for the configured structured-output method (replies parsed by us)."""
        if self._runnable is None:
            method = self.method
            if method == "function_calling":
                self._runnable = self._llm.bind_tools([AgentOutput], tool_choice="AgentOutput")
            elif method == "json_schema":
                self._runnable = self._llm.bind(response_format={"type": "json_schema", "json_schema": {
                    "name": "AgentOutput", "description": AgentOutput.__doc__ or "",
                    "schema": AgentOutput.model_json_schema(), "strict": False}})
            else:
                self._runnable = self._llm.bind(response_format={"type": "json_object"})
        return self._runnable

    def _call(self, messages: list, stats: dict, timings: dict) -> str:
        """One model call → the reply's text (JSON text for tool calls). Raises LLMUnavailable."""
        import openai

        t0 = time.perf_counter()
        stats["calls"] += 1
        try:
            try:
                result = self._structured().invoke(messages)
            except (openai.BadRequestError, openai.UnprocessableEntityError, openai.InternalServerError) as e:
                if not self._unsupported_method(e):
                    raise
                # the endpoint rejects json_schema / tools: fall back to JSON mode once, for good
                with self._lock:
                    self.method_note = f"端点不支持 {self.method}，已改用 json_mode"
                    log.warning("%s: %s", self.method_note, _error_detail(e))
                    self.method, self._runnable = "json_mode", None
                stats["calls"] += 1
                result = self._structured().invoke(messages)
        except openai.APITimeoutError:
            raise LLMUnavailable(f"请求超时（{self.config.timeout:g}秒）") from None
        except openai.APIConnectionError:
            raise LLMUnavailable(f"无法连接 {self.config.base_url}") from None
        except openai.AuthenticationError:
            raise LLMUnavailable("身份验证失败（HTTP 401），请检查 YOUSHU_LLM_API_KEY") from None
        except openai.PermissionDeniedError:
            raise LLMUnavailable("没有访问权限（HTTP 403）") from None
        except openai.RateLimitError:
            raise LLMUnavailable("请求过于频繁或额度不足（HTTP 429）") from None
        except openai.NotFoundError:
            raise LLMUnavailable(f"接口或模型不存在（HTTP 404），请检查 YOUSHU_LLM_BASE_URL 和 YOUSHU_LLM_MODEL={self.config.model}") from None
        except openai.APIStatusError as e:
            detail = _error_detail(e)
            raise LLMUnavailable(f"服务返回错误（HTTP {e.status_code}）{detail}") from None
        except openai.APIError as e:
            raise LLMUnavailable(f"服务返回了无法解析的响应（{type(e).__name__}）") from None
        except Exception as e:  # noqa: BLE001 - whatever the client raises, the process lives on
            raise LLMUnavailable(f"调用失败（{type(e).__name__}: {str(e)[:120]}）") from None
        finally:
            timings["llm"] = round(timings.get("llm", 0.0) + (time.perf_counter() - t0) * 1000, 2)
        raw = result
        text = self._reply_text(raw)
        usage = getattr(raw, "usage_metadata", None) or {}
        tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
        if not tokens:
            meta = getattr(raw, "response_metadata", {}) or {}
            tokens = (meta.get("token_usage") or {}).get("total_tokens")
        if not tokens:
            prompt = "\n".join(str(getattr(m, "content", m)) for m in messages)
            tokens = estimate_tokens(prompt) + estimate_tokens(text)
            stats["tokens_estimated"] = True
        stats["tokens"] += int(tokens)
        meta = getattr(raw, "response_metadata", {}) or {}
        if meta.get("model_name"):
            stats["model"] = meta["model_name"]
        return text

    def _unsupported_method(self, e) -> bool:
        if self.method == "json_mode":
            return False
        text = f"{_error_detail(e)} {getattr(e, 'message', '')} {e}".lower()
        words = ("response_format", "json_schema") if self.method == "json_schema" else ("tool", "function")
        return any(w in text for w in words)

    @staticmethod
    def _reply_text(raw) -> str:
        if raw is None:
            return ""
        calls = getattr(raw, "tool_calls", None) or []
        if calls:
            return _dumps(calls[0].get("args") or {})
        extra = (getattr(raw, "additional_kwargs", {}) or {}).get("tool_calls") or []
        if extra:
            return (extra[0].get("function") or {}).get("arguments") or ""
        content = getattr(raw, "content", "")
        if isinstance(content, list):
            content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
        return content or ""

    # ------------------------------------------------------------------ entry point
    def answer(self, question: str, parsed, as_of: date, role_ctx, ctx: StructuredQuery | None,
               timings: dict, mode: str = "llm", answer: dict | None = None) -> dict | None:
        """Answer through the model; None = let the engine use the rule answer (hybrid fallback)."""
        base = answer if answer is not None else {}
        stats: dict[str, Any] = {"calls": 0, "tokens": 0, "rounds": 0, "model": self.config.model}
        if parsed is not None and parsed.status == "refuse" and parsed.confidence >= 0.8:
            # the rule parser's safety refusals (writes, sensitive data, injection …) stand
            base.setdefault("notes", []).append("规则已拒绝该问题，未调用大模型")
            return None
        errors: list[str] = []
        try:
            self._check_circuit()
            messages = self._messages(question, parsed, as_of, ctx)
            for rnd in range(1, self.config.max_rounds + 1):
                stats["rounds"] = rnd
                text = self._call(messages, stats, timings)
                self._succeeded()
                try:
                    output = self._parse(text)
                    return self._act(output, question, role_ctx, base, timings, stats, errors, mode)
                except _RoundError as e:
                    errors.append(str(e))
                    if rnd < self.config.max_rounds:
                        messages = messages + self._fix_messages(text, str(e), question, rnd)
            return self._give_up(question, parsed, base, stats, errors, mode)
        except LLMUnavailable as e:
            self._failed(str(e))
            if mode == "hybrid":
                base.setdefault("notes", []).append(f"大模型服务暂时不可用：{e}，已改用规则解析")
                base["llm"] = stats | {"error": str(e)}
                return None
            out = self._new_answer(question, base, stats, "llm")
            out.update(status="error", error=f"大模型服务暂时不可用：{e}。请稍后再试，或改用规则模式（--mode rule）。")
            return out
        except Exception as e:  # noqa: BLE001 - never a traceback to the user
            log.exception("LLM agent failed")
            if mode == "hybrid":
                base.setdefault("notes", []).append(f"大模型处理出错（{type(e).__name__}），已改用规则解析")
                return None
            out = self._new_answer(question, base, stats, "llm")
            out.update(status="error", error=f"大模型处理问题时出错：{type(e).__name__}。请换个说法再试。")
            out["debug"] = repr(e)[:500]
            return out

    # ------------------------------------------------------------------ circuit breaker
    def _check_circuit(self) -> None:
        with self._lock:
            if time.monotonic() < self._circuit_until:
                left = self._circuit_until - time.monotonic()
                raise LLMUnavailable(f"{self._last_failure}（连续失败，{left:.0f}秒内不再调用）")

    def _failed(self, message: str) -> None:
        with self._lock:
            if "连续失败" in message:
                return
            self._failures += 1
            self._last_failure = message
            if self._failures >= CIRCUIT_FAILURES:
                self._circuit_until = time.monotonic() + CIRCUIT_COOLDOWN_S
                self._failures = 0

    def _succeeded(self) -> None:
        with self._lock:
            self._failures = 0

    # ------------------------------------------------------------------ acting on the output
    def _parse(self, text: str) -> AgentOutput:
        data = extract_json(text)
        data = self._normalize(data)
        try:
            return AgentOutput.model_validate(data)
        except ValidationError as e:
            raise _RoundError(_pydantic_message(e)) from None

    def _new_answer(self, question: str, base: dict, stats: dict, path: str) -> dict:
        out = self.assistant._empty(question)
        if "mode" in base:
            out["mode"] = base["mode"]
        if base.get("notes"):
            out["notes"] = list(base["notes"])
        out["path"] = path
        out["llm"] = stats
        if self.method_note:
            out.setdefault("notes", []).append(self.method_note)
        return out

    def _act(self, output: AgentOutput, question, role_ctx, base, timings, stats, errors, mode) -> dict:
        kind = output.kind
        if kind == "clarify":
            c = output.clarify
            out = self._new_answer(question, base, stats, "llm")
            out.update(status="clarify", answer=c.question,
                       clarification=self.assistant._clarification(question, {"question": c.question, "options": c.options, "word": None}))
            return out
        if kind == "refuse":
            out = self._new_answer(question, base, stats, "llm")
            out.update(status="refused", error=output.refuse.strip())
            return out
        if kind == "sql":
            return self._run_sql(output, question, role_ctx, base, timings, stats, errors)
        return self._run_query(output, question, role_ctx, base, timings, stats, errors)

    def _run_query(self, output, question, role_ctx, base, timings, stats, errors) -> dict:
        from semantic_layer.executor import QueryError
        from semantic_layer.guard import GuardError

        q = output.query
        self._check_members(q)
        if q.time is not None and not q.time.label:
            q = q.model_copy(update={"time": q.time.model_copy(update={"label": time_label(q.time)})})
        out = self._new_answer(question, base, stats, "llm")
        try:
            self.assistant.answer_query(q, role_ctx, out, timings)
        except CompileError as e:
            raise _RoundError(f"结构化查询无法编译：{e}") from None
        except GuardError as e:
            raise _RoundError(f"查询未通过安全校验：{e}") from None
        except QueryError as e:
            raise _RoundError(f"查询执行出错：{e}") from None
        if output.explanation:
            out["interpretation"]["llm_explanation"] = output.explanation
        self._round_notes(out, stats, errors)
        return out

    def _run_sql(self, output, question, role_ctx, base, timings, stats, errors) -> dict:
        from semantic_layer.executor import QueryError
        from semantic_layer.guard import GuardError

        sql = _clean_sql(output.sql)
        if is_write_statement(sql):
            out = self._new_answer(question, base, stats, "llm-sql")
            out.update(status="refused", error="大模型生成了修改数据或执行命令的语句，已拦截，未执行。有数只能查询数据。")
            out["blocked_sql"] = sql[:2000]
            return out
        out = self._new_answer(question, base, stats, "llm-sql")
        try:
            self.assistant._execute(sql, None, role_ctx, out, timings)
        except GuardError as e:
            raise _RoundError(f"SQL 未通过安全校验：{e}") from None
        except QueryError as e:
            raise _RoundError(f"SQL 执行出错：{e}") from None
        tables = out.pop("_tables", [])
        out["answer"] = self._sql_text(out)
        out["sources"] = self.assistant.writer.sources(CompiledQuery("", [], tables, []), None) + [
            {"kind": "as_of", "as_of": self.cat.as_of}]
        out["interpretation"] = {"llm_sql": True, "tables": tables}
        if output.explanation:
            out["interpretation"]["llm_explanation"] = output.explanation
        out.setdefault("notes", []).append("该结果由大模型生成的 SQL 查得，SQL 已经过安全校验（只读、仅数据目录内的表和字段）")
        self._round_notes(out, stats, errors)
        return out

    @staticmethod
    def _round_notes(out: dict, stats: dict, errors: list[str]) -> None:
        if errors:
            out.setdefault("notes", []).append(f"大模型经{stats['rounds']}轮修正得到可执行的查询")
            out["llm"]["errors"] = list(errors)

    def _sql_text(self, out: dict) -> str:
        from .answer import format_value

        rows, cols = out.get("rows") or [], out.get("columns") or []
        if not rows:
            return "没有查到符合条件的数据。"
        if len(rows) == 1 and len(cols) <= 4:
            parts = [f"{c.get('label') or c.get('name')}为{format_value(v, c.get('unit'))}" for c, v in zip(cols, rows[0])]
            return "查询结果：" + "，".join(parts) + "。"
        return f"查询返回{len(rows)}行，见下表。"

    def _give_up(self, question, parsed, base, stats, errors, mode) -> dict | None:
        if mode == "hybrid" and parsed is not None and parsed.status in ("ok", "clarify"):
            base.setdefault("notes", []).append(
                f"大模型{stats['rounds']}次尝试未得到有效查询（{errors[-1] if errors else ''}），已使用规则解析结果")
            base["llm"] = stats | {"errors": list(errors)}
            return None
        options: list[str] = []
        if parsed is not None and parsed.status == "clarify" and parsed.clarification:
            options = list(parsed.clarification.get("options") or [])
        if not options and parsed is not None:
            for t in parsed.terms or []:
                for s in t.get("senses", []):
                    if s.get("kind") == "metric" and s.get("target") in self.cat.metrics:
                        label = self.cat.metrics[s["target"]].label
                        if label not in options:
                            options.append(label)
        for name in ("general_budget_revenue", "tax_revenue_local", "general_budget_expenditure", "gdp", "enterprise_revenue"):
            if len(options) >= 5:
                break
            if name in self.cat.metrics and self.cat.metrics[name].label not in options:
                options.append(self.cat.metrics[name].label)
        shown = "还是".join(f"“{o}”" for o in options[:3])
        text = f"没能理解“{question.strip()}”，您是想问{shown}？"
        out = self._new_answer(question, base, stats, "llm")
        out.update(status="clarify", answer=text,
                   clarification=self.assistant._clarification(question, {"question": text, "options": options, "word": None}))
        out.setdefault("notes", []).append(f"大模型{stats['rounds']}次尝试未得到有效查询")
        out["llm"]["errors"] = list(errors)
        return out

    # ------------------------------------------------------------------ normalisation and checks
    def _member_index(self) -> dict[str, dict[str, str]]:
        """dimension → {member key: display name} from the warehouse's members."""
        index: dict[str, dict[str, str]] = {}
        for m in getattr(self.assistant.vocab, "members", []) or []:
            index.setdefault(m.dimension, {})[str(m.key)] = m.name
        return index

    def _build_label_maps(self) -> dict[str, dict[str, list[str]]]:
        cat = self.cat
        metrics: dict[str, list[str]] = {}
        for m in cat.metrics.values():
            for word in [m.name, m.label, *m.synonyms]:
                metrics.setdefault(word.lower(), [])
                if m.name not in metrics[word.lower()]:
                    metrics[word.lower()].append(m.name)
        dims: dict[str, list[str]] = {}
        for d in cat.dimensions.values():
            for word in [d.name, d.label, *d.synonyms]:
                dims.setdefault(word.lower(), [])
                if d.name not in dims[word.lower()]:
                    dims[word.lower()].append(d.name)
        members: dict[str, dict[str, str]] = {}
        for dim, keys in self._members.items():
            d = cat.dimensions[dim]
            table = members.setdefault(dim, {})
            for key, name in keys.items():
                table[name] = key
                table[key] = key
                for syn in d.member_synonyms.get(name, []):
                    table.setdefault(syn, key)
                if d.members and d.members.suffix:
                    table.setdefault(name + d.members.suffix, key)
        return {"metrics": metrics, "dimensions": dims, "members": members}

    def _metric_name(self, value: Any) -> Any:
        if not isinstance(value, str) or value in self.cat.metrics:
            return value
        names = self._label_maps["metrics"].get(value.strip().lower(), [])
        return names[0] if len(names) == 1 else value

    def _dimension_name(self, value: Any, metrics: list[str]) -> Any:
        if not isinstance(value, str) or value in self.cat.dimensions:
            return value
        names = self._label_maps["dimensions"].get(value.strip().lower(), [])
        ok = [n for n in names if all(m not in self.cat.metrics or self.cat.supports(m, n) for m in metrics)]
        names = ok or names
        return names[0] if len(names) == 1 else value

    def _normalize(self, data: Any) -> Any:
        """Forgiving reading of near-miss replies; anything still wrong fails validation."""
        if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
            data = data[0]
        if not isinstance(data, dict):
            raise _RoundError("输出必须是一个 JSON 对象（{…}），含 query、sql、clarify、refuse 之一")
        for wrapper in ("AgentOutput", "output", "answer", "result", "response"):
            if len(data) == 1 and isinstance(data.get(wrapper), dict):
                data = data[wrapper]
        data = dict(data)
        if "metrics" in data and "query" not in data:
            data = {"query": {k: v for k, v in data.items() if k != "explanation"}, "explanation": data.get("explanation")}
        for key in ("query", "sql", "clarify", "refuse"):
            if data.get(key) in ("", None, [], {}) and key in data:
                data.pop(key)
        if isinstance(data.get("refuse"), dict):
            r = data["refuse"]
            data["refuse"] = str(r.get("reason") or r.get("message") or _dumps(r))
        elif data.get("refuse") is True:
            data["refuse"] = "该问题无法回答"
        if isinstance(data.get("clarify"), str):
            data["clarify"] = {"question": data["clarify"], "options": data.pop("options", [])}
        if isinstance(data.get("sql"), dict):
            data["sql"] = data["sql"].get("sql") or data["sql"].get("query") or ""
        if isinstance(data.get("query"), str):
            text = data["query"].strip()
            if re.match(r"^(select|with)\b", text, re.I):
                data["sql"] = data.pop("query")
            else:
                try:
                    data["query"] = json.loads(text)
                except ValueError:
                    pass
        if isinstance(data.get("query"), dict):
            data["query"] = self._normalize_query(dict(data["query"]))
        return data

    def _normalize_query(self, q: dict) -> dict:
        metrics = q.get("metrics")
        if isinstance(metrics, str):
            metrics = [metrics]
        if isinstance(metrics, list):
            q["metrics"] = [self._metric_name(m) for m in metrics]
        names = [m for m in q.get("metrics") or [] if isinstance(m, str)]
        dims = q.get("dimensions")
        if isinstance(dims, str):
            dims = [dims]
        if isinstance(dims, list):
            q["dimensions"] = [self._dimension_name(d, names) for d in dims]
        elif dims is None:
            q.pop("dimensions", None)
        filters = q.get("filters")
        if isinstance(filters, dict):  # {"subject": ["10101"]}
            filters = [{"dimension": k, "values": v} for k, v in filters.items()]
        if isinstance(filters, list):
            q["filters"] = [self._normalize_filter(f, names) for f in filters]
        elif filters is None:
            q.pop("filters", None)
        if "time" in q:
            q["time"] = self._normalize_time(q["time"])
            if q["time"] is None:
                q.pop("time")
        cmp = q.get("compare")
        if isinstance(cmp, str):
            c = cmp.strip().lower()
            c = {"同比": "yoy", "环比": "mom", "占比": "share", "比重": "share", "执行率": "execution",
                 "none": None, "null": None, "": None}.get(c, c)
            q["compare"] = c
        for key in ("share_of", "change"):
            if isinstance(q.get(key), str) and q[key].strip().lower() in ("", "none", "null"):
                q[key] = None
        if isinstance(q.get("share_of"), str):
            q["share_of"] = self._dimension_name(q["share_of"], names)
        order = q.get("order_by")
        if isinstance(order, (str, dict)):
            order = [order]
        if isinstance(order, list):
            fixed = []
            for o in order:
                if isinstance(o, str):
                    o = {"field": o}
                if isinstance(o, dict):
                    o = dict(o)
                    fld = o.get("field")
                    if isinstance(fld, str) and fld not in self.cat.metrics and fld not in self.cat.dimensions:
                        fld2 = self._metric_name(fld)
                        fld2 = fld2 if fld2 in self.cat.metrics else self._dimension_name(fld, names)
                        o["field"] = fld2
                    if isinstance(o.get("desc"), str):
                        o["desc"] = o["desc"].strip().lower() not in ("false", "asc", "no", "0")
                    if "direction" in o and "desc" not in o:
                        o["desc"] = str(o.pop("direction")).lower().startswith("desc")
                fixed.append(o)
            q["order_by"] = fixed
        elif order is None:
            q.pop("order_by", None)
        having = q.get("having")
        if isinstance(having, dict):
            having = [having]
        if isinstance(having, list):
            q["having"] = [dict(h, metric=self._metric_name(h.get("metric"))) if isinstance(h, dict) else h for h in having]
        elif having is None:
            q.pop("having", None)
        limit = q.get("limit")
        if isinstance(limit, str) and limit.strip().isdigit():
            q["limit"] = int(limit.strip())
        if q.get("limit") in (0, "", "null", "none"):
            q["limit"] = None
        if q.get("count_groups") is None:
            q.pop("count_groups", None)
        return q

    def _normalize_filter(self, f: Any, metrics: list[str]) -> Any:
        if not isinstance(f, dict):
            return f
        f = dict(f)
        dim = self._dimension_name(f.get("dimension"), metrics)
        f["dimension"] = dim
        values = f.get("values", f.pop("value", None))
        if values is None and "members" in f:
            values = f.pop("members")
        if not isinstance(values, list):
            values = [values]
        d = self.cat.dimensions.get(dim) if isinstance(dim, str) else None
        fixed = []
        for v in values:
            if d is not None and d.kind == "flag":
                if isinstance(v, str):
                    v = v.strip().lower() not in ("false", "否", "no", "0", "非")
                fixed.append(v)
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                v = str(v)
            if isinstance(v, str) and d is not None:
                v = v.strip()
                table = self._label_maps["members"].get(d.name, {})
                if v not in table:
                    bare = re.sub(r"(壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区|省|市)$", "", v)
                    v = bare if bare in table else v
                v = table.get(v, v)
            fixed.append(v)
        f["values"] = fixed
        return f

    @staticmethod
    def _normalize_time(t: Any) -> Any:
        def month(value: Any, end: bool) -> Any:
            if isinstance(value, int):
                value = str(value)
            if not isinstance(value, str):
                return value
            s = value.strip()
            m = re.fullmatch(r"(\d{4})\s*年?", s)
            if m:
                return f"{m.group(1)}-{'12' if end else '01'}"
            m = re.fullmatch(r"(\d{4})\s*(?:年|-|/|\.)\s*(\d{1,2})\s*月?(?:[-/.]\d{1,2}日?)?", s)
            if m:
                return f"{m.group(1)}-{int(m.group(2)):02d}"
            return s

        if t in (None, "", {}, "null", "none"):
            return None
        if isinstance(t, (str, int)):
            return {"start": month(t, False), "end": month(t, True)}
        if not isinstance(t, dict):
            return t
        t = dict(t)
        if "start" in t:
            t["start"] = month(t["start"], False)
        if "end" in t:
            t["end"] = month(t["end"], True)
        if "end" not in t and "start" in t:
            t["end"] = month(t["start"], True) if re.fullmatch(r"\d{4}", str(t["start"]).strip()) else t["start"]
        g = t.get("grain")
        if isinstance(g, str):
            t["grain"] = {"年": "year", "年度": "year", "季": "quarter", "季度": "quarter", "月": "month", "月份": "month",
                          "none": None, "null": None, "": None}.get(g.strip().lower(), g.strip().lower())
        return t

    def _check_members(self, q: StructuredQuery) -> None:
        """Filter values must be members the warehouse has (catches 浙江省 vs 浙江 before an empty answer)."""
        for f in q.filters:
            d = self.cat.dimensions.get(f.dimension)
            if d is None or d.kind == "flag":
                continue
            known = self._members.get(d.name)
            if not known:
                continue
            for v in f.values:
                if isinstance(v, bool):
                    continue
                if str(v) in known:
                    continue
                similar = sorted(known.items(), key=lambda kv: -len(_bigrams(str(v)) & _bigrams(kv[1])))[:12]
                if d.match == "prefix" and d.key:
                    shown = "、".join(f"{k} {n}" for k, n in similar)
                    raise _RoundError(f"维度 {d.name}（{d.label}）没有编码为“{v}”的成员；请写成员编码，例如：{shown}")
                shown = "、".join(n for _, n in similar)
                raise _RoundError(f"维度 {d.name}（{d.label}）没有成员“{v}”；可选成员例如：{shown}")

    # ------------------------------------------------------------------ prompts
    def _messages(self, question: str, parsed, as_of: date, ctx: StructuredQuery | None) -> list:
        from langchain_core.messages import HumanMessage, SystemMessage

        return [SystemMessage(content=self.system_prompt(question, parsed, as_of)),
                HumanMessage(content=self.user_prompt(question, parsed, ctx))]

    def _fix_messages(self, previous: str, error: str, question: str, rnd: int) -> list:
        from langchain_core.messages import AIMessage, HumanMessage

        fix = render(self._templates["fix"], error=error, round=rnd, max_rounds=self.config.max_rounds, question=question)
        return [AIMessage(content=previous or "（空）"), HumanMessage(content=fix)]

    def system_prompt(self, question: str, parsed=None, as_of: date | None = None) -> str:
        as_of = as_of or date.today()
        return render(self._templates["system"], catalogue=self._catalogue_text,
                      examples=self.examples_text(question), as_of=as_of.isoformat(),
                      extents=self._extents_text(), retrieved=self.retrieved_text(question, parsed)).strip() + "\n"

    def user_prompt(self, question: str, parsed=None, ctx: StructuredQuery | None = None) -> str:
        context = ""
        if ctx is not None:
            context = f"上一轮的查询（如果本问题是追问，就在它的基础上修改）：\n{_dumps(ctx.describe())}\n\n"
        draft = ""
        if parsed is not None and parsed.status == "ok" and parsed.query is not None:
            draft = f"规则解析的初步结果（仅供参考，可能有误）：\n{_dumps(_compact_query(parsed.query))}\n\n"
        return render(self._templates["user"], context=context, draft=draft, question=question.strip())

    def _extents_text(self) -> str:
        ext = getattr(self.assistant, "extents", {}) or {}
        if not ext:
            return ""
        groups: dict[str, list[str]] = {}
        for model, (y, m) in sorted(ext.items()):
            groups.setdefault(f"{y}-{m:02d}", []).append(model)
        return "各模型最新数据月份：" + "；".join(f"{k}（{'、'.join(v)}）" for k, v in groups.items()) + "。"

    def retrieved_text(self, question: str, parsed=None) -> str:
        """Catalogue entries for this question: the vocabulary's matches, then the retrieval store's hits."""
        lines: list[str] = []
        seen: set[str] = set()

        def add(line: str) -> None:
            if line not in seen and len(lines) < 16:
                seen.add(line)
                lines.append(line)

        for t in (parsed.terms if parsed is not None else []) or []:
            for s in t.get("senses", []):
                kind, target = s.get("kind"), s.get("target")
                if kind == "metric" and target in self.cat.metrics:
                    m = self.cat.metrics[target]
                    add(f"- “{t['term']}” → 指标 {m.name}（{m.label}，{m.unit}）")
                elif kind == "member" and target in self.cat.dimensions:
                    d = self.cat.dimensions[target]
                    add(f"- “{t['term']}” → 维度 {d.name}（{d.label}）的成员 \"{s.get('value')}\"（{s.get('name')}）")
                elif kind == "dimension" and target in self.cat.dimensions:
                    d = self.cat.dimensions[target]
                    add(f"- “{t['term']}” → 维度 {d.name}（{d.label}）")
                elif kind == "flag" and target in self.cat.dimensions:
                    add(f"- “{t['term']}” → 标志维度 {target}，values [true]")
                elif kind == "sensitive":
                    add(f"- “{t['term']}” → 敏感信息，不能查询")
        for hit in self._store_hits(question):
            payload = hit.entry.payload or {}
            add(f"- “{hit.entry.text}” → {hit.entry.kind} {_dumps(payload)[:160]}")
        if not lines:
            return ""
        return "问题中识别到的数据目录条目：\n" + "\n".join(lines)

    def _store(self):
        """The retrieval store when one is attached and built (assistant.resolver.store()), else None."""
        store = getattr(self.assistant, "retrieval_store", None)
        if store is None:
            store = getattr(getattr(self.assistant, "resolver", None), "store", None)
            if callable(store) and not hasattr(store, "search"):
                try:
                    store = store()
                except Exception as e:  # noqa: BLE001 - retrieval is an optional aid
                    log.info("retrieval store unavailable: %s", e)
                    return None
        return store if store is not None and hasattr(store, "search") else None

    def _store_hits(self, question: str, kinds: list[str] | None = None, k: int = 6, threshold: float | None = None) -> list:
        store = self._store()
        if store is None:
            return []
        if threshold is None:
            try:
                from .retrieval import DEFAULT_THRESHOLD as threshold
            except Exception:  # noqa: BLE001
                threshold = 0.45
        try:
            hits = store.search(question, k=k, kinds=kinds or ["metric", "dimension", "member", "column"])
        except Exception as e:  # noqa: BLE001 - retrieval is an optional aid
            log.info("retrieval failed: %s", e)
            return []
        return [h for h in hits if getattr(h, "score", 0) >= threshold]

    # ------------------------------------------------------------------ catalogue summary
    def catalogue_summary(self) -> str:
        """All metrics (name, label, unit, synonyms) by model, dimensions, members, tables — ~2k tokens."""
        cat = self.cat
        lines = ["### 指标（按模型分组；每个模型后是可用于 dimensions/filters 的维度）"]
        by_model: dict[str, list] = {}
        for m in cat.metrics.values():
            by_model.setdefault(m.model, []).append(m)
        grain_cn = {"month": "按月", "quarter": "按季累计", "year": "按年", "day": "按日", "none": "无时间"}
        for model_name, metrics in by_model.items():
            model = cat.models[model_name]
            dims = [d.name for d in cat.dimensions.values() if model_name in d.models and not d.sensitive]
            lines.append(f"[{model_name}｜表 {model.table}｜{grain_cn.get(model.time.grain, model.time.grain)}] 维度：{'、'.join(dims) or '无'}")
            for m in metrics:
                syn = [s for s in m.synonyms if s != m.label][:3]
                extra = []
                if m.time_agg == "latest":
                    extra.append("存量/累计值")
                if m.plan_metric:
                    extra.append("可算执行率")
                if m.growth_metric:
                    extra.append(f"增速用发布值 {m.growth_metric}")
                if m.requires:
                    extra.append(f"必须指定 {m.requires}")
                tail = f"；{'，'.join(extra)}" if extra else ""
                lines.append(f"- {m.name}：{m.label}（{m.unit}）" + (f" 又称{'/'.join(syn)}" if syn else "") + tail)
        lines.append("### 维度（名称：中文名；成员）")
        for d in cat.dimensions.values():
            if d.sensitive:
                lines.append(f"- {d.name}：{d.label}（敏感，不能分组或查询）")
                continue
            lines.append(f"- {d.name}：{d.label}" + self._members_text(d))
        lines.append("### 表与字段（写 SQL 时用；金额单位见字段名：_yuan 元，_wan 万元，_yi 亿元）")
        for t in cat.tables.values():
            cols = []
            for c, meta in t.columns.items():
                cols.append(f"{c}*" if meta.sensitive else c)
            lines.append(f"- {t.name}（{t.label}）：{', '.join(cols)}")
        lines.append("（* 为敏感字段，不要查询）")
        return "\n".join(lines)

    def _members_text(self, d) -> str:
        members = self._members.get(d.name, {})
        if d.kind == "flag":
            return "；标志，values 写 [true]"
        if not members:
            return ""
        if d.match == "prefix" and d.key:  # subjects: codes; names are converted to codes
            keys = sorted(k for k in members if len(k) <= 3)
            shown = "、".join(f"{k}{members[k]}" for k in keys[:4])
            return f"；成员写科目编码或科目名称（按编码前缀汇总下级），如 {shown}、10101增值税"
        names = sorted(set(members.values()))
        totals = [t.value for model in self.cat.models.values() for t in model.totals if t.dimension == d.name]
        tail = f"；合计行为“{totals[0]}”" if totals else ""
        if len(names) <= 20:
            return f"；成员：{'、'.join(names)}{tail}"
        shown, size = [], 0
        for n in sorted((n for n in names if n not in totals), key=len):
            if len(shown) >= 6 or size + len(n) > 36:
                break
            shown.append(n)
            size += len(n)
        return f"；成员{len(names)}个，如 {'、'.join(shown)} 等{tail}"

    # ------------------------------------------------------------------ examples
    def _load_hand_examples(self) -> list[dict]:
        try:
            text = load_prompt("agent_examples.md")
        except OSError:
            return []
        return parse_examples(text)

    def _train_items(self) -> list[dict]:
        if self._train is None:
            items: list[dict] = []
            path = self.config.examples_path
            if path and Path(path).is_file():
                try:
                    for line in Path(path).read_text(encoding="utf-8").splitlines():
                        if line.strip():
                            obj = json.loads(line)
                            if obj.get("split") == "train" and obj.get("question"):
                                items.append(obj)
                except (OSError, ValueError) as e:
                    log.warning("examples file %s unreadable: %s", path, e)
                    items = []
            self._train = items
        return self._train

    def train_examples(self, question: str, k: int = TRAIN_EXAMPLES) -> list[dict]:
        """The k most similar TRAIN-split items (one per paraphrase group), as examples."""
        items = self._train_items()
        if not items or k <= 0:
            return []
        qg = _bigrams(question)
        scored = sorted(items, key=lambda it: -len(qg & _bigrams(it["question"])) / (len(qg | _bigrams(it["question"])) or 1))
        by_text = {it["question"]: it for it in items}
        near = [by_text[h.entry.payload.get("question")] for h in self._store_hits(question, ["example"], k=2 * k, threshold=0.0)
                if isinstance(h.entry.payload, dict) and h.entry.payload.get("question") in by_text]
        if near:  # semantic neighbours from the retrieval index (train split only), then the rest
            scored = near + [it for it in scored if it not in near]
        out: list[dict] = []
        groups: set = set()
        for it in scored:
            group = it.get("group") or it.get("id")
            if group in groups:
                continue
            ex = self._example_for(it)
            if ex is None:
                continue
            groups.add(group)
            out.append(ex)
            if len(out) >= k:
                break
        return out

    def _example_for(self, item: dict) -> dict | None:
        key = str(item.get("id") or item["question"])
        if key in self._example_cache:
            return self._example_cache[key]
        expect = item.get("expect", "answer")
        answer: dict | None = None
        if expect == "refuse":
            answer = {"refuse": "这个问题不能回答（涉及修改数据、敏感信息或不在数据范围内）。"}
        elif expect == "clarify":
            answer = {"clarify": {"question": "您的问题可以有几种理解，请说明要查询的具体指标或对象。", "options": []}}
        elif item.get("query"):
            answer = {"query": item["query"]}
        elif item.get("gold_sql"):
            q = self._verified_rule_query(item)
            answer = {"query": _compact_query(q)} if q is not None else {"sql": " ".join(str(item["gold_sql"]).split())}
        ex = {"question": item["question"], "answer": answer, "as_of": item.get("as_of")} if answer else None
        self._example_cache[key] = ex
        return ex

    def _verified_rule_query(self, item: dict) -> StructuredQuery | None:
        """The rule parser's query for a train item when it reproduces the item's gold result."""
        try:
            from eval.scoring import compare_result
            from semantic_layer.guard import guard_sql

            as_of = date.fromisoformat(item["as_of"]) if item.get("as_of") else date.today()
            parsed = self.assistant.parser.parse(item["question"], as_of)
            if parsed.status != "ok" or parsed.query is None:
                return None
            compiled = self.assistant.compiler.compile(parsed.query)
            ex = self.assistant.executor
            pred = ex.run(guard_sql(compiled.sql, self.cat).sql)
            gold = ex.run(guard_sql(item["gold_sql"], self.cat).sql)
            if not gold.rows:
                return None
            m = compare_result(gold.columns, gold.rows, [c.as_dict() for c in compiled.columns], pred.rows,
                               ordered=bool(item.get("ordered")))
            return parsed.query if m.ok else None
        except Exception as e:  # noqa: BLE001 - an example that cannot be checked falls back to SQL
            log.debug("example %s not verified: %s", item.get("id"), e)
            return None

    def examples_text(self, question: str) -> str:
        blocks = []
        for ex in self._hand_examples + self.train_examples(question):
            lines = []
            if ex.get("context"):
                lines.append(f"上一轮：{_dumps(ex['context'])}")
            q = ex["question"]
            if ex.get("as_of"):
                q += f"（今天是 {ex['as_of']}）"
            lines.append(f"问：{q}")
            lines.append(f"答：{_dumps(ex['answer'])}")
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    # ------------------------------------------------------------------ sizes (for the README)
    def prompt_sizes(self, question: str = "2021年一般公共预算收入是多少？", parsed=None) -> dict[str, int]:
        """Estimated tokens of each prompt part for one question."""
        return {
            "catalogue": estimate_tokens(self._catalogue_text),
            "examples": estimate_tokens(self.examples_text(question)),
            "system": estimate_tokens(self.system_prompt(question, parsed)),
            "user": estimate_tokens(self.user_prompt(question, parsed)),
            "fix": estimate_tokens(render(self._templates["fix"], error="字段不存在：fact_budget_revenue.amount",
                                          round=1, max_rounds=self.config.max_rounds, question=question)),
        }


def _compact_query(q: StructuredQuery) -> dict:
    d = q.describe()
    if isinstance(d.get("time"), dict):
        d["time"].pop("label", None)
    return d


def _error_detail(e) -> str:
    try:
        body = e.body if isinstance(e.body, dict) else {}
        msg = (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) else body.get("message")
    except Exception:  # noqa: BLE001
        msg = None
    msg = msg or ""
    return f"：{str(msg)[:160]}" if msg else ""


def parse_examples(text: str) -> list[dict]:
    """'上一轮：…' / '问：…' / '答：{json}' blocks of prompts/agent_examples.md."""
    out: list[dict] = []
    cur: dict = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("上一轮："):
            cur["context"] = json.loads(line[len("上一轮："):])
        elif line.startswith("问："):
            cur["question"] = line[len("问："):].strip()
        elif line.startswith("答："):
            cur["answer"] = json.loads(line[len("答："):])
            if "question" in cur:
                out.append(cur)
            cur = {}
    return out
