"""A job type from a third-party package, on a queue of its own (for the pool coverage test)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from scheduler.jobtypes import JobType, RunContext


class InvoicingProperties(BaseModel):
    """No properties."""


class Invoicing(JobType):
    name = "invoicing"
    label = "Invoicing"
    queue = "invoicing"
    job_properties = InvoicingProperties

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        return []

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        return 0

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        return None

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return {}


INVOICING = Invoicing()
