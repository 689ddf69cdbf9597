"""The ERP transfer job type: deliver invoices, payments or GL journal lines to an ERP, once per target.

``JOB_TYPE`` is registered under the ``scheduler.job_types`` entry point as ``erp_transfer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from scheduler.jobtypes import JobType, RunContext
from workers.erp import apply, stage, summary
from workers.erp.properties import (
    ErpDataset,
    ErpFormat,
    ErpProperties,
    ErpRunProperties,
    FileTarget,
    HttpTarget,
    target_key,
)
from workers.erp.scope import RangeKind
from workers.erp.send import HttpSender


class ErpTransferJobType(JobType):
    """Batches of not-yet-delivered records in a date range, one chunk per batch, to an HTTP or file target."""

    name: ClassVar[str] = "erp_transfer"
    label: ClassVar[str] = "ERP transfer"
    queue: ClassVar[str] = "erp_transfer"
    description: ClassVar[str] = (
        "Sends invoices, payments or GL journal lines to an outside ERP system (HTTP or files), in batches, "
        "each record exactly once per target."
    )
    job_properties: ClassVar[type[BaseModel]] = ErpProperties
    run_properties: ClassVar[type[BaseModel]] = ErpRunProperties
    supports_preview: ClassVar[bool] = True
    migrations: ClassVar[Path | None] = Path(__file__).parent / "migrations"

    def __init__(self, sender: HttpSender | None = None) -> None:
        self.sender = sender or HttpSender()

    def holds_for_review(self, properties: BaseModel) -> bool:
        """A job that does not auto-send stops every run at PREVIEW until someone submits it."""
        return isinstance(properties, ErpProperties) and not properties.auto_send

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        return stage.plan_chunks(ctx)

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        return stage.evaluate_chunk(ctx, chunk_no, spec)

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        apply.apply_chunk(ctx, chunk_no, spec, self.sender)

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return summary.summarize(ctx)


JOB_TYPE = ErpTransferJobType()

__all__ = [
    "JOB_TYPE",
    "ErpDataset",
    "ErpFormat",
    "ErpProperties",
    "ErpRunProperties",
    "ErpTransferJobType",
    "FileTarget",
    "HttpTarget",
    "RangeKind",
    "target_key",
]
