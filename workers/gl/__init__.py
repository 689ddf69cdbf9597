"""The GL collector job type: collect billing documents into a balanced double-entry journal, once each.

``JOB_TYPE`` is registered under the ``scheduler.job_types`` entry point as ``gl_collector``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from scheduler.jobtypes import JobType, RunContext
from workers.gl import apply, evaluate, summary
from workers.gl.properties import (
    GLAccountMapping,
    GLCollector,
    GLPosting,
    GLProperties,
    GLRunProperties,
    JournalUnbalanced,
)


class GLCollectorJobType(JobType):
    """General-ledger collection of invoices, payments, late fees and write-offs, in keyset chunks."""

    name: ClassVar[str] = "gl_collector"
    label: ClassVar[str] = "General Ledger collector"
    queue: ClassVar[str] = "gl_collector"
    description: ClassVar[str] = (
        "Collects every billing document not yet collected up to the run's as-of time into balanced "
        "double-entry GL lines (each document exactly once); an unbalanced batch fails the run."
    )
    job_properties: ClassVar[type[BaseModel]] = GLProperties
    run_properties: ClassVar[type[BaseModel]] = GLRunProperties
    supports_preview: ClassVar[bool] = True
    migrations: ClassVar[Path | None] = Path(__file__).parent / "migrations"

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        return evaluate.plan_chunks(ctx)

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        return evaluate.evaluate_chunk(ctx, chunk_no, spec)

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        apply.apply_chunk(ctx, chunk_no, spec)

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return summary.summarize(ctx)


JOB_TYPE = GLCollectorJobType()

__all__ = [
    "JOB_TYPE",
    "GLAccountMapping",
    "GLCollector",
    "GLCollectorJobType",
    "GLPosting",
    "GLProperties",
    "GLRunProperties",
    "JournalUnbalanced",
]
