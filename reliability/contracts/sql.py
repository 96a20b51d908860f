"""SQL for the bounded samples of failing rows, mirroring Soda's missing/invalid/duplicate rules.

Soda Core without Soda Cloud reports counts, not rows, so the platform fetches at most `limit` failing
rows itself, only for checks that failed. Identifiers are always quoted and contract values are
always bound parameters; only a contract's own `filter` SQL is inlined, as Soda does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SAMPLE_LIMIT = 20


@dataclass(frozen=True)
class Query:
    sql: str
    params: tuple[Any, ...] = ()


def quote_ident(name: str) -> str:
    """A DuckDB identifier, safe whatever characters `name` holds."""
    return '"' + name.replace('"', '""') + '"'


def table_ref(prefixes: Sequence[str], table: str) -> str:
    return ".".join(quote_ident(p) for p in [*prefixes, table])


def _in_list(column: str, values: Sequence[Any]) -> Query:
    marks = ", ".join("?" for _ in values)
    return Query(f"{column} IN ({marks})", tuple(values))


def _or(parts: Sequence[Query]) -> Query | None:
    if not parts:
        return None
    return Query("(" + " OR ".join(f"({p.sql})" for p in parts) + ")", tuple(v for p in parts for v in p.params))


def missing_predicate(column: str, rules: Mapping[str, Any]) -> Query:
    """Rows Soda counts as missing: NULL, a listed missing value, or matching missing_format."""
    col = quote_ident(column)
    parts = [Query(f"{col} IS NULL")]
    values = [v for v in rules.get("missing_values") or [] if v is not None]
    if values:
        parts.append(_in_list(col, values))
    if rules.get("missing_format"):
        parts.append(Query(f"regexp_matches({col}, ?)", (rules["missing_format"]["regex"],)))
    result = _or(parts)
    assert result is not None
    return result


def invalid_predicate(column: str, rules: Mapping[str, Any]) -> Query | None:
    """Rows Soda counts as invalid (before excluding missing ones); None when no rule is set."""
    col = quote_ident(column)
    parts: list[Query] = []
    if "valid_values" in rules:
        values = [v for v in rules["valid_values"] if v is not None]
        if values:
            inside = _in_list(col, values)
            parts.append(Query(f"NOT ({inside.sql})", inside.params))
        else:
            parts.append(Query("1 = 1"))
    if "invalid_values" in rules:
        values = [v for v in rules["invalid_values"] if v is not None]
        parts.append(_in_list(col, values) if values else Query("1 = 0"))
    if "valid_format" in rules:
        parts.append(Query(f"NOT regexp_matches({col}, ?)", (rules["valid_format"]["regex"],)))
    if "valid_min" in rules:
        parts.append(Query(f"{col} < ?", (rules["valid_min"],)))
    if "valid_max" in rules:
        parts.append(Query(f"{col} > ?", (rules["valid_max"],)))
    if "invalid_format" in rules:
        parts.append(Query(f"regexp_matches({col}, ?)", (rules["invalid_format"]["regex"],)))
    if "valid_length" in rules:
        parts.append(Query(f"length({col}) <> ?", (int(rules["valid_length"]),)))
    if "valid_min_length" in rules:
        parts.append(Query(f"length({col}) < ?", (int(rules["valid_min_length"]),)))
    if "valid_max_length" in rules:
        parts.append(Query(f"length({col}) > ?", (int(rules["valid_max_length"]),)))
    if "valid_reference_data" in rules:  # parsed by spec: prefixes, table, column
        ref = rules["valid_reference_data"]
        ref_col = quote_ident(ref["column"])
        ref_table = table_ref(ref["prefixes"], ref["table"])
        parts.append(Query(f"{col} NOT IN (SELECT {ref_col} FROM {ref_table} WHERE {ref_col} IS NOT NULL)"))
    return _or(parts)


def _where(conditions: Sequence[Query | str | None]) -> Query:
    parts = [Query(c) if isinstance(c, str) else c for c in conditions if c]
    if not parts:
        return Query("")
    return Query(" WHERE " + " AND ".join(f"({p.sql})" for p in parts), tuple(v for p in parts for v in p.params))


def _select(prefixes: Sequence[str], table: str, where: Query, limit: int) -> Query:
    return Query(f"SELECT * FROM {table_ref(prefixes, table)}{where.sql} LIMIT {int(limit)}", where.params)


def missing_sample(
    prefixes: Sequence[str],
    table: str,
    column: str,
    rules: Mapping[str, Any],
    filters: Sequence[str | None] = (),
    limit: int = SAMPLE_LIMIT,
) -> Query:
    return _select(prefixes, table, _where([*filters, missing_predicate(column, rules)]), limit)


def invalid_sample(
    prefixes: Sequence[str],
    table: str,
    column: str,
    rules: Mapping[str, Any],
    filters: Sequence[str | None] = (),
    limit: int = SAMPLE_LIMIT,
) -> Query | None:
    invalid = invalid_predicate(column, rules)
    if invalid is None:
        return None
    missing = missing_predicate(column, rules)
    not_missing = Query(f"NOT ({missing.sql})", missing.params)
    return _select(prefixes, table, _where([*filters, not_missing, invalid]), limit)


def duplicate_sample(
    prefixes: Sequence[str],
    table: str,
    columns: Sequence[str],
    rules: Mapping[str, Any] | None,
    filters: Sequence[str | None] = (),
    limit: int = SAMPLE_LIMIT,
) -> Query:
    """The most repeated values (non-missing, as Soda counts them) with how often each occurs."""
    cols = ", ".join(quote_ident(c) for c in columns)
    conditions: list[Query | str | None] = list(filters)
    if rules is not None:  # a column duplicate check ignores missing values; a dataset one does not
        missing = missing_predicate(columns[0], rules)
        conditions.append(Query(f"NOT ({missing.sql})", missing.params))
    where = _where(conditions)
    sql = (
        f"SELECT {cols}, COUNT(*) AS duplicate_rows FROM {table_ref(prefixes, table)}{where.sql} "
        f"GROUP BY {cols} HAVING COUNT(*) > 1 ORDER BY duplicate_rows DESC, {cols} LIMIT {int(limit)}"
    )
    return Query(sql, where.params)


def max_value(prefixes: Sequence[str], table: str, column: str, filters: Sequence[str | None] = ()) -> Query:
    where = _where(list(filters))
    return Query(f"SELECT MAX({quote_ident(column)}) FROM {table_ref(prefixes, table)}{where.sql}", where.params)


def columns_query(prefixes: Sequence[str], table: str) -> Query:
    """Columns and types of a table, from DuckDB's information schema (schema `main` by default)."""
    if prefixes:
        return Query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            (prefixes[-1], table),
        )
    return Query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
        (table,),
    )
