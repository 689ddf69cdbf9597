"""The benchmarks' own job type: a run that plans no chunk, so what is measured is the scheduler's own path
(create → Redis → worker → every status write), not a job type's work.

Importable as ``bench_types:NOOP`` with ``tests/bench`` on ``PYTHONPATH`` (worker pools started by a benchmark
get it through ``SCHEDULER_EXTRA_JOB_TYPES``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from scheduler.jobtypes import JobType, RunContext

NOOP_REF = "bench_types:NOOP"


class NoProperties(BaseModel):
    """The no-op type takes no job properties."""


class NoopJobType(JobType):
    name = "bench_noop"
    label = "Benchmark no-op"
    queue = "bench_noop"
    job_properties = NoProperties

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        return []

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        return 0

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        return None

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return {}


NOOP = NoopJobType()
