"""The Dunning job type: escalate overdue accounts up a ladder of tiers, clear paid-up ones.

``JOB_TYPE`` is registered under the ``scheduler.job_types`` entry point as ``dunning``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from scheduler.jobtypes import JobType, RunContext
from workers.dunning import apply, evaluate, summary
from workers.dunning.properties import (
    DunningAction,
    DunningProperties,
    DunningRunProperties,
    DunningStrategy,
    DunningTier,
)


class DunningJobType(JobType):
    """Dunning over the billing ledger, as of a date, in keyset chunks of accounts."""

    name: ClassVar[str] = "dunning"
    label: ClassVar[str] = "Dunning"
    queue: ClassVar[str] = "dunning"
    description: ClassVar[str] = (
        "Escalates accounts by days past due of their oldest open invoice (notices, late fees, "
        "suspension, write-off) and clears paid-up accounts back to tier 0."
    )
    job_properties: ClassVar[type[BaseModel]] = DunningProperties
    run_properties: ClassVar[type[BaseModel]] = DunningRunProperties
    supports_preview: ClassVar[bool] = True

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        return evaluate.plan_chunks(ctx)

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        return evaluate.evaluate_chunk(ctx, chunk_no, spec)

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        apply.apply_chunk(ctx, chunk_no, spec)

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return summary.summarize(ctx)


JOB_TYPE = DunningJobType()

__all__ = [
    "JOB_TYPE",
    "DunningAction",
    "DunningJobType",
    "DunningProperties",
    "DunningRunProperties",
    "DunningStrategy",
    "DunningTier",
]
