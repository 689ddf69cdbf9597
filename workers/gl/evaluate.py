"""GL planning and evaluation: keyset chunks of uncollected documents, one set-based statement per chunk.

``plan`` cuts each configured collector's uncollected documents into id ranges of ``chunk_size`` with
one window query per collector. ``evaluate`` works out a chunk's journal lines, checks that they
balance (an unbalanced chunk fails the run before anything is applied) and records one ``planned``
run item per GL account with the account's totals.

A run that stops for review (a preview, or a job that requires review) *stages* its lines in
``gl_staged`` with one ``INSERT … SELECT``: the reviewer sees exactly the journal that submit posts.
A run that needs no review only totals the lines (one aggregate ``SELECT``) and apply posts them
straight from the documents, so a large unattended run writes each line once, not three times
(staged, posted, unstaged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text

from scheduler.jobkit import RunContext, RunItems, SqlDialect, ended_runs
from workers.gl.journal import (
    batch_totals,
    check_balanced,
    document_totals,
    insert_lines,
    large_batch,
    staged_items,
)
from workers.gl.sources import (
    SOURCES,
    STAGED_KEY,
    Chunk,
    JournalLine,
    cutoff_params,
    document_sums,
    journal_lines,
    line_select,
    properties,
    staging_insert,
    stored_lines,
    typed,
)

log = logging.getLogger(__name__)


def plan_chunks(ctx: RunContext) -> list[dict[str, Any]]:
    """Keyset ranges of ``chunk_size`` uncollected documents, collector by collector."""
    props, _ = properties(ctx)
    purge_finished_staging(ctx)
    staged = needs_review(ctx)
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
                Chunk(collector=collector, first_id=r.first_id, last_id=r.last_id, documents=r.documents,
                      staged=staged).spec()
                for r in rows
            )
    return specs


def needs_review(ctx: RunContext) -> bool:
    """Whether the run stops at PREVIEW (a preview run, or its job requires review)."""
    return bool(ctx.extra.get("preview")) or ctx.requires_review


@dataclass(frozen=True, kw_only=True)
class ChunkLines:
    """The ``SELECT`` of a chunk's journal lines from its documents, with every parameter it needs."""

    sql: str
    sums_sql: str
    """One pass over the documents summing each line (cheaper than totalling the lines themselves)."""
    params: dict[str, Any]
    lines: list[JournalLine]

    @property
    def one_line_per_account(self) -> bool:
        return len({line.gl_account for line in self.lines}) == len(self.lines)


def chunk_lines(ctx: RunContext, chunk: Chunk) -> ChunkLines:
    props, _ = properties(ctx)
    lines = journal_lines(chunk.source, props.gl_accounts.posting(chunk.collector))
    d = SqlDialect.of(ctx.billing_engine)
    sql, params = line_select(d, chunk.source, lines)
    return ChunkLines(sql=sql, sums_sql=document_sums(d, chunk.source, lines), lines=lines,
                      params={**params, **chunk.params(ctx.run_id), **cutoff_params(ctx)})


def evaluate_chunk(ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
    """Work out (and, for review, stage) the chunk's lines and per-account items; returns the chunk's items."""
    chunk = Chunk.from_spec(spec)
    lines = chunk_lines(ctx, chunk)
    params = lines.params
    with RunItems(ctx).billing_transaction() as (conn, items):
        large_batch(conn)
        if chunk.staged:
            insert_lines(conn, staging_insert(lines.sql), STAGED_KEY, params)
            lines_sql = stored_lines("gl_staged")
            totals = batch_totals(conn, lines_sql, params, one_line_per_account=lines.one_line_per_account)
        else:
            lines_sql = lines.sql
            totals = document_totals(conn, lines.sums_sql, params, lines.lines)
        # Raising rolls the staging back; the executor fails the run, so nothing is ever applied.
        check_balanced(conn, lines_sql, params, totals, chunk=chunk, where=f"chunk {chunk_no} ({chunk.label})")
        items.stage(chunk_no, staged_items(chunk, totals))
        return items.count(chunk_no)


def purge_finished_staging(ctx: RunContext) -> int:
    """Drop the staged lines of finished runs (failed, deleted previews…); returns how many runs."""
    with ctx.billing_engine.connect() as conn:
        staged_runs = list(conn.execute(text("SELECT DISTINCT run_id FROM gl_staged")).scalars())
    staged_runs = [r for r in staged_runs if r != ctx.run_id]
    if not staged_runs:
        return 0
    finished = sorted(ended_runs(ctx, staged_runs))
    if finished:
        with ctx.billing_engine.begin() as conn:
            conn.execute(
                text("DELETE FROM gl_staged WHERE run_id IN :runs").bindparams(bindparam("runs", expanding=True)),
                {"runs": finished},
            )
        log.info("run %s: purged the staged GL lines of finished runs %s", ctx.run_id, finished)
    return len(finished)
