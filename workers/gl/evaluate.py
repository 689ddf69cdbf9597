"""GL planning and evaluation: keyset chunks of uncollected documents, one staging statement per chunk.

``plan`` cuts each configured collector's uncollected documents into id ranges of ``chunk_size`` with
one window query per collector. ``evaluate`` stages a chunk's journal lines into ``gl_staged`` with
one ``INSERT … SELECT``, checks that they balance (an unbalanced chunk fails the run before anything
is applied) and records one ``planned`` run item per GL account with the account's totals.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlmodel import col

from scheduler.jobtypes import RunContext
from scheduler.models import JobRun, RunStatus
from workers.gl.journal import check_balanced, chunk_totals, insert_items, staged_items
from workers.gl.sources import SOURCES, Chunk, cutoff_params, journal_lines, properties, staging_insert, typed
from workers.sql import SqlDialect, same_database

log = logging.getLogger(__name__)

FINISHED = (RunStatus.COMPLETED, RunStatus.INCOMPLETE, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.DELETED)


def plan_chunks(ctx: RunContext) -> list[dict[str, Any]]:
    """Keyset ranges of ``chunk_size`` uncollected documents, collector by collector."""
    props, _ = properties(ctx)
    purge_finished_staging(ctx)
    chunk_size = max(1, ctx.settings.chunk_size)
    specs: list[dict[str, Any]] = []
    with ctx.billing_engine.connect() as conn:
        for collector in props.ordered_collectors:
            source = SOURCES[collector]
            rows = conn.execute(
                typed(
                    "SELECT bucket, MIN(id) AS first_id, MAX(id) AS last_id, COUNT(*) AS documents FROM ("
                    " SELECT src.id, (ROW_NUMBER() OVER (ORDER BY src.id) - 1) / :chunk_size AS bucket "
                    f"{source.uncollected()}"
                    ") numbered GROUP BY bucket ORDER BY bucket"
                ),
                {**cutoff_params(ctx), "chunk_size": chunk_size},
            ).all()
            specs.extend(
                Chunk(collector=collector, first_id=r.first_id, last_id=r.last_id, documents=r.documents).spec()
                for r in rows
            )
    return specs


def evaluate_chunk(ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
    """Stage the chunk's lines and its per-account items; returns how many items the chunk has."""
    props, _ = properties(ctx)
    chunk = Chunk.from_spec(spec)
    lines = journal_lines(chunk.source, props.gl_accounts.posting(chunk.collector))
    d = SqlDialect.of(ctx.billing_engine)
    sql, params = staging_insert(d, chunk.source, lines)
    same_db = same_database(ctx.engine, ctx.billing_engine)
    with ctx.billing_engine.begin() as conn:
        conn.execute(typed(sql), {**params, **chunk.params(ctx.run_id), **cutoff_params(ctx)})
        totals = chunk_totals(conn, "gl_staged", ctx.run_id, chunk)
        # Raising rolls the staging back; the executor fails the run, so nothing is ever applied.
        check_balanced(conn, "gl_staged", ctx.run_id, chunk, totals, where=f"chunk {chunk_no} ({chunk.label})")
        items = staged_items(ctx.run_id, chunk_no, chunk, totals)
        if same_db:
            insert_items(conn, items)
    if not same_db:
        with ctx.engine.begin() as conn:
            insert_items(conn, items)
    return len(items)


def purge_finished_staging(ctx: RunContext) -> int:
    """Drop the staged lines of finished runs (failed, deleted previews…); returns how many runs."""
    with ctx.billing_engine.connect() as conn:
        staged_runs = list(conn.execute(text("SELECT DISTINCT run_id FROM gl_staged")).scalars())
    staged_runs = [r for r in staged_runs if r != ctx.run_id]
    if not staged_runs:
        return 0
    with ctx.engine.connect() as conn:
        finished = list(conn.execute(
            select(JobRun.id).where(col(JobRun.id).in_(staged_runs), col(JobRun.status).in_(FINISHED))
        ).scalars())
    if finished:
        with ctx.billing_engine.begin() as conn:
            conn.execute(
                text("DELETE FROM gl_staged WHERE run_id IN :runs").bindparams(bindparam("runs", expanding=True)),
                {"runs": finished},
            )
        log.info("run %s: purged the staged GL lines of finished runs %s", ctx.run_id, finished)
    return len(finished)
