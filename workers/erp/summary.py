"""The ERP transfer run summary: records aggregated, delivered, errored, skipped, and the range covered.

``money``: per currency, the amounts of the records to transfer (a preview) and transferred (``amount``, or
``debit`` and ``credit`` for the GL journal): a preview's totals are what applying sends.

Records the target did not take raise ``target_error`` for the job's notifications.

``range_end`` of a completed rolling run is where the job's next rolling range starts.
"""

from __future__ import annotations

from typing import Any

from scheduler.jobkit import ItemOutcome, RunContext, RunItems
from scheduler.money import MoneyTotals
from workers.erp.datasets import SOURCES
from workers.erp.properties import describe_target
from workers.erp.scope import Scope, first_chunk_spec, properties


def summarize(ctx: RunContext) -> dict[str, Any]:
    props, _ = properties(ctx)
    items = RunItems(ctx)
    counts = items.outcome_counts()
    batches = items.chunks_with_items()
    spec = first_chunk_spec(ctx, ctx.run_id)
    scope = Scope.from_spec(spec).spec() if spec is not None else {}
    source = SOURCES[props.dataset]
    money = MoneyTotals()
    for outcome in (ItemOutcome.PLANNED, ItemOutcome.OK):
        for group, *sums in items.detail_sums(group_by="currency", money=source.money, outcome=outcome):
            for name, total in zip(source.money, sums[1::2], strict=True):
                money.add(group, name, total or 0)
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
        "money": money.as_dict(names=source.money, places=2),
    }
    if summary["errored"]:
        summary["notify_events"] = ["target_error"]  # the target refused or lost records: mail who chose it
    return summary
