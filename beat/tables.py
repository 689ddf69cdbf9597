"""The core tables as typed SQLAlchemy ``Table`` objects, for beat's Core-level statements."""

from __future__ import annotations

from sqlalchemy import Table

from scheduler.models import BeatLease, Job, JobRun, RunChunk, RunEvent

JOBS: Table = Job.__table__  # type: ignore[attr-defined]
RUNS: Table = JobRun.__table__  # type: ignore[attr-defined]
RUN_EVENTS: Table = RunEvent.__table__  # type: ignore[attr-defined]
RUN_CHUNKS: Table = RunChunk.__table__  # type: ignore[attr-defined]
LEASES: Table = BeatLease.__table__  # type: ignore[attr-defined]
