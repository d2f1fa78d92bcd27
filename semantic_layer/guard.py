"""The SQL guard: every SQL statement, whatever produced it, passes here before DuckDB sees it.

Compiled rules, LLM output and the analyst's SQL editor all call ``guard_sql``. It works on the
sqlglot AST (dialect duckdb) and returns SQL regenerated from the checked, rewritten tree —
that exact text is what runs and what answers show:

* exactly one statement, and it is a query (SELECT, UNION/INTERSECT/EXCEPT, WITH … SELECT);
  DDL, DML, PRAGMA, ATTACH, COPY, INSTALL/LOAD, SET, CALL … are rejected wherever they hide;
* no table-valued functions at all, no scalar function that reads files, the network, the
  environment or the engine's settings (deny list + name patterns, checked on the tree and
  again on the tokens of the generated SQL);
* only catalogue tables (plus the query's own CTEs, with DuckDB's scoping rules) may be read;
  every column must exist in the catalogue (sqlglot's ``qualify`` against a schema built
  from the catalogue);
* role row filters (部门用户) and masking of sensitive columns are applied at the source:
  every reference to a filtered or sensitive table, anywhere in the tree, becomes
  ``(SELECT * REPLACE (<mask> AS col) FROM t WHERE <filter>) AS <same alias>``, so no
  subquery, CTE, UNION branch or join can reach the raw rows;
* the outermost query gets ``LIMIT max_rows`` when it has none or a larger one.

``GuardError`` messages are Chinese and meant for the user.
"""
from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema
from sqlglot.tokens import TokenType

from .catalogue import Catalogue, load_catalogue

DIALECT = "duckdb"
MAX_SQL_CHARS = 50_000
DEFAULT_MAX_ROWS = 10_000


class GuardError(ValueError):
    """The SQL is not allowed; the message is for the user (Chinese)."""


class _DropFallbackWarnings(logging.Filter):
    """sqlglot logs a warning whenever it falls back to exp.Command; the guard rejects those anyway."""

    def filter(self, record: logging.LogRecord) -> bool:  # pragma: no cover - trivial
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_DropFallbackWarnings())


# ----------------------------------------------------------------------------- roles
ROLE_ALIASES = {
    "领导": "领导",
    "leader": "领导",
    "分析师": "分析师",
    "analyst": "分析师",
    "审计": "审计",
    "auditor": "审计",
    "audit": "审计",
    "部门用户": "部门用户",
    "部门": "部门用户",
    "dept": "部门用户",
    "department": "部门用户",
}


@dataclass
class RoleContext:
    role: str = "分析师"
    dept_code: str | None = None
    user: str = ""

    def __str__(self) -> str:
        return f"{self.role}:{self.dept_code}" if self.dept_code else self.role


def _lookup_departments(con: Any) -> list[tuple[str, str]]:
    sql = "SELECT dept_code, dept_name FROM dim_department"
    if hasattr(con, "run") and not hasattr(con, "execute"):  # an Executor
        return [(str(r[0]), str(r[1])) for r in con.run(sql).rows]
    return [(str(r[0]), str(r[1])) for r in con.execute(sql).fetchall()]


def parse_role(
    text: str | RoleContext | None,
    con: Any = None,
    *,
    user: str = "",
    catalogue: Catalogue | None = None,
) -> RoleContext:
    """'领导' | '分析师' | '审计' | '部门用户:001' | '部门用户:公安分局' | leader | analyst | auditor | dept:001.

    ``con`` (a DuckDB connection or an ``Executor``) resolves a department name through
    dim_department; without it, a department code is accepted as given.
    """
    if isinstance(text, RoleContext):
        return text
    cat = catalogue or load_catalogue()
    raw = (text or "").strip()
    if not raw:
        return RoleContext(role=cat.default_role, user=user)
    m = re.match(r"^([^:：]*)[:：](.*)$", raw, flags=re.S)
    head, rest = (m.group(1).strip(), m.group(2).strip()) if m else (raw, "")
    role = ROLE_ALIASES.get(head) or ROLE_ALIASES.get(head.lower())
    if role is None or role not in cat.roles:
        names = "、".join(cat.roles)
        raise GuardError(f"未知角色：{head}（可用角色：{names}；部门用户请写成“部门用户:单位编码”）")
    if not cat.roles[role].row_filters:
        return RoleContext(role=role, dept_code=rest or None, user=user)
    if not rest:
        raise GuardError(f"角色“{role}”需要指定所属单位，例如“部门用户:001”或“部门用户:公安分局”")
    if con is not None:
        try:
            depts = _lookup_departments(con)
        except Exception as e:  # noqa: BLE001 - reported to the user
            raise GuardError(f"无法读取预算单位表以识别单位“{rest}”：{e}") from e
        for code, name in depts:
            if rest == code or rest == name:
                return RoleContext(role=role, dept_code=code, user=user)
        raise GuardError(f"未找到预算单位：{rest}")
    if re.fullmatch(r"[0-9A-Za-z_\-]{1,32}", rest):
        return RoleContext(role=role, dept_code=rest, user=user)
    raise GuardError(f"无法识别单位“{rest}”：请提供单位编码（如 部门用户:001）")


# ----------------------------------------------------------------------------- result
@dataclass
class GuardedSQL:
    sql: str
    tables: list[str]
    limited: bool  # True when the guard added or lowered the outer LIMIT
    masked: list[str] = field(default_factory=list)  # table.column masked for this role
    row_filtered: list[str] = field(default_factory=list)  # tables restricted by the role

    def __str__(self) -> str:
        return self.sql


# ----------------------------------------------------------------------------- policy
# Statements and clauses that are never allowed anywhere in the tree.
_FORBIDDEN_NODE_NAMES = (
    "DDL", "DML", "Command", "Pragma", "Set", "Use", "Copy", "Attach", "Detach", "Install",
    "Transaction", "Commit", "Rollback", "Describe", "Show", "Summarize", "Into", "Kill",
    "Export", "Analyze", "LoadData", "Cache", "Uncache", "Refresh", "Grant", "Revoke", "Lock",
    "Merge", "Insert", "Update", "Delete", "Create", "Drop", "Alter", "TruncateTable",
    "Comment", "AlterColumn", "Declare", "Execute", "Put", "Get", "Semicolon", "Load",
    "Vacuum", "Checkpoint", "Call", "Reset", "Prepare",
)
FORBIDDEN_NODES: tuple[type, ...] = tuple(
    getattr(exp, n) for n in _FORBIDDEN_NODE_NAMES if isinstance(getattr(exp, n, None), type)
)

# Scalar (and table) functions touching files, network, environment, settings, the engine.
DENIED_FUNCTIONS = frozenset(
    """
    read_csv read_csv_auto read_tsv read_parquet parquet_scan parquet_metadata parquet_schema
    parquet_file_metadata parquet_kv_metadata parquet_bloom_probe read_json read_json_auto
    read_json_objects read_json_objects_auto read_ndjson read_ndjson_auto read_ndjson_objects
    read_text read_blob read_xlsx read_xls glob sniff_csv query query_table getenv
    current_setting getvariable set_variable nextval currval setval checkpoint force_checkpoint
    json_execute_serialized_sql json_serialize_sql json_deserialize_sql json_serialize_plan
    from_substrait from_substrait_json get_substrait get_substrait_json iceberg_scan
    iceberg_metadata iceberg_snapshots delta_scan st_read st_read_meta st_drivers sqlite_scan
    sqlite_attach postgres_scan postgres_scan_pushdown postgres_attach postgres_query
    postgres_execute mysql_scan mysql_query mysql_execute load_aws_credentials which_secret
    arrow_scan arrow_scan_dumb scan_arrow_ipc summary test_all_types test_vector_types
    start_ui start_ui_server stop_ui_server ui_is_started httpfs http_get http_post http_head
    shell exec execute sql_auto_complete enable_logging disable_logging
    truncate_duckdb_logs duckdb_logs pragma_version
    """.split()
)
# Expression generators DuckDB cannot interrupt once started: a huge argument exhausts memory.
GENERATOR_FUNCTIONS = frozenset({"range", "generate_series", "repeat", "list_resize", "array_resize"})
DENIED_PREFIXES = (
    "read_", "parquet_", "duckdb_", "pragma_", "http", "sqlite_", "postgres_", "mysql_",
    "iceberg_", "delta_", "ducklake", "st_read", "sniff_", "json_execute", "pg_", "load_",
    "arrow_", "write_", "copy_", "export_", "import_", "install_", "enable_", "disable_",
    "start_", "stop_", "ui_", "azure_", "s3_", "gcs_", "substrait", "from_substrait",
    "get_substrait", "secret", "which_secret", "current_setting", "getenv", "glob",
)
DENIED_PATTERN = re.compile(
    r"(read_|_scan|scan_|glob|file|https?|url|secret|setting|getenv|environ|extension|"
    r"pragma|checkpoint|attach|install|query|_sql|sql_|substrait|shell|exec|"
    r"import|export|credential|variable)"
)
# Function names that match DENIED_PATTERN but are harmless and commonly used.
ALLOWED_FUNCTIONS = frozenset({"current_date", "current_timestamp", "current_time"})

SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "system", "temp"})
SYSTEM_TABLE_PREFIXES = ("duckdb_", "sqlite_", "pg_", "pragma_", "information_schema")

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# invisible/bidi characters used to hide code from reviewers ("trojan source")
_HIDDEN_CHARS = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad]")

PLACEHOLDER_PREFIX = "__youshu_param_"


def _lower(s: str) -> str:
    """DuckDB matches identifiers case-insensitively on ASCII letters only."""
    return s.translate(_ASCII_LOWER)


def function_denied(name: str) -> bool:
    n = _lower(name.strip().strip('"'))
    if n in ALLOWED_FUNCTIONS:
        return False
    if n in DENIED_FUNCTIONS or n.startswith(DENIED_PREFIXES):
        return True
    return bool(DENIED_PATTERN.search(n))


def _func_names(node: exp.Func) -> set[str]:
    names: set[str] = set()
    if isinstance(node, exp.Anonymous):
        names.add(node.name)
    else:
        try:
            names.add(node.sql_name())
        except Exception:  # noqa: BLE001
            pass
    return {n for n in names if n}


def _statement_word(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    key = getattr(node, "key", type(node).__name__)
    return {"truncatetable": "TRUNCATE", "into": "SELECT INTO", "semicolon": ";"}.get(key, key.upper())


# ----------------------------------------------------------------------------- helpers
def _mask_sensitive(col: str) -> exp.Expression:
    return sqlglot.parse_one(
        f"CASE WHEN {col} IS NULL THEN NULL "
        f"WHEN length(CAST({col} AS VARCHAR)) <= 8 THEN '********' "
        f"ELSE left(CAST({col} AS VARCHAR), 4) || '**********' || right(CAST({col} AS VARCHAR), 4) END",
        dialect=DIALECT,
    )


def _mask_if_individual(col: str, flag_col: str | None, flag_value: str) -> exp.Expression:
    masked = f"CASE WHEN {col} IS NULL THEN NULL ELSE left(CAST({col} AS VARCHAR), 1) || '**' END"
    if flag_col is None:
        return sqlglot.parse_one(masked, dialect=DIALECT)
    return sqlglot.parse_one(
        f"CASE WHEN {flag_col} = {exp.Literal.string(flag_value).sql(DIALECT)} THEN ({masked}) ELSE {col} END",
        dialect=DIALECT,
    )


INDIVIDUAL_FLAGS = {"fact_payment": ("payee_type", "个人")}


class _Policy:
    """What a catalogue and a role imply: allowed tables, schema, row filters, masks."""

    def __init__(self, catalogue: Catalogue, role: RoleContext):
        self.cat = catalogue
        self.role = role
        role_def = catalogue.roles.get(role.role)
        if role_def is None:
            raise GuardError(f"未知角色：{role.role}")
        self.tables = {_lower(t): t for t in catalogue.tables}
        self.schema = MappingSchema(
            {t: {c: "VARCHAR" for c in meta.columns} for t, meta in catalogue.tables.items()},
            dialect=DIALECT,
        )
        self.row_filters: dict[str, exp.Expression] = {}
        for table, template in role_def.row_filters.items():
            if role.dept_code is None and "{dept_code}" in template:
                raise GuardError(f"角色“{role.role}”需要指定所属单位，例如“部门用户:001”")
            self.row_filters[_lower(table)] = self._filter_expr(template)
        self.masks: dict[str, dict[str, exp.Expression]] = {}
        if not role_def.sensitive:
            for table, meta in catalogue.tables.items():
                cols = {}
                for col, cm in meta.columns.items():
                    if cm.sensitivity == "sensitive":
                        cols[col] = _mask_sensitive(col)
                    elif cm.sensitivity == "sensitive_if_individual":
                        flag = INDIVIDUAL_FLAGS.get(table)
                        if flag is None:
                            guess = col.rsplit("_", 1)[0] + "_type"
                            flag = (guess, "个人") if guess in meta.columns else (None, "个人")
                        cols[col] = _mask_if_individual(col, flag[0], flag[1])
                if cols:
                    self.masks[_lower(table)] = cols

    def _filter_expr(self, template: str) -> exp.Expression:
        values = {"dept_code": self.role.dept_code, "user": self.role.user}
        text = template
        for key in values:
            text = text.replace("{" + key + "}", PLACEHOLDER_PREFIX + key)
        cond = sqlglot.parse_one(text, dialect=DIALECT)

        def subst(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column) and node.name.startswith(PLACEHOLDER_PREFIX):
                value = values[node.name[len(PLACEHOLDER_PREFIX):]]
                return exp.Literal.string(str(value)) if value is not None else exp.Null()
            return node

        return cond.transform(subst)


_POLICY_CACHE: dict[tuple, _Policy] = {}
_POLICY_LOCK = threading.Lock()


def _policy_for(catalogue: Catalogue, role: RoleContext) -> _Policy:
    """Policies are immutable once built; cache them per (catalogue object, role)."""
    key = (id(catalogue), role.role, role.dept_code, role.user)
    with _POLICY_LOCK:
        cached = _POLICY_CACHE.get(key)
        if cached is not None and cached.cat is catalogue:
            return cached
    policy = _Policy(catalogue, role)
    with _POLICY_LOCK:
        if len(_POLICY_CACHE) > 256:
            _POLICY_CACHE.clear()
        _POLICY_CACHE[key] = policy
    return policy


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _check_text(sql: Any) -> str:
    if not isinstance(sql, str):
        raise GuardError("SQL 必须是文本")
    sql = sql.lstrip("\ufeff")
    if not sql.strip():
        raise GuardError("SQL 为空")
    if len(sql) > MAX_SQL_CHARS:
        raise GuardError(f"SQL 过长（超过 {MAX_SQL_CHARS} 个字符）")
    m = _CONTROL_CHARS.search(sql)
    if m:
        raise GuardError(f"SQL 中含有不可见的控制字符（U+{ord(m.group()):04X}），已拒绝")
    for ch in sql:
        if ord(ch) > 0x9F and unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"):
            raise GuardError(f"SQL 中含有无法识别的字符（U+{ord(ch):04X}），已拒绝")
    m = _HIDDEN_CHARS.search(sql)
    if m:
        raise GuardError(f"SQL 中含有隐藏字符（U+{ord(m.group()):04X}），已拒绝")
    return sql


def _tokenize(sql: str) -> list:
    try:
        return sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
    except Exception as e:  # noqa: BLE001
        raise GuardError(f"SQL 无法解析：{_short(e)}") from e


def _single_statement(sql: str, tokens: list | None = None) -> exp.Expression:
    """The one statement of ``sql`` (``tokens``: its tokens, when the caller has them already)."""
    if tokens is None:
        tokens = _tokenize(sql)
    if not tokens:
        raise GuardError("SQL 为空")
    for i, tok in enumerate(tokens):
        if tok.token_type == TokenType.SEMICOLON:
            if i != len(tokens) - 1:
                raise GuardError("只允许一条查询语句（检测到分号后还有其他语句）")
            if sql[tok.end + 1:].strip():
                raise GuardError("只允许一条查询语句：分号之后不能再有其他内容（包括注释）")
    try:  # what sqlglot.parse(sql, read=DIALECT) does, without tokenizing the text again
        statements = sqlglot.Dialect.get_or_raise(DIALECT).parser().parse(tokens, sql)
    except Exception as e:  # noqa: BLE001
        raise GuardError(f"SQL 无法解析：{_short(e)}") from e
    statements = [s for s in statements if s is not None and not isinstance(s, exp.Semicolon)]
    if not statements:
        raise GuardError("SQL 为空")
    if len(statements) != 1:
        raise GuardError("只允许一条查询语句")
    return statements[0]


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return re.sub(r"\x1b\[[0-9;]*m", "", text)[:200]


def _check_root(root: exp.Expression) -> None:
    if isinstance(root, FORBIDDEN_NODES) or not isinstance(root, (exp.Select, exp.SetOperation, exp.Subquery)):
        raise GuardError(f"只允许查询（SELECT）语句，不能修改数据或执行命令（检测到：{_statement_word(root)}）")
    inner = root
    while isinstance(inner, exp.Subquery):
        inner = inner.this
    if not isinstance(inner, (exp.Select, exp.SetOperation)):
        raise GuardError(f"只允许查询（SELECT）语句（检测到：{_statement_word(inner)}）")


class _Scope:
    """Resolve a table reference: a visible CTE, a catalogue table, or forbidden."""

    @staticmethod
    def cte_visible(table: exp.Table, name: str) -> bool:
        node: exp.Expression = table
        while node.parent is not None:
            parent = node.parent
            if isinstance(node, exp.CTE) and isinstance(parent, exp.With):
                ctes = parent.expressions
                idx = next(i for i, c in enumerate(ctes) if c is node)
                earlier = {_lower(c.alias_or_name) for c in ctes[:idx]}
                if name in earlier:
                    return True
                if parent.args.get("recursive") and _lower(node.alias_or_name) == name:
                    body = node.this
                    if isinstance(body, exp.SetOperation) and _inside(table, body.expression):
                        return True
                # skip the With's owner: the remaining CTEs are not visible from inside this one
                owner = parent.parent
                node = owner if owner is not None else parent
                continue
            with_ = parent.args.get("with_") or parent.args.get("with")
            if isinstance(with_, exp.With) and node is not with_:
                if name in {_lower(c.alias_or_name) for c in with_.expressions}:
                    return True
            node = parent
        return False


def _inside(node: exp.Expression, ancestor: exp.Expression) -> bool:
    while node is not None:
        if node is ancestor:
            return True
        node = node.parent
    return False


_TABLE_ARGS_KEPT = ("alias", "joins", "laterals", "pivots", "sample")


def _check_tree(root: exp.Expression, policy: _Policy) -> list[tuple[exp.Table, str]]:
    """Reject forbidden nodes and functions; return catalogue table references (node, name)."""
    refs: list[tuple[exp.Table, str]] = []
    cte_names: set[str] = set()
    for node in root.walk():
        if isinstance(node, FORBIDDEN_NODES):
            raise GuardError(f"只允许查询（SELECT）语句，不能修改数据或执行命令（检测到：{_statement_word(node)}）")
        if isinstance(node, exp.Func):
            for name in _func_names(node):
                if function_denied(name):
                    raise GuardError(f"不允许使用读取文件或网络的函数：{_lower(name)}")
                if _lower(name) in GENERATOR_FUNCTIONS:
                    raise GuardError(f"不允许使用可能耗尽内存的生成函数：{_lower(name)}")
        if isinstance(node, (exp.Unnest, exp.TableFromRows)) and isinstance(node.parent, (exp.From, exp.Join, exp.Lateral)):
            raise GuardError("不允许使用表函数（如 unnest、range、read_csv）")
        if isinstance(node, (exp.From, exp.Join, exp.Lateral)):
            src = node.this
            allowed = (exp.Subquery,) if isinstance(node, exp.Lateral) else (exp.Table, exp.Subquery, exp.Values, exp.Lateral)
            if isinstance(src, exp.Func):
                for fname in _func_names(src):
                    if function_denied(fname):
                        raise GuardError(f"不允许使用读取文件或网络的函数：{_lower(fname)}")
            if not isinstance(src, allowed):
                raise GuardError(f"不允许使用表函数：{_lower(src.sql(DIALECT))[:60]}")
        if isinstance(node, exp.CTE):
            cname = _lower(node.alias_or_name)
            if not cname:
                raise GuardError("WITH 子句缺少名称")
            if cname in policy.tables:
                raise GuardError(f"WITH 子句的名称不能与数据表同名：{node.alias_or_name}")
            if cname.startswith(SYSTEM_TABLE_PREFIXES) or cname in SYSTEM_SCHEMAS:
                raise GuardError(f"WITH 子句的名称不允许：{node.alias_or_name}")
            cte_names.add(cname)
        if isinstance(node, exp.Table):
            if not isinstance(node.this, exp.Identifier):
                if isinstance(node.this, exp.Func):
                    for fname in _func_names(node.this):
                        if function_denied(fname):
                            raise GuardError(f"不允许使用读取文件或网络的函数：{_lower(fname)}")
                fn = node.this.sql(DIALECT) if isinstance(node.this, exp.Expression) else str(node.this)
                raise GuardError(f"不允许使用表函数：{_lower(fn)[:80]}")
            full = ".".join(p for p in (node.catalog, node.db, node.name) if p)
            name = _lower(node.name)
            db = _lower(node.db or "")
            if node.catalog or (db and db != "main"):
                if db in SYSTEM_SCHEMAS or _lower(node.catalog or "") in SYSTEM_SCHEMAS:
                    raise GuardError(f"不能访问系统目录：{full}")
                raise GuardError(f"不能访问数据目录之外的表：{full}")
            if not db and _Scope.cte_visible(node, name):
                continue
            if name not in policy.tables:
                if name.startswith(SYSTEM_TABLE_PREFIXES) or name in SYSTEM_SCHEMAS:
                    raise GuardError(f"不能访问系统目录：{full}")
                raise GuardError(f"不能访问数据目录之外的表：{full}")
            for key, value in node.args.items():
                if key not in ("this", "db", "catalog", *_TABLE_ARGS_KEPT) and value not in (None, False, [], ""):
                    raise GuardError(f"不支持该表引用写法：{node.sql(DIALECT)[:80]}")
            refs.append((node, policy.tables[name]))
    return refs


def _check_columns(root: exp.Expression, policy: _Policy, refs: list[tuple[exp.Table, str]],
                   scratch: exp.Expression | None = None) -> None:
    """``scratch``: a tree equal to ``root`` that qualify may rewrite (default: a copy of root)."""
    try:
        qualify(
            scratch if scratch is not None else root.copy(),
            schema=policy.schema,
            dialect=DIALECT,
            validate_qualify_columns=True,
            quote_identifiers=False,
            identify=False,
        )
    except OptimizeError as e:
        msg = str(e)
        m = re.search(r"Column '([^']+)' could not be resolved", msg) or re.search(r"Unknown column: (\S+)", msg)
        if not m:
            raise GuardError(f"无法校验查询中的字段：{_short(e)}") from e
        col = m.group(1).strip('"')
        col_l = _lower(col)
        tables = sorted({name for _, name in refs})
        owners = [t for t in tables if col_l in {_lower(c) for c in policy.cat.tables[t].columns}]
        if len(owners) > 1:
            raise GuardError(f"字段“{col}”同时存在于 {'、'.join(owners)}，请加上表名或别名") from e
        if len(owners) == 1 and not re.search(r"Unknown column", msg):
            raise GuardError(f"无法确定字段“{col}”的来源（暂不支持该写法），请为字段加上表名或改写查询") from e
        qualified = None
        for c in root.find_all(exp.Column):
            if _lower(c.name) == col_l and c.table:
                alias = _lower(c.table)
                for t, name in refs:
                    if _lower(t.alias_or_name) == alias:
                        qualified = f"{name}.{col}"
        if qualified is None and len(tables) == 1:
            qualified = f"{tables[0]}.{col}"
        raise GuardError(f"字段不存在：{qualified or col}") from e
    except GuardError:
        raise
    except Exception as e:  # noqa: BLE001
        raise GuardError(f"无法校验查询中的字段：{_short(e)}") from e


def _rewrite_sources(refs: list[tuple[exp.Table, str]], policy: _Policy) -> tuple[list[str], list[str]]:
    """Replace filtered/sensitive table references by filtering, masking subqueries."""
    masked: set[str] = set()
    filtered: set[str] = set()
    for node, name in refs:
        key = _lower(name)
        cond = policy.row_filters.get(key)
        masks = policy.masks.get(key)
        if cond is None and not masks:
            continue
        star = exp.Star(**({"replace": [m.copy().as_(c) for c, m in masks.items()]} if masks else {}))
        inner = exp.Select(expressions=[star]).from_(exp.Table(this=exp.to_identifier(name)))
        if cond is not None:
            inner = inner.where(cond.copy())
            filtered.add(name)
        if masks:
            masked.update(f"{name}.{c}" for c in masks)
        alias = node.args.get("alias")
        alias = alias.copy() if alias is not None else exp.TableAlias(this=exp.to_identifier(name))
        sub = exp.Subquery(this=inner, alias=alias)
        for key_arg in ("joins", "laterals", "pivots", "sample"):
            value = node.args.get(key_arg)
            if value:
                sub.set(key_arg, value)
        node.replace(sub)
    return sorted(masked), sorted(filtered)


def _literal_int(limit: exp.Expression | None) -> int | None:
    if not isinstance(limit, exp.Limit):
        return None
    opts = limit.args.get("limit_options")
    if opts is not None and any(opts.args.get(k) for k in ("percent", "with_ties")):
        return None
    if limit.args.get("expressions") or limit.args.get("offset"):
        return None
    value = limit.expression
    if isinstance(value, exp.Literal) and not value.is_string:
        try:
            return int(str(value.this))
        except ValueError:
            return None
    return None


def _apply_limit(root: exp.Expression, max_rows: int) -> tuple[exp.Expression, bool]:
    if isinstance(root, (exp.Select, exp.SetOperation)) and not root.args.get("fetch"):
        limit = root.args.get("limit")
        if limit is None:
            root.set("limit", exp.Limit(expression=exp.Literal.number(max_rows)))
            return root, True
        n = _literal_int(limit)
        if n is not None and 0 <= n <= max_rows:
            return root, False
        if n is not None:
            root.set("limit", exp.Limit(expression=exp.Literal.number(max_rows)))
            return root, True
    wrapped = exp.Select(expressions=[exp.Star()]).from_(
        exp.Subquery(this=root, alias=exp.TableAlias(this=exp.to_identifier("_q")))
    )
    wrapped.set("limit", exp.Limit(expression=exp.Literal.number(max_rows)))
    return wrapped, True


def _check_output_tokens(sql: str, tokens: list | None = None) -> None:
    if tokens is None:
        tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
    for i, tok in enumerate(tokens[:-1]):
        if tokens[i + 1].token_type == TokenType.L_PAREN and tok.token_type not in (TokenType.STRING,):
            if function_denied(tok.text):
                raise GuardError(f"不允许使用读取文件或网络的函数：{_lower(tok.text)}")
        if tok.token_type == TokenType.SEMICOLON:
            raise GuardError("只允许一条查询语句")


# ----------------------------------------------------------------------------- entry point
def guard_sql(
    sql: str,
    catalogue: Catalogue | None = None,
    role: RoleContext | str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> GuardedSQL:
    """Check, restrict and rewrite one query for a role; raise GuardError if it is not allowed.

    The result depends only on (SQL text, catalogue, role, max_rows), so accepted queries are
    remembered per exactly that key: asking the same question again runs the very SQL the full
    checks produced for it, without parsing it again. Refusals are never cached.
    """
    cat = catalogue or load_catalogue()
    ctx = role if isinstance(role, RoleContext) else parse_role(role, catalogue=cat)
    if not isinstance(max_rows, int) or max_rows < 1:
        raise GuardError("最大行数必须是正整数")
    key = (sql, id(cat), ctx.role, ctx.dept_code, ctx.user, max_rows) if isinstance(sql, str) else None
    if key is not None:
        with _GUARDED_LOCK:
            hit = _GUARDED.get(key)
            if hit is not None and hit[0] is cat:
                _GUARDED.move_to_end(key)
                return replace(hit[1], tables=list(hit[1].tables), masked=list(hit[1].masked),
                               row_filtered=list(hit[1].row_filtered))
    guarded = _guard_uncached(sql, cat, ctx, max_rows)
    if key is not None:
        with _GUARDED_LOCK:
            _GUARDED[key] = (cat, replace(guarded, tables=list(guarded.tables), masked=list(guarded.masked),
                                          row_filtered=list(guarded.row_filtered)))
            while len(_GUARDED) > GUARD_CACHE_SIZE:
                _GUARDED.popitem(last=False)
    return guarded


GUARD_CACHE_SIZE = 2048
_GUARDED: "OrderedDict[tuple, tuple[Catalogue, GuardedSQL]]" = OrderedDict()
_GUARDED_LOCK = threading.Lock()


def _guard_uncached(sql: str, cat: Catalogue, ctx: RoleContext, max_rows: int) -> GuardedSQL:
    try:
        policy = _policy_for(cat, ctx)
        text = _check_text(sql)
        root = _single_statement(text)
        _check_root(root)
        refs = _check_tree(root, policy)
        # qualify rewrites the tree it checks: give it a second parse of the same text (equal to
        # root.copy(), and cheaper than deep-copying a tree that carries source positions)
        _check_columns(root, policy, refs, scratch=_single_statement(text))
        tables = sorted({name for _, name in refs})
        masked, filtered = _rewrite_sources(refs, policy)
        root, limited = _apply_limit(root, max_rows)
        out = root.sql(dialect=DIALECT, comments=False)
        # defence in depth: what runs must itself pass the structural checks
        out_tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(out)
        _check_output_tokens(out, out_tokens)
        again = _single_statement(out, out_tokens)
        _check_root(again)
        _check_tree(again, policy)
    except GuardError:
        raise
    except RecursionError as e:
        raise GuardError("SQL 嵌套过深，无法检查") from e
    except Exception as e:  # noqa: BLE001 - anything unexpected is a refusal, never a crash
        raise GuardError(f"SQL 无法通过安全检查：{_short(e)}") from e
    return GuardedSQL(sql=out, tables=tables, limited=limited, masked=masked, row_filtered=filtered)


__all__ = [
    "GuardError",
    "GuardedSQL",
    "RoleContext",
    "parse_role",
    "guard_sql",
    "function_denied",
    "DENIED_FUNCTIONS",
]
