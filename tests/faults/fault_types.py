"""Job types of the fault suite, importable as ``fault_types:TICK`` and ``fault_types:SLOW`` with
``tests/faults`` on ``PYTHONPATH`` (the suite's processes get it through ``SCHEDULER_EXTRA_JOB_TYPES``).

- ``TICK``: no chunks; a run goes CREATED → PROCESSING → SUBMITTED → COMPLETED in one worker step.
  It is what beat's fault tests schedule every second.
- ``SLOW``: ``chunks`` chunks whose evaluation takes ``seconds`` (and apply ``apply_seconds``); each
  stages one item, applied once. It keeps a worker busy mid-chunk for the shutdown and runtime tests.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from scheduler.jobkit import ItemOutcome, JobType, RunContext, RunItems


class NoProperties(BaseModel):
    """Nothing to configure."""


class SlowProperties(BaseModel):
    chunks: int = Field(default=4, ge=1, le=1000)
    seconds: float = Field(default=1.0, ge=0, le=600)
    """How long each chunk's evaluation takes."""
    apply_seconds: float = Field(default=0.0, ge=0, le=600)
    """How long each chunk's apply takes (before its one item is applied)."""


class TickJobType(JobType):
    name: ClassVar[str] = "faults_tick"
    label: ClassVar[str] = "Fault suite: tick"
    queue: ClassVar[str] = "faults_tick"
    job_properties: ClassVar[type[BaseModel]] = NoProperties

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        return []

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        return 0

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        return None

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return {}


class SlowJobType(JobType):
    name: ClassVar[str] = "faults_slow"
    label: ClassVar[str] = "Fault suite: slow chunks"
    queue: ClassVar[str] = "faults_slow"
    job_properties: ClassVar[type[BaseModel]] = SlowProperties

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        assert isinstance(ctx.properties, SlowProperties)
        return [{"chunk": k} for k in range(ctx.properties.chunks)]

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        assert isinstance(ctx.properties, SlowProperties)
        time.sleep(ctx.properties.seconds)
        with RunItems(ctx).transaction() as items:
            items.stage(chunk_no, {f"chunk-{chunk_no}": {}})
        return 1

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        assert isinstance(ctx.properties, SlowProperties)
        time.sleep(ctx.properties.apply_seconds)
        with RunItems(ctx).transaction() as items:
            items.settle(chunk_no, ItemOutcome.OK)

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return {}


TICK = TickJobType()
SLOW = SlowJobType()
