"""A worker frozen (or slow) inside a transaction on a run must not stall beat: beat's repairs skip the
runs another transaction holds and come back to them on a later tick (PostgreSQL, ``SKIP LOCKED``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, update

from beat.service import Beat, TickResult
from scheduler.clock import FrozenClock
from scheduler.models import Job, JobRun, OverlapPolicy, RunStatus

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def test_runs_held_by_a_worker_transaction_are_skipped_not_waited_for(
    beat: Beat, engine: Engine, add_job: Callable[..., Job], add_run: Callable[..., JobRun], clock: FrozenClock,
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: a worker's open transaction blocks every writer")
    # Given two stale runs and one over its max_runtime, two of them held by a worker's open transaction
    job = add_job(next_fire_at=NOON + timedelta(hours=1), max_runtime=60, overlap_policy=OverlapPolicy.ALLOW)
    held = add_run(job, status=RunStatus.PROCESSING, started_at=clock.now() - 10 * SECOND,
                   heartbeat_at=clock.now() - 31 * SECOND, chunks=[(False, False)])
    free = add_run(job, status=RunStatus.PROCESSING, started_at=clock.now() - 10 * SECOND,
                   heartbeat_at=clock.now() - 31 * SECOND, chunks=[(False, False)])
    overrun = add_run(job, status=RunStatus.PROCESSING, started_at=clock.now() - 61 * SECOND,
                      heartbeat_at=clock.now())
    worker = engine.connect()
    transaction = worker.begin()
    worker.execute(update(JobRun).where(JobRun.id.in_([held.id, overrun.id])).values(worker="frozen"))  # type: ignore[union-attr]
    try:
        # When beat ticks
        results: list[TickResult] = []
        ticking = threading.Thread(target=lambda: results.append(beat.tick()))
        ticking.start()
        ticking.join(15)
        # Then it did not wait for the worker: it repaired what it could and left the held runs alone
        assert not ticking.is_alive(), "beat waited for a worker's transaction"
        [result] = results
        assert (result.reclaimed, result.timed_out) == (1, 0)
        assert free.id is not None
    finally:
        transaction.rollback()
        worker.close()
        ticking.join(15)
    # and once the worker lets go, the next tick repairs those too
    clock.advance(SECOND)
    result = beat.tick()
    assert (result.reclaimed, result.timed_out) == (1, 1)
