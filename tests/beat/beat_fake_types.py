"""A do-nothing job type for beat's tests (and for ``python -m beat`` in the process test).

Importable as ``beat_fake_types:FAKE`` with ``tests/beat`` on ``PYTHONPATH``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from scheduler.jobtypes import JobType, RunContext


class NoProperties(BaseModel):
    """The fake type takes no job properties."""


class FakeJobType(JobType):
    name = "beat_fake"
    label = "Beat test type"
    queue = "beat_fake"
    job_properties = NoProperties

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        return []

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        return 0

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        return None

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return {}


def fake_type(queue: str) -> FakeJobType:
    """The fake type on its own queue, so tests sharing a Redis never read each other's messages."""
    queued: type[FakeJobType] = type("QueuedFakeJobType", (FakeJobType,), {"queue": queue})
    return queued()


FAKE = FakeJobType()
