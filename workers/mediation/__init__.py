"""The Usage Mediation job type: import usage files, normalize, mediate, rate and aggregate per day.

One chunk per input file. ``JOB_TYPE`` is registered under the ``scheduler.job_types`` entry point
as ``usage_mediation`` and runs on its own queue, ``usage_mediation``.

Outcomes a billing user sees: each file is an item (``ok`` with its counts, ``skipped`` when it was
already processed, ``error`` when it cannot be read); each rejected record is an item too — failed
records (bad data) are ``error`` items, so a run with any ends INCOMPLETE and lists them, while
filtered records (duplicates, unknown or inactive accounts) are ``skipped`` items with their reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from scheduler.jobtypes import JobType, RunContext
from workers.mediation import apply, evaluate, summary
from workers.mediation.properties import FileFormat, MediationProperties, MediationRunProperties, Meter
from workers.mediation.records import RejectReason


class UsageMediationJobType(JobType):
    """Usage files in, mediated events and rated daily totals out; each file once, each event once."""

    name: ClassVar[str] = "usage_mediation"
    label: ClassVar[str] = "Usage Mediation"
    queue: ClassVar[str] = "usage_mediation"
    description: ClassVar[str] = (
        "Imports CSV or JSON-lines usage files, validates and deduplicates each record, rates it with its "
        "meter's price and adds it to per-account daily totals; rejected records are kept with their reason."
    )
    job_properties: ClassVar[type[BaseModel]] = MediationProperties
    run_properties: ClassVar[type[BaseModel]] = MediationRunProperties
    supports_preview: ClassVar[bool] = True
    migrations: ClassVar[Path | None] = Path(__file__).parent / "migrations"

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        return evaluate.plan_files(ctx)

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        return evaluate.evaluate_file(ctx, chunk_no, spec)

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        apply.apply_file(ctx, chunk_no, spec)

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return summary.summarize(ctx)


JOB_TYPE = UsageMediationJobType()

__all__ = [
    "JOB_TYPE",
    "FileFormat",
    "MediationProperties",
    "MediationRunProperties",
    "Meter",
    "RejectReason",
    "UsageMediationJobType",
]
