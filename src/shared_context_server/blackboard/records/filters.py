"""The filters and assignments of the row tools: `{column: value}` into SQL with bound values.

Kept apart from the tools that run them (rows.py) because this is where input meets SQL:
each name is checked against the table's columns and quoted, each value encoded and bound,
and the bounds that keep a statement cheap (LIKE pattern length, IN list size) live here.
"""

from __future__ import annotations

from typing import Any

from shared_context_server.blackboard.limits import Limits, check_depth
from shared_context_server.blackboard.records.schema import Column, Table, bind, encode, quote
from shared_context_server.errors import BlackboardError, InvalidInput

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "like", "in", "is_null")
# SQLite matches a LIKE pattern in one step, in time that grows with the pattern's length
# times the value's: a long pattern over long values would hold the connection for minutes.
MAX_LIKE_PATTERN = 100
_ORDER = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
MAX_IN_VALUES = 500


def assignments(
    table: Table, data: dict[str, Any], argument: str, limits: Limits
) -> tuple[list[Column], list[Any]]:
    """The columns `data` sets and their bound values. Raises InvalidInput, NotFound."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{argument} must be an object {{column: value}}.", argument=argument)
    check_depth(data, argument)
    columns, values = [], []
    for name, value in data.items():
        column = table.column(name, argument)
        if column in columns:
            raise InvalidInput(f"{argument} sets column {column.name} twice.", argument=argument)
        columns.append(column)
        encoded = encode(column, value, argument, limits.max_content_chars)
        values.append(bind(table.dialect, column, encoded))
    return columns, values


def require_filters(
    filters: dict[str, Any] | None, all_rows: bool, action: str
) -> dict[str, Any] | None:
    """`filters`, or a refusal: a change to every row must be asked for by name."""
    if filters and all_rows:
        raise InvalidInput(
            f"{action}: give filters or all_rows=true, not both.", argument="all_rows"
        )
    if not filters and not all_rows:
        raise InvalidInput(
            f'{action} needs filters (e.g. {{"id": 3}}); to change every row, pass all_rows=true.',
            argument="filters",
        )
    return filters


def where_clause(
    table: Table, filters: dict[str, Any] | None, limits: Limits
) -> tuple[str, list[Any]]:
    """` WHERE ...` from {column: value} or {column: {op: value}}, AND-ed; values bound."""
    if not filters:
        return "", []
    if not isinstance(filters, dict):
        raise InvalidInput("filters must be an object {column: value}.", argument="filters")
    check_depth(filters, "filters")
    clauses: list[str] = []
    params: list[Any] = []
    for name, condition in filters.items():
        column = table.column(name, "filters")
        conditions = condition if isinstance(condition, dict) else {"=": condition}
        if not conditions:
            raise _bad_filter(column, "is an empty object; give {op: value}")
        for op, value in conditions.items():
            clause, values = _condition(table, column, op, value, limits)
            clauses.append(clause)
            params.extend(values)
    return " WHERE " + " AND ".join(clauses), params


def _condition(
    table: Table, column: Column, op: str, value: Any, limits: Limits
) -> tuple[str, list[Any]]:
    name = quote(column.name)
    dialect = table.dialect
    if op == "is_null":
        if not isinstance(value, bool):
            raise _bad_filter(column, "is_null takes true or false")
        return f"{name} IS {'' if value else 'NOT '}NULL", []
    if op == "in":
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN_VALUES:
            raise _bad_filter(column, f"in takes a list of 1-{MAX_IN_VALUES} values")
        encoded = [
            bind(dialect, column, encode(column, v, "filters", limits.max_content_chars))
            for v in value
        ]
        return f"{name} IN ({', '.join(['?'] * len(value))})", encoded
    if op == "like":
        if not isinstance(value, str):
            raise _bad_filter(column, "like takes a text pattern (% any run, _ one character)")
        if len(value) > MAX_LIKE_PATTERN:
            raise _bad_filter(
                column, f"like takes a pattern of at most {MAX_LIKE_PATTERN} characters"
            )
        return f"{name} {dialect.like}", [value]
    if op not in OPERATORS:
        raise _bad_filter(column, f"has unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    if value is None:
        # Null-safe: {"claimed_by": null} finds unclaimed rows.
        if op not in ("=", "!="):
            raise _bad_filter(column, f"{op} cannot compare with null; use is_null")
        return f"{name} IS {'' if op == '=' else 'NOT '}NULL", []
    bound = bind(dialect, column, encode(column, value, "filters", limits.max_content_chars))
    # {"owner": {"!=": "bob"}} includes rows with no owner.
    compare = {"=": "=", "!=": dialect.distinct, **_ORDER}[op]
    return f"{name} {compare} ?", [bound]


def _bad_filter(column: Column, problem: str) -> BlackboardError:
    return InvalidInput(f"filters.{column.name} {problem}.", argument="filters")
