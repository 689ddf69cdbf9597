"""SQL helpers for set-based statements on PostgreSQL and SQLite: dialect spellings and insert-or-ignore.

Job types write their heavy statements as SQL text (one statement per chunk, not one per row);
the few places where the two databases spell things differently go through :class:`SqlDialect`.
Rows that may already exist (a step delivered again) go in with :func:`insert_or_ignore`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from scheduler.db import UTCDateTime

T = TypeVar("T")

__all__ = [
    "IN_LIST_BATCH", "SqlDialect", "UTCDateTime", "batched", "insert_or_ignore", "insert_or_ignore_select",
    "insert_or_ignore_statement", "same_database",
]

# Keep expanding IN lists well under SQLite's 32,766 bound parameters.
IN_LIST_BATCH = 5_000


@dataclass(frozen=True)
class SqlDialect:
    """SQL spellings for one database: ``postgresql`` or ``sqlite``."""

    name: str

    @classmethod
    def of(cls, bind: Engine | Connection) -> SqlDialect:
        return cls(bind.dialect.name)

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgresql"

    def param(self, name: str, sql_type: str) -> str:
        """A bound parameter with an explicit type where PostgreSQL cannot infer it."""
        return f"CAST(:{name} AS {sql_type})" if self.is_postgres else f":{name}"

    def text_param(self, name: str) -> str:
        return self.param(name, "text")

    def date_param(self, name: str) -> str:
        return self.param(name, "date")

    def days_between(self, later: str, earlier: str) -> str:
        """Whole days from date ``earlier`` to date ``later``."""
        if self.is_postgres:
            return f"({later} - {earlier})"
        return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"

    def add_days(self, date_expr: str, days_expr: str) -> str:
        if self.is_postgres:
            return f"({date_expr} + CAST({days_expr} AS integer))"
        return f"date({date_expr}, printf('%+d days', {days_expr}))"

    def money_sum(self, expr: str) -> str:
        """A sum of money; SQLite stores ``Numeric`` as binary floats, so round back to cents."""
        return f"SUM({expr})" if self.is_postgres else f"ROUND(SUM({expr}), 2)"

    def money_text(self, expr: str) -> str:
        """Money as a string with two decimals (``'12.50'``)."""
        if self.is_postgres:
            return f"CAST(CAST({expr} AS numeric(18, 2)) AS text)"
        return f"printf('%.2f', {expr})"

    def json_object(self, pairs: Sequence[tuple[str, str]]) -> str:
        """A JSON object from ``(key, sql expression)`` pairs."""
        body = ", ".join(f"'{key}', {expr}" for key, expr in pairs)
        return f"json_build_object({body})" if self.is_postgres else f"json_object({body})"

    def json_parse(self, expr: str) -> str:
        """A text expression holding JSON, embedded as JSON (not as a string) in a JSON object."""
        return f"CAST({expr} AS json)" if self.is_postgres else f"json({expr})"

    def json_merge(self, column: str, pairs: Sequence[tuple[str, str]]) -> str:
        """``column`` (a JSON object) with the given keys set."""
        if self.is_postgres:
            body = ", ".join(f"'{key}', {expr}" for key, expr in pairs)
            return f"CAST(CAST({column} AS jsonb) || jsonb_build_object({body}) AS json)"
        body = ", ".join(f"'$.{key}', {expr}" for key, expr in pairs)
        return f"json_set({column}, {body})"

    def json_int(self, column: str, key: str) -> str:
        """An integer field of a JSON object column."""
        if self.is_postgres:
            return f"CAST({column} ->> '{key}' AS integer)"
        return f"CAST(json_extract({column}, '$.{key}') AS INTEGER)"

    def json_text(self, column: str, key: str) -> str:
        """A text field of a JSON object column."""
        if self.is_postgres:
            return f"({column} ->> '{key}')"
        return f"json_extract({column}, '$.{key}')"

    def json_money_sum(self, column: str, key: str) -> str:
        """The sum of a JSON object column's money field (a decimal string), ``NULL`` fields left out."""
        return self.decimal_text_sum(self.json_text(column, key))

    def decimal_text_sum(self, expr: str) -> str:
        """The sum of money held as decimal strings, ``NULL`` ones left out."""
        return self.money_sum(f"CAST({expr} AS numeric)" if self.is_postgres else f"CAST({expr} AS REAL)")

    def series(self, alias: str, count_param: str) -> str:
        """A ``FROM`` item yielding integers ``1..:count_param`` in column ``{alias}.i``."""
        if self.is_postgres:
            return f"generate_series(1, CAST(:{count_param} AS integer)) AS {alias}(i)"
        return (
            f"(WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :{count_param}) "
            f"SELECT i FROM seq) AS {alias}"
        )

    def zero_pad(self, expr: str, width: int) -> str:
        if self.is_postgres:
            return f"lpad(CAST({expr} AS text), {width}, '0')"
        return f"printf('%0{width}d', {expr})"


def batched(values: Sequence[T], size: int = IN_LIST_BATCH) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most ``size`` (for expanding ``IN`` lists)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def same_database(a: Engine, b: Engine) -> bool:
    """True when two engines point at the same database (so one statement may join both)."""
    return a is b or a.url.render_as_string(hide_password=False) == b.url.render_as_string(hide_password=False)


def insert_or_ignore_statement(bind: Connection | Session, table: Table, *, keys: Sequence[str] | None = None) -> Any:
    """``INSERT … ON CONFLICT [(keys)] DO NOTHING`` into ``table`` for the connection's database."""
    dialect = bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing(index_elements=list(keys) if keys else None)


def insert_or_ignore(
    bind: Connection | Session, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str] | None = None,
) -> None:
    """Insert ``rows``, leaving out those that clash with a row already there; one statement per batch.

    ``keys`` names the unique columns that decide (default: any unique constraint).
    """
    if not rows:
        return
    statement = insert_or_ignore_statement(bind, table, keys=keys)
    for part in batched(rows):
        bind.execute(statement, list(part))


def insert_or_ignore_select(
    conn: Connection, table: Table, columns: Sequence[str], select: TextClause, params: dict[str, Any], *,
    keys: Sequence[str],
) -> None:
    """``INSERT INTO table (columns) <select> ON CONFLICT (keys) DO NOTHING``: one set-based statement.

    ``select`` must end in a ``WHERE`` clause (SQLite would read the ``ON`` of ``ON CONFLICT`` as a join's).
    """
    picked = select.columns(*(column(name) for name in columns))
    conn.execute(insert_or_ignore_statement(conn, table, keys=keys).from_select(list(columns), picked), params)
