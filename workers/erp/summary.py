"""The ERP transfer run summary: records aggregated, delivered, errored, skipped, and the range covered.

Records the target did not take raise ``target_error`` for the job's notifications.

``range_end`` of a completed rolling run is where the job's next rolling range starts.
"""

from __future__ import annotations

from typing import Any

from scheduler.jobkit import ItemOutcome, RunContext, RunItems
from workers.erp.properties import describe_target
from workers.erp.scope import Scope, first_chunk_spec, properties


def summarize(ctx: RunContext) -> dict[str, Any]:
    props, _ = properties(ctx)
    items = RunItems(ctx)
    counts = items.outcome_counts()
    batches = items.chunks_with_items()
    spec = first_chunk_spec(ctx, ctx.run_id)
    scope = Scope.from_spec(spec).spec() if spec is not None else {}
    summary: dict[str, Any] = {
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
    if summary["errored"]:
        summary["notify_events"] = ["target_error"]  # the target refused or lost records: mail who chose it
    return summary
