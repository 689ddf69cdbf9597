"""Graceful shutdown and runaway runs, with real processes.

- SIGTERM to a worker pool mid-chunk: the chunk in hand is finished, the messages it had prefetched
  go back to the queue, and the pool exits 0 — another pool finishes the run with no reclaim needed.
- A run over its job's ``max_runtime`` ends FAILED with that reason; a job whose runs keep failing
  pauses itself (``pause_on_failure``), audited with the reason, and fires nothing more.
- A reviewed run's runtime counts from its submit: one submitted long after it started is applied,
  not failed half-way by beat.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from faultkit import (
    ManualRuns,
    Pool,
    PrivateRedis,
    Processes,
    audit_notes,
    beat_argv,
    rows,
    scalar,
    scheduler_env,
    time_limit,
    transitions,
    wait_for,
    worker_argv,
)
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from scheduler.dispatch import WAKE_CHANNEL
from scheduler.jobs import JobCreate
from scheduler.models import Job, MisfirePolicy, OverlapPolicy
from scheduler.runs import act_on_run, send_apply

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults, time_limit(240)]


def queued_chunks(url: str, queue: str) -> list[int]:
    """The chunk numbers of the evaluate steps waiting on ``queue``."""
    client = redis.Redis.from_url(url)
    try:
        ids = client.lrange(f"dramatiq:{queue}", 0, -1)
        bodies = client.hmget(f"dramatiq:{queue}.msgs", ids) if ids else []
        return sorted(json.loads(body)["args"][2] for body in bodies if body)
    finally:
        client.close()


def test_sigterm_finishes_the_chunk_in_hand_and_hands_back_the_rest(
    fault_db: Engine, fault_db_url: str, private_redis: PrivateRedis, processes: Processes, tmp_path: Path,
    figures: list[str],
) -> None:
    # Given a run of six 1.5-second chunks on a one-thread pool, and no beat: only the pool itself can
    # hand back what it holds (timeouts of 60 s keep any repair out of the picture anyway)
    env = scheduler_env(database_url=fault_db_url, redis_url=private_redis.url, data_dir=tmp_path / "data",
                        run_heartbeat_timeout=60, outbox_resend_after=60)
    first = Pool(processes, "pool-first", worker_argv(["faults_slow"], threads=1), env)
    wait_for(first.ready, "the pool", timeout=60, processes=processes)
    manual = ManualRuns(fault_db, private_redis.url)
    run_id = manual.start(manual.job(JobCreate(name="slow", job_type="faults_slow",
                                               properties={"chunks": 6, "seconds": 1.5})))
    manual.close()

    def evaluated() -> int:
        return int(scalar(fault_db, "SELECT COUNT(evaluated_at) FROM run_chunk WHERE run_id = :r", r=run_id))

    # When the pool gets SIGTERM while it evaluates the second chunk
    wait_for(lambda: evaluated() >= 1, "the first chunk", timeout=60, processes=processes)
    time.sleep(0.4)  # well inside the second chunk's 1.5 s
    in_hand = evaluated()
    stopped = time.monotonic()
    assert first.proc.terminate(timeout=30) == 0, processes.logs()
    shutdown = time.monotonic() - stopped

    # Then it finished that chunk (and nothing else), and every other chunk's step is back on the queue
    assert evaluated() == in_hand + 1
    assert scalar(fault_db, "SELECT COUNT(*) FROM run_item WHERE run_id = :r", r=run_id) == in_hand + 1
    done = {c.chunk_no for c in rows(fault_db, "SELECT chunk_no FROM run_chunk WHERE run_id = :r AND "
                                               "evaluated_at IS NOT NULL", r=run_id)}
    assert queued_chunks(private_redis.url, "faults_slow") == sorted(set(range(6)) - done)
    assert "Worker has been shut down" in first.proc.log()

    # and a new pool completes the run from there, with nothing re-sent by anyone
    Pool(processes, "pool-second", worker_argv(["faults_slow"], threads=1), env)
    wait_for(lambda: scalar(fault_db, "SELECT status FROM job_run WHERE id = :r", r=run_id) == "COMPLETED",
             "the run to complete", timeout=60, processes=processes)
    assert not audit_notes(fault_db, "%re-sent%")
    assert transitions(fault_db)[run_id] == [(None, "CREATED"), ("CREATED", "PROCESSING"),
                                             ("PROCESSING", "SUBMITTED"), ("SUBMITTED", "COMPLETED")]
    figures.append(f"SIGTERM mid-chunk: the chunk in hand finished and the pool exited 0 after {shutdown:.1f} s; "
                   f"{5 - in_hand} prefetched/queued chunk(s) handed back and completed by another pool")


def test_runs_over_max_runtime_fail_and_the_job_pauses_itself(
    fault_db: Engine, fault_db_url: str, private_redis: PrivateRedis, processes: Processes, tmp_path: Path,
    figures: list[str],
) -> None:
    # Given a job every 2 s whose runs need 5 s a chunk but may run 2 s, pausing after 2 failed runs
    env = scheduler_env(database_url=fault_db_url, redis_url=private_redis.url, data_dir=tmp_path / "data")
    beat = processes.start("beat", beat_argv(), env)
    pool = Pool(processes, "pool", worker_argv(["faults_slow"]), env)
    with Session(fault_db) as session:
        job = Job(name="runaway", job_type="faults_slow", cron="*/2 * * * * ?", properties={"chunks": 2, "seconds": 5},
                  next_fire_at=datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2), max_runtime=2,
                  pause_on_failure=2, misfire_policy=MisfirePolicy.ONCE, overlap_policy=OverlapPolicy.SKIP)
        session.add(job)
        session.commit()
        assert job.id is not None
        job_id = job.id
    client = redis.Redis.from_url(private_redis.url)
    client.publish(WAKE_CHANNEL, b"1")
    client.close()

    # When its runs overrun
    paused = wait_for(
        lambda: scalar(fault_db, "SELECT at FROM job_event WHERE job_id = :j AND to_status = 'PAUSED'", j=job_id),
        "the job to pause itself", timeout=90, processes=processes, must_live=[beat, pool.proc],
    )
    time.sleep(3)  # a few more of its ticks pass: none may fire

    # Then two runs failed with the reason, nothing was applied, and the job paused saying why
    runs = rows(fault_db, "SELECT id, status, error, finished_at FROM job_run WHERE job_id = :j ORDER BY id", j=job_id)
    assert [r.status for r in runs] == ["FAILED", "FAILED"], runs
    assert all(r.error.startswith("exceeded max_runtime of 2") for r in runs), [r.error for r in runs]
    assert all(transitions(fault_db)[r.id] == [(None, "CREATED"), ("CREATED", "PROCESSING"), ("PROCESSING", "FAILED")]
               for r in runs)
    assert not scalar(fault_db, "SELECT COUNT(applied_at) FROM run_item")
    event = rows(fault_db, "SELECT actor, note FROM job_event WHERE job_id = :j AND to_status = 'PAUSED'", j=job_id)
    assert len(event) == 1 and event[0].note.startswith("paused after 2 consecutive failed runs: exceeded max_runtime")
    job_row = rows(fault_db, "SELECT status, next_fire_at FROM job WHERE id = :j", j=job_id)[0]
    assert (job_row.status, job_row.next_fire_at) == ("PAUSED", None)
    figures.append(
        f"max_runtime 2 s: runs FAILED {', '.join(f'{(r.finished_at - paused).total_seconds():+.1f}' for r in runs)} s "
        f"from the pause; job paused by {event[0].actor}: {event[0].note!r}"
    )


def test_a_reviewed_run_submitted_after_its_max_runtime_since_start_is_applied_not_failed(
    fault_db: Engine, fault_db_url: str, private_redis: PrivateRedis, processes: Processes, tmp_path: Path,
) -> None:
    # Given a job that may run 3 s, needs review, and applies two chunks of 1.5 s each
    env = scheduler_env(database_url=fault_db_url, redis_url=private_redis.url, data_dir=tmp_path / "data")
    beat = processes.start("beat", beat_argv(), env)
    pool = Pool(processes, "pool", worker_argv(["faults_slow"]), env)
    manual = ManualRuns(fault_db, private_redis.url)
    run_id = manual.start(manual.job(JobCreate(name="reviewed", job_type="faults_slow", requires_review=True,
                                               max_runtime=3, properties={"chunks": 2, "seconds": 0,
                                                                          "apply_seconds": 1.5})))

    def status() -> str:
        return str(scalar(fault_db, "SELECT status FROM job_run WHERE id = :r", r=run_id))

    # When the reviewer submits it more than 3 s after it started
    wait_for(lambda: status() == "PREVIEW", "the preview", timeout=60, processes=processes,
             must_live=[beat, pool.proc])
    started = scalar(fault_db, "SELECT started_at FROM job_run WHERE id = :r", r=run_id)
    wait_for(lambda: datetime.now(UTC) > started + timedelta(seconds=4), "the review to take 4 s", timeout=30)
    with manual.factory() as session:
        act_on_run(session=session, run_id=run_id, action="submit", actor="reviewer", clock=manual.clock)
    assert send_apply(factory=manual.factory, dispatcher=manual.dispatcher, registry=manual.registry,
                      run_id=run_id) == 2
    manual.close()

    # Then it is applied in full: its runtime counts from the submit
    final = wait_for(lambda: status() in ("COMPLETED", "INCOMPLETE", "FAILED") and status(), "the run to finish",
                     timeout=60, processes=processes, must_live=[beat, pool.proc])
    error = scalar(fault_db, "SELECT error FROM job_run WHERE id = :r", r=run_id)
    assert final == "COMPLETED", error
    assert scalar(fault_db, "SELECT COUNT(applied_at) FROM run_item WHERE run_id = :r", r=run_id) == 2


def test_a_run_whose_apply_hangs_past_max_runtime_is_ended_with_the_reason(
    fault_db: Engine, fault_db_url: str, private_redis: PrivateRedis, processes: Processes, tmp_path: Path,
    figures: list[str],
) -> None:
    # Given a job that may run 3 s whose one chunk's apply hangs for a minute
    env = scheduler_env(database_url=fault_db_url, redis_url=private_redis.url, data_dir=tmp_path / "data")
    beat = processes.start("beat", beat_argv(), env)
    pool = Pool(processes, "pool", worker_argv(["faults_slow"]), env)
    manual = ManualRuns(fault_db, private_redis.url)
    run_id = manual.start(manual.job(JobCreate(name="hangs", job_type="faults_slow", max_runtime=3,
                                               properties={"chunks": 1, "seconds": 0, "apply_seconds": 60})))
    manual.close()

    # When it overruns while applying, then beat has a worker end it: nothing applied, so FAILED, with the reason
    ended = wait_for(
        lambda: rows(fault_db, "SELECT status, error, started_at, finished_at FROM job_run WHERE id = :r AND "
                               "status NOT IN ('CREATED', 'PROCESSING', 'SUBMITTED')", r=run_id),
        "the run to end", timeout=60, processes=processes, must_live=[beat, pool.proc],
    )[0]
    assert ended.status == "FAILED" and ended.error.startswith("exceeded max_runtime of 3s"), ended
    assert not scalar(fault_db, "SELECT COUNT(applied_at) FROM run_item WHERE run_id = :r", r=run_id)
    figures.append(f"apply hanging past a 3 s max_runtime: run FAILED after "
                   f"{(ended.finished_at - ended.started_at).total_seconds():.1f} s with {ended.error!r}")
