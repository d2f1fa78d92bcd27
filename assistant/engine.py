"""The question pipeline: parse → (retrieve) → compile → guard → execute → answer.

`Assistant` is the Python API behind the CLI, the UI and the evaluation runner. It loads the
catalogue, the members and the parser once; every SQL it runs passes the semantic layer's guard
and a read-only connection.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from semantic_layer.catalogue import Catalogue, load_catalogue
from semantic_layer.compiler import CompiledQuery, CompileError, Compiler, OutputColumn
from semantic_layer.executor import Executor, QueryError
from semantic_layer.guard import GuardError, RoleContext, guard_sql, parse_role
from semantic_layer.query import StructuredQuery
from warehouse.paths import DEFAULT_DB

from .answer import AnswerWriter
from .parser import ParseResult, RuleParser
from .retrieval_resolver import RetrievalResolver
from .vocabulary import Vocabulary, load_members

MAX_ROWS = 10000


@dataclass
class Conversation:
    """Multi-turn context: the last structured query answered."""

    last_query: StructuredQuery | None = None
    history: list[dict] = field(default_factory=list)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


class Assistant:
    def __init__(self, db_path: Path | str | None = None, catalogue: Catalogue | None = None,
                 role: str | None = None, audit=None):
        self.db_path = Path(db_path or DEFAULT_DB)
        if not self.db_path.exists():
            raise FileNotFoundError(f"找不到数据仓库文件：{self.db_path}。请先运行 `youshu warehouse build`。")
        self.catalogue = catalogue or self._catalogue_for(self.db_path)
        self.executor = Executor.shared(self.db_path)
        con = self.executor._cursor()  # the executor's own read-only connection
        try:
            members = load_members(con, self.catalogue)
            self.extents = self._extents(con)
        finally:
            con.close()
        self.vocab = Vocabulary(self.catalogue, members)
        self.member_names = {(m.dimension, m.key): m.name for m in members}
        self.parser = RuleParser(self.catalogue, self.vocab, self.extents)
        self.compiler = Compiler(self.catalogue)
        self.writer = AnswerWriter(self.catalogue, self.member_names, self.vocab.member_attrs)
        self.default_role = parse_role(role or self.catalogue.default_role, self.executor, catalogue=self.catalogue)
        self.audit = audit
        # loads embeddings only when a phrase needs them; YOUSHU_RETRIEVAL=off turns it off
        self.resolver = None if os.environ.get("YOUSHU_RETRIEVAL", "on").lower() in ("off", "0", "false") \
            else RetrievalResolver(self)
        self.llm_agent = None

    @staticmethod
    def _catalogue_for(db_path: Path) -> Catalogue:
        """The shipped catalogue, plus the user tables loaded into this warehouse (catalogue.d)."""
        extra = Path(db_path).expanduser().resolve().parent / "catalogue.d"  # warehouse.loader.user_catalogue_dir
        if extra.is_dir() and any(extra.glob("*.yaml")):
            return Catalogue.load(extra=extra)
        return load_catalogue()

    def _extents(self, con) -> dict[str, tuple[int, int]]:
        """The latest (year, month) each model has data for."""
        out: dict[str, tuple[int, int]] = {}
        for model in self.catalogue.models.values():
            g = model.time.grain
            try:
                if g == "month":
                    r = con.execute(f"SELECT year, MAX(month) FROM {model.table} WHERE year = (SELECT MAX(year) FROM {model.table}) GROUP BY year").fetchone()
                elif g == "quarter":
                    r = con.execute(f"SELECT year, MAX(quarter) * 3 FROM {model.table} WHERE year = (SELECT MAX(year) FROM {model.table}) GROUP BY year").fetchone()
                elif g == "year":
                    r = con.execute(f"SELECT MAX(year), 12 FROM {model.table}").fetchone()
                elif g == "day":
                    r = con.execute(f"SELECT YEAR(MAX({model.time.column})), MONTH(MAX({model.time.column})) FROM {model.table}").fetchone()
                else:
                    continue
            except Exception:  # a user catalogue may name tables not loaded yet
                continue
            if r and r[0] is not None:
                out[model.name] = (int(r[0]), int(r[1]))
        return out

    # ------------------------------------------------------------------ public API
    def ask(self, question: str, as_of: date | None = None, role: str | RoleContext | None = None,
            conversation: Conversation | None = None, mode: str = "rule", user: str = "") -> dict[str, Any]:
        """Answer one question; returns the answer object of the interface contract."""
        t_start = time.perf_counter()
        as_of = as_of or date.today()
        timings: dict[str, float] = {}
        answer = self._empty(question)
        answer["mode"] = mode
        try:
            role_ctx = self._role(role, user)
            t0 = time.perf_counter()
            ctx = conversation.last_query if conversation else None
            parsed = self.parser.parse(question, as_of, context=ctx)
            timings["parse"] = _ms(t0)
            path = "rule"
            t0 = time.perf_counter()
            if self.resolver is not None and parsed.unmatched:
                parsed = self.resolver.improve(question, parsed, as_of, ctx) or parsed
                if any(n.startswith("检索") for n in parsed.notes):
                    path = "rule+retrieval"
            timings["retrieve"] = _ms(t0)
            if mode in ("llm", "hybrid"):
                llm_answer = self._llm(question, parsed, as_of, role_ctx, mode, ctx, timings, answer)
                if llm_answer is not None:
                    return self._finish(llm_answer, t_start, timings, conversation, user, role_ctx)
            answer["path"] = path
            answer["interpretation"] = self._interpretation(parsed)
            if parsed.status == "refuse":
                answer.update(status="refused", error=parsed.reason)
            elif parsed.status == "clarify":
                answer.update(status="clarify", clarification=self._clarification(question, parsed.clarification),
                              answer=parsed.clarification["question"])
            else:
                self.answer_query(parsed.query, role_ctx, answer, timings)
                if parsed.notes and answer["status"] == "answered":
                    # keep notes already there (LLM fallback, compiler) after the parser's
                    answer["notes"] = list(parsed.notes) + [n for n in answer.get("notes", []) if n not in parsed.notes]
        except (GuardError, CompileError, QueryError) as e:
            answer.update(status="refused" if isinstance(e, GuardError) else "error", error=str(e))
        except Exception as e:  # never a traceback to the user
            answer.update(status="error", error=f"处理问题时出错：{type(e).__name__}。请换个说法再试，或联系管理员。")
            answer["debug"] = repr(e)[:500]
        return self._finish(answer, t_start, timings, conversation, user, role)

    def answer_query(self, query: StructuredQuery, role: RoleContext, answer: dict, timings: dict) -> dict:
        """Compile, guard, execute and write up a structured query (used by every path)."""
        t0 = time.perf_counter()
        compiled = self.compiler.compile(query)
        timings["compile"] = _ms(t0)
        self._execute(compiled.sql, compiled.columns, role, answer, timings)
        answer["interpretation"] = answer.get("interpretation") or {}
        answer["interpretation"].update(self._describe(query))
        t0 = time.perf_counter()
        rows = [dict(zip([c.name for c in compiled.columns], r)) for r in answer["rows"]]
        answer["answer"] = self.writer.text(query, compiled, rows)
        if compiled.notes:
            answer.setdefault("notes", []).extend(compiled.notes)
        answer["chart"] = self.writer.chart(query, compiled, rows)
        answer["sources"] = self.writer.sources(compiled, query) + [{"kind": "as_of", "as_of": self.catalogue.as_of}]
        answer["query"] = query.model_dump(mode="json")
        timings["format"] = _ms(t0)
        return answer

    def run_sql(self, sql: str, role: str | RoleContext | None = None, user: str = "", question: str = "") -> dict:
        """The analyst path: governed SQL typed or edited by hand."""
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        answer = self._empty(question or sql)
        answer["path"] = "sql"
        try:
            role_ctx = self._role(role, user)
            self._execute(sql, None, role_ctx, answer, timings)
            answer["answer"] = f"查询返回{len(answer['rows'])}行。"
            tables = answer.pop("_tables", [])
            answer["sources"] = [s for s in self.writer.sources(CompiledQuery("", [], tables, []), None)] + [
                {"kind": "as_of", "as_of": self.catalogue.as_of}]
        except (GuardError, QueryError) as e:
            answer.update(status="refused" if isinstance(e, GuardError) else "error", error=str(e))
        except Exception as e:
            answer.update(status="error", error=f"执行出错：{type(e).__name__}")
        return self._finish(answer, t_start, timings, None, user, role)

    def validate_sql(self, sql: str, role: str | RoleContext | None = None) -> tuple[bool, str]:
        """校验: (ok, Chinese message, the governed SQL when ok)."""
        try:
            guarded = guard_sql(sql, self.catalogue, self._role(role, ""), max_rows=MAX_ROWS)
        except GuardError as e:
            return False, str(e)
        return True, "校验通过：只读查询，表和字段都在数据目录中。将执行：\n" + guarded.sql

    # ------------------------------------------------------------------ internals
    def _role(self, role, user: str) -> RoleContext:
        if isinstance(role, RoleContext):
            return role
        if role:
            return parse_role(role, self.executor, user=user, catalogue=self.catalogue)
        return RoleContext(role=self.default_role.role, dept_code=self.default_role.dept_code, user=user)

    def _execute(self, sql: str, columns: list[OutputColumn] | None, role: RoleContext, answer: dict, timings: dict) -> None:
        t0 = time.perf_counter()
        guarded = guard_sql(sql, self.catalogue, role, max_rows=MAX_ROWS)
        timings["guard"] = _ms(t0)
        t0 = time.perf_counter()
        result = self.executor.run(guarded.sql)
        timings["execute"] = _ms(t0)
        answer["sql"] = guarded.sql
        answer["status"] = "answered"
        answer["_tables"] = guarded.tables
        if columns is None or len(columns) != len(result.columns):
            columns = [self._column_meta(c, guarded.tables) for c in result.columns]
        answer["columns"] = [c.as_dict() for c in columns]
        answer["rows"] = [list(r) for r in result.rows]
        if getattr(guarded, "row_filtered", None):
            answer.setdefault("notes", []).append(f"按角色“{role}”的权限，结果只包含本单位的数据")
        if getattr(guarded, "limited", False) and len(result.rows) >= MAX_ROWS:
            answer.setdefault("notes", []).append(f"结果超过{MAX_ROWS}行，只显示前{MAX_ROWS}行")

    def _column_meta(self, name: str, tables: list[str]) -> OutputColumn:
        for t in tables:
            meta = self.catalogue.tables.get(t)
            if meta and name in meta.columns:
                c = meta.columns[name]
                return OutputColumn(name, c.label, c.unit, "column")
        for m in self.catalogue.metrics.values():
            if m.name == name:
                return OutputColumn(name, m.label, m.unit)
        return OutputColumn(name, name, None, "column")

    def _empty(self, question: str) -> dict:
        return {"status": "error", "question": question, "answer": "", "sql": None, "columns": [], "rows": [],
                "interpretation": {}, "sources": [], "chart": None, "clarification": None, "error": None,
                "timings_ms": {}}

    def _describe(self, q: StructuredQuery) -> dict:
        cat = self.catalogue
        d = q.describe()
        d["metric_labels"] = [cat.metrics[m].label for m in q.metrics]
        d["dimension_labels"] = [cat.dimensions[x].label for x in q.dimensions]
        d["filter_labels"] = self.writer.scope(q)
        if q.time:
            d["time_label"] = q.time.label or f"{q.time.start}至{q.time.end}"
        return d

    def _interpretation(self, parsed: ParseResult) -> dict:
        out: dict[str, Any] = {"confidence": round(parsed.confidence, 2)}
        if parsed.query is not None:
            out.update(self._describe(parsed.query))
        if parsed.unmatched:
            out["unmatched"] = parsed.unmatched
        if parsed.notes:
            out["notes"] = parsed.notes
        return out

    def _clarification(self, question: str, c: dict) -> dict:
        word = c.get("word")
        refined = []
        for opt in c.get("options", []):
            refined.append(question.replace(word, opt, 1) if word and word in question else f"{question.rstrip('？?')}（{opt}）")
        return {"question": c["question"], "options": c.get("options", []), "refined_questions": refined}

    def _llm(self, question, parsed, as_of, role_ctx, mode, ctx, timings, answer) -> dict | None:
        """The LLM path (assistant.llm_agent); None means 'use the rule answer'."""
        if mode == "hybrid" and parsed.status in ("ok", "refuse") and parsed.confidence >= 0.8:
            return None
        agent = self.llm_agent
        if agent is None:
            try:
                from .llm_agent import LLMAgent

                agent = self.llm_agent = LLMAgent.from_env(self)
            except Exception:
                agent = None
        if agent is None:
            answer.setdefault("notes", []).append("未配置大模型（YOUSHU_LLM_BASE_URL 等），已使用规则解析")
            return None
        return agent.answer(question, parsed, as_of, role_ctx, ctx, timings, mode=mode, answer=answer)

    def _finish(self, answer: dict, t_start: float, timings: dict, conversation, user, role) -> dict:
        answer.pop("_tables", None)
        timings["total"] = _ms(t_start)
        answer["timings_ms"] = timings
        if conversation is not None and answer.get("status") == "answered" and answer.get("query"):
            conversation.last_query = StructuredQuery.model_validate(answer["query"])
            conversation.history.append({"question": answer["question"], "status": answer["status"]})
        if self.audit is not None:
            try:
                self.audit.append({
                    "user": user, "role": getattr(role, "role", role) or self.default_role.role,
                    "question": answer.get("question"), "status": answer.get("status"),
                    "interpretation": answer.get("interpretation"), "sql": answer.get("sql"),
                    "row_count": len(answer.get("rows") or []), "timings_ms": timings, "error": answer.get("error"),
                })
            except Exception:
                answer.setdefault("notes", []).append("审计日志写入失败")
        return answer
