"""The ERP transfer run summary: records aggregated, delivered, errored, skipped, and the range covered.

``range_end`` of a completed rolling run is where the job's next rolling range starts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from scheduler.jobkit import ItemOutcome
from scheduler.jobtypes import RunContext
from workers.erp.properties import describe_target
from workers.erp.scope import Scope, first_chunk_spec, properties


def summarize(ctx: RunContext) -> dict[str, Any]:
    props, _ = properties(ctx)
    with ctx.engine.connect() as conn:
        counts = {
            r.outcome: int(r.n)
            for r in conn.execute(
                text("SELECT outcome, COUNT(*) AS n FROM run_item WHERE run_id = :run_id GROUP BY outcome"),
                {"run_id": ctx.run_id},
            )
        }
        batches = conn.execute(
            text("SELECT COUNT(DISTINCT chunk_no) FROM run_item WHERE run_id = :run_id"), {"run_id": ctx.run_id}
        ).scalar_one()
    spec = first_chunk_spec(ctx, ctx.run_id)
    scope = Scope.from_spec(spec).spec() if spec is not None else {}
    return {
        "dataset": str(props.dataset),
        "target": describe_target(props.target),
        "format": str(props.format),
        **scope,
        "batches": int(batches or 0),
        "aggregated": sum(counts.values()),
        "delivered": counts.get(ItemOutcome.OK, 0),
        "errored": counts.get(ItemOutcome.ERROR, 0),
        "skipped": counts.get(ItemOutcome.SKIPPED, 0),
    }
