"""GL apply: post a chunk's lines into ``gl_entries``, each document once across all runs.

Per chunk, in one transaction: one ``INSERT … SELECT`` posts the lines — the reviewed ones from
``gl_staged`` (checked to still balance; documents voided since the preview are left out), or, for a
run without review, straight from the documents, totalled in the same statement on PostgreSQL. Lines
another run posted first are left out by the unique key (the insert runs again with ``ON CONFLICT DO
NOTHING`` when it meets one). When the insert did not post everything planned, the lines this run owns
in the range are read back. They are checked to balance and recorded on the chunk's items, and the
chunk's staged lines are dropped (the posted ones stay queryable by ``run_id``). Applying a chunk twice
posts nothing more and records the same outcomes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from scheduler.jobkit import ItemOutcome, ItemWriter, RunContext, RunItems, SqlDialect
from workers.gl.evaluate import ChunkLines, chunk_lines
from workers.gl.journal import (
    AccountTotal,
    batch_totals,
    check_balanced,
    document_totals,
    insert_lines,
    large_batch,
)
from workers.gl.sources import (
    LINE_COLUMNS,
    POSTED_KEY,
    Chunk,
    Source,
    direct_posting,
    document_sums,
    line_select,
    posting_with_sums,
    stored_lines,
)

RANGE = "run_id = :run_id AND source_type = :source_type AND source_id BETWEEN :first_id AND :last_id"
IN_CHUNK = "s.run_id = :run_id AND s.source_type = :source_type AND s.source_id BETWEEN :first_id AND :last_id"


def posting_insert(source: Source) -> str:
    """The chunk's staged lines into the ledger; a line some run already posted is left out."""
    recheck = f"JOIN {source.table} src ON src.id = s.source_id AND {source.condition} " if source.recheck else ""
    return (
        f"INSERT INTO gl_entries ({LINE_COLUMNS}, posted_at) "
        f"SELECT {', '.join('s.' + c.strip() for c in LINE_COLUMNS.split(','))}, :now "
        f"FROM gl_staged s {recheck}WHERE {IN_CHUNK} "
        # One order for every run, so two runs posting overlapping ranges wait for each other, never deadlock.
        "ORDER BY s.source_id, s.line_no"
    )


def apply_chunk(ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
    chunk = Chunk.from_spec(spec)
    run_items = RunItems(ctx)
    planned = run_items.planned(chunk_no)
    if not planned:
        return
    now = ctx.clock.now()
    lines = chunk_lines(ctx, chunk)
    params = {**lines.params, "now": now}
    one = lines.one_line_per_account
    with run_items.billing_transaction() as (conn, outcomes):
        large_batch(conn)
        reasons: dict[str, str] = {}
        if chunk.staged:
            staged_sql = stored_lines("gl_staged")
            staged = batch_totals(conn, staged_sql, params, one_line_per_account=one)
            check_balanced(conn, staged_sql, params, staged, chunk=chunk, where=f"chunk {chunk_no} ({chunk.label})")
        inserted = _post(conn, chunk, lines, params)
        posted_sql = stored_lines("gl_entries")
        expected = sum(int(detail.get("lines", 0)) for detail in planned.values())
        if inserted is not None and sum(t.lines for t in inserted.values()) == expected:
            posted = inserted  # all of it, just now: no need to read the lines back
        else:
            # Some lines were left out (posted by another run, or by this one in an earlier attempt):
            # what this run owns in the range is what counts.
            posted = batch_totals(conn, posted_sql, params, one_line_per_account=one)
        check_balanced(conn, posted_sql, params, posted, chunk=chunk, where=f"posted chunk {chunk_no} ({chunk.label})")
        if chunk.staged:
            if any(posted.get(a, _NONE).lines < t.lines for a, t in staged.items()):
                reasons = _skip_reasons(conn, params, chunk.source)
            conn.execute(text(f"DELETE FROM gl_staged WHERE {RANGE}"), params)
        _record_outcomes(outcomes, planned, posted, reasons)


def _post(conn: Connection, chunk: Chunk, lines: ChunkLines, params: dict[str, Any]) -> dict[str, AccountTotal] | None:
    """Post the chunk's lines (a line some run already posted is left out); per GL account what this
    statement posted, or ``None`` when it cannot tell (SQLite: the caller reads the lines back)."""
    one = lines.one_line_per_account
    if chunk.staged:
        return insert_lines(conn, posting_insert(chunk.source), POSTED_KEY, params, totals=True,
                            one_line_per_account=one)
    conflicts = False
    if conn.dialect.name == "postgresql":
        d = SqlDialect.of(conn)
        from_doc, _ = line_select(d, chunk.source, lines.lines, documents="doc")
        sums = document_sums(d, chunk.source, lines.lines, documents="doc")
        try:
            with conn.begin_nested():
                return document_totals(conn, posting_with_sums(d, chunk.source, direct_posting(from_doc), sums),
                                       params, lines.lines)
        except IntegrityError:
            conflicts = True
    return insert_lines(conn, direct_posting(lines.sql), POSTED_KEY, params, totals=True, one_line_per_account=one,
                        conflicts=conflicts)


_NONE = AccountTotal(gl_account="", documents=0, lines=0, debit=Decimal("0.00"), credit=Decimal("0.00"))


def _skip_reasons(conn: Connection, params: dict[str, Any], source: Source) -> dict[str, str]:
    """Per GL account, why some staged lines were not posted by this run."""
    rows = conn.execute(
        text(
            "SELECT s.gl_account, "
            "SUM(CASE WHEN g.run_id IS NOT NULL AND g.run_id <> :run_id THEN 1 ELSE 0 END) AS elsewhere, "
            "SUM(CASE WHEN g.run_id IS NULL THEN 1 ELSE 0 END) AS dropped "
            "FROM gl_staged s LEFT JOIN gl_entries g ON g.source_type = s.source_type "
            f"AND g.source_id = s.source_id AND g.line_no = s.line_no WHERE {IN_CHUNK} GROUP BY s.gl_account"
        ),
        params,
    ).all()
    reasons: dict[str, str] = {}
    for r in rows:
        parts = []
        if r.elsewhere:
            parts.append(f"{r.elsewhere} line(s) already collected by another run")
        if r.dropped:
            parts.append(f"{r.dropped} line(s) of documents no longer collectable ({source.changed})")
        if parts:
            reasons[r.gl_account] = "; ".join(parts)
    return reasons


def _record_outcomes(
    outcomes: ItemWriter, planned: dict[str, dict[str, Any]], posted: dict[str, AccountTotal], reasons: dict[str, str],
) -> None:
    """Each item ``ok`` with what this run posted on its account, or ``skipped`` when it posted nothing."""
    # A handful of items per chunk (one per GL account): plain updates of their JSON detail.
    for key, detail in planned.items():
        account = str(detail["gl_account"])
        mine = posted.get(account, _NONE)
        skipped_lines = max(0, int(detail.get("lines", 0)) - mine.lines)
        new_detail = {
            **detail,
            "posted_documents": mine.documents,
            "posted_lines": mine.lines,
            "posted_debit": str(mine.debit),
            "posted_credit": str(mine.credit),
            "skipped_lines": skipped_lines,
        }
        if skipped_lines:
            new_detail["reason"] = reasons.get(account, "already collected by another run (or no longer collectable)")
        outcome = ItemOutcome.OK if mine.lines else ItemOutcome.SKIPPED
        outcomes.replace(key, outcome=outcome, detail=new_detail)
