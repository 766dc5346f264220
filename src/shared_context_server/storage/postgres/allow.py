"""What a raw query on PostgreSQL may be, judged on PostgreSQL's own parse tree.

pglast is PostgreSQL's parser (libpg_query), so a comment, a string or a quoted name ends
here exactly where the server ends it. The tree is read as an allowlist: one SELECT,
VALUES, TABLE, INSERT, UPDATE or DELETE (with WITH), made of the node types below, calling
only the functions below, naming tables only in the schema `records`. Anything else
(another statement, a node or function not listed, a table of pg_catalog) is refused by
name. The confined login (records.py) holds no privilege beyond the shared
tables; this list keeps it from what PUBLIC may call anyway: advisory locks, pg_notify,
the lo_* family, dblink, settings, signals, SQL run from text.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from shared_context_server.errors import InvalidInput, NotFound
from shared_context_server.storage.seam.records import NOT_REACHABLE, SCHEMA

STATEMENTS = frozenset({"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt"})
WRITES = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt"})
# Parts of a statement that only read or compute; a node type not listed is refused.
NODES = STATEMENTS | frozenset(
    {
        "A_ArrayExpr", "A_Const", "A_Expr", "A_Indices", "A_Indirection", "A_Star", "Alias",
        "BitString", "BoolExpr", "Boolean", "BooleanTest", "CaseExpr", "CaseWhen",
        "CoalesceExpr", "CollateClause", "ColumnRef", "CommonTableExpr", "CTECycleClause",
        "CTESearchClause", "Float", "FuncCall", "GroupingFunc", "GroupingSet", "IndexElem",
        "InferClause", "Integer", "JoinExpr", "List", "LockingClause", "MinMaxExpr",
        "MultiAssignRef", "NamedArgExpr", "NullTest", "OnConflictClause", "ParamRef",
        "RangeFunction", "RangeSubselect", "RangeVar", "ResTarget", "ReturningClause",
        "RowExpr", "SetToDefault", "SortBy", "SQLValueFunction", "String", "SubLink",
        "TypeCast", "TypeName", "WindowDef", "WithClause",
    }
)  # fmt: skip
# Built-ins that compute a value from their arguments and touch nothing else: aggregates
# and window functions, text, numbers, dates, JSON and arrays. pg_sleep is bounded by the
# statement timeout. Names only count unqualified or in pg_catalog.
_FUNCTION_GROUPS = {
    "aggregates": """count sum avg min max bool_and bool_or every string_agg array_agg
        json_agg jsonb_agg json_object_agg jsonb_object_agg stddev stddev_pop stddev_samp
        variance var_pop var_samp percentile_cont percentile_disc mode corr covar_pop
        covar_samp""",
    "windows": """row_number rank dense_rank percent_rank cume_dist ntile lag lead
        first_value last_value nth_value""",
    "text": """lower upper length char_length character_length octet_length bit_length
        substr substring left right btrim ltrim rtrim lpad rpad replace reverse repeat concat
        concat_ws strpos position split_part starts_with initcap md5 translate to_hex ascii
        chr format overlay normalize is_normalized regexp_replace regexp_match regexp_matches
        regexp_split_to_array regexp_split_to_table regexp_like regexp_count regexp_substr
        regexp_instr quote_ident quote_literal quote_nullable string_to_array string_to_table
        array_to_string encode decode to_char to_number similar_to_escape similar_escape""",
    "numbers": """abs ceil ceiling floor round trunc sign sqrt cbrt power pow exp ln log
        log10 mod div width_bucket degrees radians sin cos tan asin acos atan atan2 gcd lcm
        factorial random""",
    "dates": """now clock_timestamp statement_timestamp transaction_timestamp date_trunc
        date_part extract age make_date make_time make_timestamp make_timestamptz
        make_interval to_date to_timestamp isfinite justify_days justify_hours
        justify_interval date_bin timezone""",
    "json": """json_build_object jsonb_build_object json_build_array jsonb_build_array
        to_json to_jsonb json_array_length jsonb_array_length json_each jsonb_each
        json_each_text jsonb_each_text json_array_elements jsonb_array_elements
        json_array_elements_text jsonb_array_elements_text json_object_keys jsonb_object_keys
        json_extract_path jsonb_extract_path json_extract_path_text jsonb_extract_path_text
        json_typeof jsonb_typeof jsonb_set jsonb_insert jsonb_strip_nulls json_strip_nulls
        jsonb_pretty jsonb_path_query jsonb_path_exists jsonb_path_match
        jsonb_path_query_array jsonb_path_query_first row_to_json array_to_json""",
    "arrays": """array_length cardinality unnest array_append array_prepend array_cat
        array_position array_positions array_remove array_replace array_lower array_upper
        array_dims array_ndims generate_series generate_subscripts""",
    "other": "num_nulls num_nonnulls pg_typeof gen_random_uuid pg_sleep",
}
FUNCTIONS = frozenset(" ".join(_FUNCTION_GROUPS.values()).split())
CATALOG = "pg_catalog"
# Schemas every database has: naming one is an attempt, any other a mistake (NOT_FOUND).
_DATABASE_SCHEMAS = frozenset({"public", "information_schema"})
# Allowed statements kept by their text (read_statement), and the longest text kept.
CACHED_QUERIES = 256
CACHED_QUERY_CHARS = 4096
# DML nodes hold their target table as a bare RangeVar (no node-type key around it).
_TARGET = "relation"


@dataclass(frozen=True)
class Statement:
    """A raw query as PostgreSQL reads it: the text to send ($n parameters), whether it
    writes rows, and the tables it writes."""

    sql: str
    writes: bool = False
    tables: frozenset[str] = frozenset()


@dataclass
class _Reading:
    """What the walk over a parse tree has found so far."""

    writes: bool = False
    tables: set[str] = field(default_factory=set)


def read_statement(query: str) -> Statement:
    """The statement if every part of it is allowed, else InvalidInput naming the part
    (NotFound for a table in a schema the database lacks).

    The verdict depends on the text alone, so a query up to CACHED_QUERY_CHARS long is
    parsed once per process (0.17 ms a parse, as much as SQLite takes for the whole call):
    agents send the same statement with other parameters. Refusals are not kept."""
    if len(query) > CACHED_QUERY_CHARS:
        return _read(query)
    return _read_cached(query)


def _read(query: str) -> Statement:
    from pglast import parser

    sql = _numbered(query, parser)
    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except parser.ParseError as error:
        raise InvalidInput(f"execute_raw_query: {error}.", argument="query") from None
    stmts = tree.get("stmts", [])
    if len(stmts) != 1:
        raise refuse("send exactly one statement per call")
    (kind, body), *_ = stmts[0]["stmt"].items()
    if kind not in STATEMENTS:
        raise refuse(
            f"{_shown(kind)} is not allowed: raw queries take one SELECT, VALUES, TABLE, "
            "WITH, INSERT, UPDATE or DELETE (make tables with create_table)"
        )
    reading = _Reading()
    _check(kind, body, reading)
    return Statement(sql, reading.writes, frozenset(reading.tables))


_read_cached = functools.lru_cache(maxsize=CACHED_QUERIES)(_read)


def refuse(reason: str) -> InvalidInput:
    return InvalidInput(f"forbidden statement: {reason}.", argument="query")


def _numbered(query: str, parser: Any) -> str:
    """The query with each `?` that PostgreSQL's scanner reads as (part of) an operator made
    a numbered parameter `$n`; a `?` in a string, name or comment stays."""
    try:
        tokens = parser.scan(query)
    except parser.ParseError as error:
        raise InvalidInput(f"execute_raw_query: {error}.", argument="query") from None
    out: list[str] = []
    at = 0
    count = 0
    for token in tokens:
        if token.name != "Op" or "?" not in query[token.start : token.end + 1]:
            continue
        for i in range(token.start, token.end + 1):
            if query[i] == "?":
                count += 1
                out.append(f"{query[at:i]} ${count} ")
                at = i + 1
    out.append(query[at:])
    return "".join(out)


def _check(kind: str, body: Any, statement: _Reading) -> None:
    """Walk one node (kind, its fields) and everything under it."""
    if kind not in NODES:
        raise refuse(f"{_shown(kind)} is not allowed in raw queries")
    if kind == "FuncCall":
        _function(body["funcname"])
    elif kind == "A_Expr":
        _operator(body.get("name", []))
    elif kind == "TypeCast" or kind == "TypeName":
        names = (body.get("typeName") or body).get("names", [])
        _qualified(names, "type")
    elif kind == "RangeVar":
        _table(body)
    if kind in WRITES:
        statement.writes = True
        target = body.get(_TARGET) or {}
        _table(target)
        statement.tables.add(str(target.get("relname", "")).lower())
    skip = _TARGET if kind in WRITES else "typeName" if kind == "TypeCast" else ""
    _walk({name: value for name, value in body.items() if name != skip}, statement)


def _walk(value: Any, statement: _Reading) -> None:
    if isinstance(value, list):
        for item in value:
            _walk(item, statement)
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key == "intoClause":  # a bare IntoClause, in any branch of a UNION
                raise refuse("SELECT ... INTO makes a table; make tables with create_table")
            if key[:1].isupper() and isinstance(inner, dict):
                _check(key, inner, statement)
            else:
                _walk(inner, statement)


def _strings(names: list[Any]) -> list[str]:
    return [str(n.get("String", {}).get("sval", "")) for n in names]


def _qualified(names: list[Any], what: str) -> str:
    """The last name, if any schema before it is pg_catalog; else refused."""
    parts = _strings(names)
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != CATALOG):
        raise refuse(f"the {what} {'.'.join(parts)} is not allowed in raw queries")
    return parts[-1] if parts else ""


def _function(names: list[Any]) -> None:
    name = _qualified(names, "function")
    if name not in FUNCTIONS:
        raise refuse(
            f"the function {name}() is not allowed in raw queries (they may call "
            "aggregates and text, number, date, JSON and array functions)"
        )


def _operator(names: list[Any]) -> None:
    _qualified(names, "operator")


def _table(body: dict[str, Any]) -> None:
    schema = body.get("schemaname")
    name = str(body.get("relname", ""))
    if body.get("catalogname") or (schema is not None and schema != SCHEMA):
        shown = ".".join(str(p) for p in (body.get("catalogname"), schema, name) if p)
        if str(schema) in _DATABASE_SCHEMAS or str(schema).startswith("pg_"):
            raise refuse(f"{shown} is not a shared table (raw queries reach only those)")
        text = f'relation "{shown}" does not exist'
        raise NotFound(f"execute_raw_query: {text}. {NOT_REACHABLE}", postgres=text)
    if schema is None and name.startswith("pg_"):
        raise refuse(f"{name} is a PostgreSQL catalog; raw queries reach only shared tables")


# How a refused statement is named to the agent: its SQL words where they differ.
_WORDS = {
    "VariableSetStmt": "SET",
    "VariableShowStmt": "SHOW",
    "TransactionStmt": "BEGIN/COMMIT/SAVEPOINT",
    "CreateFunctionStmt": "CREATE FUNCTION",
    "CreateStmt": "CREATE TABLE",
    "CreateTableAsStmt": "CREATE TABLE AS",
    "DropStmt": "DROP",
    "AlterTableStmt": "ALTER TABLE",
    "IndexStmt": "CREATE INDEX",
}


def _shown(kind: str) -> str:
    """A node type as the agent wrote it: `VariableSetStmt` -> `SET`, `DoStmt` -> `DO`."""
    if kind in _WORDS:
        return _WORDS[kind]
    if kind.endswith("Stmt"):
        return kind[:-4].upper()
    return kind
