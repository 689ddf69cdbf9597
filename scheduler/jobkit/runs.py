"""What a job type may read of runs besides its items: chunk specs, which runs have ended, past summaries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, text

from scheduler.jobkit.items import detail_of
from scheduler.jobkit.sql import SqlDialect, batched
from scheduler.jobtypes import RunContext
from scheduler.lifecycle import TERMINAL
from scheduler.models import RunStatus


def chunk_specs(ctx: RunContext, *, run_id: int | None = None) -> list[dict[str, Any]]:
    """The chunk specs ``plan`` gave this run (or run ``run_id``), in chunk order."""
    with ctx._core_engine.connect() as conn:
        specs = conn.execute(
            text("SELECT spec FROM run_chunk WHERE run_id = :run_id ORDER BY chunk_no"),
            {"run_id": run_id or ctx.run_id},
        ).scalars()
        return [detail_of(spec) for spec in specs]


def chunk_spec(ctx: RunContext, chunk_no: int, *, run_id: int | None = None) -> dict[str, Any] | None:
    """The spec of one chunk of this run (or of run ``run_id``), ``None`` if it has no such chunk."""
    with ctx._core_engine.connect() as conn:
        spec = conn.execute(
            text("SELECT spec FROM run_chunk WHERE run_id = :run_id AND chunk_no = :chunk_no"),
            {"run_id": run_id or ctx.run_id, "chunk_no": chunk_no},
        ).scalar()
    return detail_of(spec) if spec is not None else None


def ended_runs(ctx: RunContext, run_ids: Iterable[int]) -> set[int]:
    """Those of ``run_ids`` that have ended or no longer exist (their leftovers may be dropped)."""
    wanted = sorted(set(run_ids))
    live: set[int] = set()
    statement = text("SELECT id FROM job_run WHERE id IN :ids AND status NOT IN :ended").bindparams(
        bindparam("ids", expanding=True), bindparam("ended", expanding=True))
    with ctx._core_engine.connect() as conn:
        for part in batched(wanted):
            live.update(conn.execute(statement, {"ids": list(part), "ended": sorted(TERMINAL)}).scalars())
    return set(wanted) - live


def latest_summary_value(ctx: RunContext, key: str, *, where: dict[str, str]) -> str | None:
    """The greatest ``summary[key]`` among the job's other completed runs whose summary matches ``where``."""
    d = SqlDialect.of(ctx._core_engine)
    conditions = "".join(f" AND {d.json_text('summary', name)} = :where_{n}" for n, name in enumerate(where))
    params = {f"where_{n}": value for n, value in enumerate(where.values())}
    with ctx._core_engine.connect() as conn:
        value = conn.execute(
            text(f"SELECT MAX({d.json_text('summary', key)}) FROM job_run WHERE job_id = :job_id "
                 f"AND status = :completed AND id <> :run_id{conditions}"),
            {"job_id": ctx.job_id, "completed": RunStatus.COMPLETED, "run_id": ctx.run_id, **params},
        ).scalar()
    return str(value) if value is not None else None
