"""``pause_on_failure``: a job pauses itself after N consecutive FAILED runs, with the reason audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from workers_testkit import TIERS, Drain

from scheduler.clock import FrozenClock
from scheduler.errors import JobNotRunnable
from scheduler.jobs import JobCreate, JobPublic, create_job, pause_if_failing
from scheduler.models import Job, JobEvent, JobRun, JobStatus, RunStatus
from workers.dunning import DunningJobType
from workers.runtime.env import WorkerEnv

S = RunStatus


@pytest.fixture
def make_failing_job(env: WorkerEnv, clock: FrozenClock) -> Callable[..., Job]:
    def make(pause_on_failure: int | None) -> Job:
        props = {"account_category": "RESIDENTIAL", "minimum_account_due": "10.00", "tiers": TIERS}
        with env.factory() as session:
            job = create_job(
                session=session, registry=env.registry, actor="test", clock=clock,
                job_in=JobCreate(name="Fragile dunning", job_type="dunning", properties=props,
                                 pause_on_failure=pause_on_failure),
            )
            session.expunge(job)
            return job

    return make


def broken_plan(self: Any, ctx: Any) -> list[dict[str, Any]]:
    raise RuntimeError("billing database unreachable")


def job_state(env: WorkerEnv, job_id: int) -> tuple[str, list[JobEvent]]:
    with env.factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        events = list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))  # type: ignore[arg-type]
        return job.status, events


def run_status(env: WorkerEnv, run_id: int) -> str:
    with env.factory() as session:
        run = session.get(JobRun, run_id)
        assert run is not None
        return run.status


def test_job_pauses_after_n_consecutive_failed_runs_with_the_reason_audited(
    env: WorkerEnv, known_ledger: dict[str, int], make_failing_job: Callable[..., Job],
    start_run: Callable[..., int], drain: Drain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a job that pauses after two consecutive failures, and a billing database that is down
    job = make_failing_job(2)
    assert job.id is not None
    assert JobPublic.of(job).pause_on_failure == 2
    monkeypatch.setattr(DunningJobType, "plan", broken_plan)

    # When one run fails, the job stays active
    first = start_run(job)
    drain()
    assert run_status(env, first) == S.FAILED
    assert job_state(env, job.id)[0] == JobStatus.ACTIVE

    # When a second run fails in a row, the job pauses itself
    second = start_run(job)
    drain()
    assert run_status(env, second) == S.FAILED
    status, events = job_state(env, job.id)
    assert status == JobStatus.PAUSED
    pause = events[-1]
    assert (pause.from_status, pause.to_status, pause.actor) == (JobStatus.ACTIVE, JobStatus.PAUSED, "worker-test")
    assert pause.note == (
        "paused after 2 consecutive failed runs: planning failed: billing database unreachable"
    )

    # Then it refuses manual runs and fires nothing
    with pytest.raises(JobNotRunnable):
        start_run(job)
    with env.factory() as session:
        assert session.get(Job, job.id).next_fire_at is None  # type: ignore[union-attr]


def test_a_successful_run_breaks_the_streak(
    env: WorkerEnv, known_ledger: dict[str, int], make_failing_job: Callable[..., Job],
    start_run: Callable[..., int], drain: Drain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = make_failing_job(2)
    assert job.id is not None
    outcomes = []
    for broken in (True, False, True):
        if broken:
            monkeypatch.setattr(DunningJobType, "plan", broken_plan)
        else:
            monkeypatch.undo()
        run_id = start_run(job)
        drain()
        outcomes.append(run_status(env, run_id))
    assert outcomes == [S.FAILED, S.COMPLETED, S.FAILED]
    assert job_state(env, job.id)[0] == JobStatus.ACTIVE


def test_without_pause_on_failure_a_job_keeps_failing_active(
    env: WorkerEnv, known_ledger: dict[str, int], make_failing_job: Callable[..., Job],
    start_run: Callable[..., int], drain: Drain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = make_failing_job(None)
    assert job.id is not None
    monkeypatch.setattr(DunningJobType, "plan", broken_plan)
    for _ in range(3):
        start_run(job)
        drain()
    status, events = job_state(env, job.id)
    assert status == JobStatus.ACTIVE and len(events) == 1


def test_pausing_is_guarded_a_paused_job_is_not_paused_twice(
    env: WorkerEnv, known_ledger: dict[str, int], make_failing_job: Callable[..., Job],
    start_run: Callable[..., int], drain: Drain, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock,
) -> None:
    job = make_failing_job(1)
    assert job.id is not None
    monkeypatch.setattr(DunningJobType, "plan", broken_plan)
    start_run(job)
    drain()
    assert job_state(env, job.id)[0] == JobStatus.PAUSED
    # A second failed run finishing late (it was already running) does not pause the job again
    with env.factory() as session:
        assert not pause_if_failing(session=session, job_id=job.id, actor="worker-late", clock=clock)
    assert [e.to_status for e in job_state(env, job.id)[1]] == [JobStatus.ACTIVE, JobStatus.PAUSED]
