"""Plan (one chunk per input file) and evaluate (import, normalize, mediate, rate; stage, apply nothing).

Evaluate streams the file into its staging table, classifies every record set-based, and stages the
file's item (counts, per-meter totals) plus one item per rejected record, all ``planned``. A file
already processed (same checksum) is ``skipped``; a file that cannot be read as a whole is an
``error`` item, and the other files of the run go on.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text

from scheduler.jobkit import ItemOutcome, RunContext, RunItems, explain
from workers.mediation import classify, items, staging
from workers.mediation.files import list_files, resolve_dirs, source_file
from workers.mediation.properties import MediationProperties, MediationRunProperties
from workers.mediation.reader import ReadStats, file_checksum, read_records
from workers.mediation.records import Normalizer, SourceError

log = logging.getLogger(__name__)

Out = ItemOutcome


def properties(ctx: RunContext) -> tuple[MediationProperties, MediationRunProperties]:
    assert isinstance(ctx.properties, MediationProperties)
    assert isinstance(ctx.run_properties, MediationRunProperties)
    return ctx.properties, ctx.run_properties


def plan_files(ctx: RunContext) -> list[dict[str, Any]]:
    """One chunk per matching file in the source directory (a retry: only the files that errored)."""
    props, run_props = properties(ctx)
    staging.sweep(ctx)
    names = list_files(resolve_dirs(ctx.settings, props), props.pattern)
    if run_props.files is not None:
        wanted = set(run_props.files)
        names = [n for n in names if n in wanted]
    retry_keys = RunItems(ctx).retry_keys()
    if retry_keys is not None:
        # Failed records are bad data: only a corrected file (a new checksum) can fix them.
        errored = {k for k in retry_keys if k.startswith(items.FILE_PREFIX)}
        names = [n for n in names if items.file_key(n) in errored]
    if len(names) > props.max_files:
        log.info("run %s: %d files match; taking the first %d", ctx.run_id, len(names), props.max_files)
    return [{"file": name} for name in names[: props.max_files]]


def processed_by(ctx: RunContext, checksum: str) -> tuple[int, str] | None:
    """``(run_id, name)`` of the run that applied a file with this checksum, if any."""
    with ctx.billing_engine.connect() as conn:
        row = conn.execute(text("SELECT run_id, name FROM usage_files WHERE checksum = :checksum"),
                           {"checksum": checksum}).first()
    return (int(row.run_id), str(row.name)) if row is not None else None


def evaluate_file(ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
    """Stage one file's effects; returns how many items the chunk staged."""
    props, _ = properties(ctx)
    name = str(spec["file"])
    raw, stage = staging.raw_name(ctx.run_id, chunk_no), staging.table_name(ctx.run_id, chunk_no)
    base: dict[str, Any] = {"item": "file", "file": name, "format": str(props.format)}
    with RunItems(ctx).transaction() as writer:
        writer.clear(chunk_no)  # a re-delivered evaluation starts over
    try:
        dirs = resolve_dirs(ctx.settings, props)
        base["path"] = dirs.relative(dirs.source / name)
        path = source_file(dirs, name)
        if path is None:
            return _file_item(ctx, chunk_no, name, Out.SKIPPED, {**base, "reason": "no longer in the source directory"})
        checksum = file_checksum(path)
        earlier = processed_by(ctx, checksum)
        if earlier is not None:
            reason = f"already processed by run {earlier[0]} (as {earlier[1]})"
            return _file_item(ctx, chunk_no, name, Out.SKIPPED, {**base, "checksum": checksum, "reason": reason})
        stats = _stage(ctx, props, raw, path)
        if stats.checksum != checksum:
            raise SourceError("the file changed while it was read; the next run reads it again")
    except (SourceError, OSError) as exc:
        staging.drop(ctx.billing_engine, raw, stage)
        message = str(exc) if isinstance(exc, SourceError) else f"cannot read the file: {explain(exc)}"
        log.warning("run %s: file %s: %s", ctx.run_id, name, message)
        return _file_item(ctx, chunk_no, name, Out.ERROR, {**base, "error": message})
    detail = {**base, "checksum": stats.checksum, "size_bytes": stats.size_bytes, "lines": stats.lines}
    return _classify_and_stage(ctx, props, chunk_no, name, (raw, stage), detail)


def _stage(ctx: RunContext, props: MediationProperties, raw: str, path: Any) -> ReadStats:
    """Import and normalize: stream the file into its staging table (``COPY`` on PostgreSQL)."""
    stats = ReadStats()
    exact = ctx.billing_engine.dialect.name != "postgresql"
    normalizer = Normalizer(props.prices, exact=exact)
    with path.open("rb") as handle:
        staging.load(ctx.billing_engine, raw, lambda write, write_text: read_records(
            handle, props.format, normalizer, stats, write, write_text))
    return stats


def _classify_and_stage(
    ctx: RunContext, props: MediationProperties, chunk_no: int, name: str, tables: tuple[str, str],
    detail: dict[str, Any],
) -> int:
    """Mediate and rate against current data; stage the file item and one item per reject."""
    raw, stage = tables
    units = {m.meter: m.unit for m in props.meters}
    rejects = items.Rejects(source=stage, where=f"{stage}.reason IS NOT NULL", name=name)
    with RunItems(ctx).billing_transaction() as (billing, writer):
        classify.classify(billing, raw, stage, props.prices)
        billing.exec_driver_sql(f"DROP TABLE {raw}")
        counted = classify.totals(billing, stage, units)
        items.stage_rejects(writer, billing, chunk_no, rejects)
        writer.stage(chunk_no, {items.file_key(name): {**detail, **counted.as_detail()}})
        return writer.count(chunk_no)


def _file_item(ctx: RunContext, chunk_no: int, name: str, outcome: str, detail: dict[str, Any]) -> int:
    """Stage a file's only item (skipped or error); returns the chunk's item count."""
    with RunItems(ctx).transaction() as writer:
        writer.put(chunk_no, [(items.file_key(name), outcome, detail)], replace=True, applied=outcome == Out.SKIPPED)
        return writer.count(chunk_no)
