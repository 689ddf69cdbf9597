"""The smallest useful job type: copy the rows of a source table into a ledger, each row once.

It shows what a new job type writes: its properties, ``plan`` / ``evaluate`` / ``apply`` / ``summarize``
on the core's public API (:mod:`scheduler.jobkit`), and its own tables. The README's "Write a job type"
walks through it; ``test_example_conformance.py`` proves it with the conformance kit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Column, Integer, MetaData, Numeric, Table, select

from scheduler.jobkit import ItemOutcome, JobType, RunContext, RunItems, insert_or_ignore

metadata = MetaData()
source = Table("example_source", metadata, Column("id", Integer, primary_key=True),
               Column("amount", Numeric(18, 2), nullable=False))
ledger = Table("example_ledger", metadata, Column("source_id", Integer, primary_key=True),
               Column("amount", Numeric(18, 2), nullable=False), Column("run_id", Integer, nullable=False))


class CopyProperties(BaseModel):
    """What an example job is configured with."""

    model_config = ConfigDict(extra="forbid")

    minimum: Decimal = Field(default=Decimal("0"), ge=0, max_digits=18, decimal_places=2,
                             description="Rows below this amount are not copied")


class CopyJobType(JobType):
    name: ClassVar[str] = "example_copy"
    label: ClassVar[str] = "Example copy"
    queue: ClassVar[str] = "example"
    job_properties: ClassVar[type[BaseModel]] = CopyProperties

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        """Chunks of ``chunk_size`` source ids."""
        with ctx.billing_engine.connect() as conn:
            ids = list(conn.execute(select(source.c.id).order_by(source.c.id)).scalars())
        size = ctx.settings.chunk_size
        return [{"first_id": ids[i], "last_id": ids[min(i + size, len(ids)) - 1]} for i in range(0, len(ids), size)]

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        """Stage one planned item per row to copy (a retry: only the rows that failed)."""
        assert isinstance(ctx.properties, CopyProperties)
        minimum = ctx.properties.minimum
        items = RunItems(ctx)
        retry = items.retry_keys()
        with items.billing_transaction() as (billing, writer):
            rows = billing.execute(
                select(source.c.id, source.c.amount)
                .where(source.c.id.between(spec["first_id"], spec["last_id"]), source.c.amount >= minimum)
            ).all()
            writer.stage(chunk_no, {
                f"row:{r.id}": {"id": r.id, "amount": str(r.amount)}
                for r in rows if retry is None or f"row:{r.id}" in retry
            })
            return writer.count(chunk_no)

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        """Copy the planned rows; a row already in the ledger is not copied again (insert-or-ignore)."""
        items = RunItems(ctx)
        planned = items.planned(chunk_no)
        with items.billing_transaction() as (billing, writer):
            insert_or_ignore(billing, ledger, [
                {"source_id": detail["id"], "amount": Decimal(detail["amount"]), "run_id": ctx.run_id}
                for detail in planned.values()
            ])
            writer.settle(chunk_no, ItemOutcome.OK)

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return {"rows": RunItems(ctx).outcome_counts()}


JOB_TYPE = CopyJobType()
