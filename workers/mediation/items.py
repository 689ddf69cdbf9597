"""The run items of a mediation run: one per file (``file:<name>``) and one per rejected record (``<name>:<line>``).

File items carry the file's counts; record items carry file, line, event id, ``kind`` (FAILED or
FILTERED), ``code`` and a readable ``reason``. Reject items are written set-based through the core's
item writer: ``INSERT … SELECT`` when the billing tables share the scheduler's database, else batched inserts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from scheduler.jobkit import ItemOutcome, ItemWriter, SqlDialect
from workers.mediation.classify import kind_sql
from workers.mediation.tables import RejectKind

FILE_PREFIX = "file:"
Out = ItemOutcome


def key_name(name: str) -> str:
    """A file name short enough for an item key (long names keep a hash of the whole)."""
    if len(name) <= 150:
        return name
    return f"{name[:130]}~{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def file_key(name: str) -> str:
    return f"{FILE_PREFIX}{key_name(name)}"


def record_prefix(name: str) -> str:
    return f"{key_name(name)}:"


def record_detail_sql(d: SqlDialect, source: str) -> str:
    """The JSON detail of a reject item, from a row of ``source`` (classified records or ``usage_rejects``)."""
    return d.json_object([
        ("item", "'record'"),
        ("file", d.text_param("file")),
        ("line", f"{source}.line_no"),
        ("event_id", f"{source}.event_id"),
        ("account_number", f"{source}.account_number"),
        ("meter", f"{source}.meter"),
        ("kind", kind_sql(f"{source}.reason")),
        ("code", f"{source}.reason"),
        ("reason", f"{source}.message"),
        # A rejected record is bad data: only a corrected file can fix it, a retry cannot.
        ("retryable", d.json_parse("'false'")),
    ])


@dataclass(frozen=True, kw_only=True)
class Rejects:
    """Where a file's rejected records are read from, and the items they become."""

    source: str
    """A table: the file's classified records (at evaluation) or ``usage_rejects`` (once applied)."""
    where: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)


APPLIED_OUTCOME = f"CASE WHEN usage_rejects.kind = '{RejectKind.FAILED}' THEN '{Out.ERROR}' ELSE '{Out.SKIPPED}' END"
"""A reject's outcome once applied: failed records are errors (the run ends INCOMPLETE), filtered ones skipped."""


def stage_rejects(
    items: ItemWriter, source: Connection, chunk_no: int, rejects: Rejects, *, outcome_sql: str | None = None,
) -> None:
    """One item per rejected record, replacing any already there: planned (at evaluation), or with the outcome
    ``outcome_sql`` gives each, stamped applied (once applied). One statement when both share a database."""
    d = SqlDialect.of(source)
    r = rejects
    outcome = f", {outcome_sql} AS outcome" if outcome_sql is not None else ""
    select = text(
        f"SELECT {d.text_param('prefix')} || CAST({r.source}.line_no AS TEXT) AS item_key, "
        f"{record_detail_sql(d, r.source)} AS detail{outcome} FROM {r.source} WHERE {r.where}"
    )
    items.stage_select(chunk_no, select, {"prefix": record_prefix(r.name), "file": r.name, **r.params},
                       source=source, outcome=None if outcome_sql is not None else Out.PLANNED, replace=True,
                       applied=outcome_sql is not None)
