"""The run items of a mediation run: one per file (``file:<name>``) and one per rejected record (``<name>:<line>``).

File items carry the file's counts; record items carry file, line, event id, ``kind`` (FAILED or
FILTERED), ``code`` and a readable ``reason``. Reject items are written set-based: ``INSERT … SELECT``
when the billing tables share the scheduler's database, else batched multi-row inserts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from scheduler.jobkit import UTCDateTime
from scheduler.jobkit.sql import SqlDialect
from scheduler.models import ItemOutcome, RunItem
from workers.mediation.classify import kind_sql
from workers.mediation.tables import RejectKind

FILE_PREFIX = "file:"
BATCH = 5_000
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


def outcome_of(kind: str) -> str:
    """Failed records are errors (the run ends INCOMPLETE); filtered ones are skipped."""
    return Out.ERROR if kind == RejectKind.FAILED else Out.SKIPPED


def _insert(conn: Connection, *, upsert: bool) -> Any:
    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = module.insert(RunItem.__table__)  # type: ignore[attr-defined]
    if not upsert:
        return statement.on_conflict_do_nothing()
    return statement.on_conflict_do_update(
        index_elements=["run_id", "item_key"],
        set_={"outcome": statement.excluded.outcome, "detail": statement.excluded.detail,
              "applied_at": statement.excluded.applied_at, "chunk_no": statement.excluded.chunk_no},
    )


def put_items(conn: Connection, rows: list[dict[str, Any]], *, upsert: bool = False) -> None:
    """Insert (or, with ``upsert``, replace) run items given as dicts of ``run_item`` columns."""
    for start in range(0, len(rows), BATCH):
        conn.execute(_insert(conn, upsert=upsert), rows[start:start + BATCH])


def clear_chunk(conn: Connection, run_id: int, chunk_no: int) -> None:
    conn.execute(text("DELETE FROM run_item WHERE run_id = :run_id AND chunk_no = :chunk_no"),
                 {"run_id": run_id, "chunk_no": chunk_no})


def chunk_count(conn: Connection, run_id: int, chunk_no: int) -> int:
    return int(conn.execute(text("SELECT COUNT(*) FROM run_item WHERE run_id = :run_id AND chunk_no = :chunk_no"),
                            {"run_id": run_id, "chunk_no": chunk_no}).scalar_one())


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
    run_id: int
    chunk_no: int
    name: str
    applied_at: datetime | None
    params: dict[str, Any] = field(default_factory=dict)


def insert_select_rejects(conn: Connection, rejects: Rejects, *, outcome_sql: str) -> None:
    """One ``INSERT … SELECT`` of reject items (same database only); replaces existing ones."""
    d = SqlDialect.of(conn)
    r = rejects
    statement = text(
        "INSERT INTO run_item (run_id, chunk_no, item_key, outcome, detail, applied_at) "
        f"SELECT :run_id, :chunk_no, {d.text_param('prefix')} || CAST({r.source}.line_no AS TEXT), {outcome_sql}, "
        f"{record_detail_sql(d, r.source)}, :applied_at FROM {r.source} WHERE {r.where} "
        "ON CONFLICT (run_id, item_key) DO UPDATE SET outcome = excluded.outcome, detail = excluded.detail, "
        "applied_at = excluded.applied_at"
    ).bindparams(bindparam("applied_at", type_=UTCDateTime()))
    conn.execute(statement, {"run_id": r.run_id, "chunk_no": r.chunk_no, "prefix": record_prefix(r.name),
                             "file": r.name, "applied_at": r.applied_at, **r.params})


def reject_rows(conn: Connection, rejects: Rejects, *, outcome: str | None) -> Iterator[list[dict[str, Any]]]:
    """Reject items read in batches, for a scheduler database of its own (``outcome`` None: by kind)."""
    d = SqlDialect.of(conn)
    r = rejects
    result = conn.execution_options(yield_per=BATCH).execute(
        text(f"SELECT {r.source}.line_no AS line_no, {record_detail_sql(d, r.source)} AS detail, "
             f"{kind_sql(f'{r.source}.reason')} AS kind FROM {r.source} WHERE {r.where}"),
        {"file": r.name, **r.params},
    )
    prefix = record_prefix(r.name)
    for partition in result.partitions():
        yield [
            {"run_id": r.run_id, "chunk_no": r.chunk_no, "item_key": f"{prefix}{row.line_no}",
             "outcome": outcome or outcome_of(row.kind), "applied_at": r.applied_at,
             "detail": json.loads(row.detail) if isinstance(row.detail, str) else row.detail}
            for row in partition
        ]


def update_file_item(conn: Connection, *, run_id: int, name: str, outcome: str, detail: dict[str, Any],
                     applied_at: datetime | None) -> None:
    conn.execute(
        text("UPDATE run_item SET outcome = :outcome, detail = :detail, applied_at = :applied_at "
             "WHERE run_id = :run_id AND item_key = :key").bindparams(
            bindparam("detail", type_=JSON()), bindparam("applied_at", type_=UTCDateTime())),
        {"outcome": outcome, "detail": detail, "applied_at": applied_at, "run_id": run_id, "key": file_key(name)},
    )


def settle_chunk(conn: Connection, *, run_id: int, chunk_no: int, outcome: str, reason: str,
                 applied_at: datetime) -> None:
    """Give every still-planned item of the chunk ``outcome``, with ``reason`` added to its detail."""
    d = SqlDialect.of(conn)
    conn.execute(
        text(f"UPDATE run_item SET outcome = :outcome, applied_at = :applied_at, "
             f"detail = {d.json_merge('detail', [('reason', d.text_param('reason'))])} "
             "WHERE run_id = :run_id AND chunk_no = :chunk_no AND outcome = :planned").bindparams(
            bindparam("applied_at", type_=UTCDateTime())),
        {"outcome": outcome, "applied_at": applied_at, "reason": reason, "run_id": run_id, "chunk_no": chunk_no,
         "planned": Out.PLANNED},
    )
