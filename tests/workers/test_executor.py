"""The run executor: duplicate steps are no-ops, failures end the run, chunks all count."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from workers_testkit import Drain, RecordingDispatcher, dunning_registry

from scheduler.clock import FrozenClock
from scheduler.dispatch import Phase
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import Job, JobRun, RunChunk, RunEvent, RunItem, RunStatus
from workers.dunning import DunningJobType
from workers.runtime.env import WorkerEnv
from workers.runtime.executor import FINAL_CHECK, execute_step
from workers.runtime.heartbeat import RunHeartbeat

S = RunStatus


@pytest.fixture
def registry() -> JobTypeRegistry:
    return dunning_registry()


def run_of(env: WorkerEnv, run_id: int) -> JobRun:
    with env.factory() as session:
        run = session.get(JobRun, run_id)
        assert run is not None
        session.expunge(run)
        return run


def history(env: WorkerEnv, run_id: int) -> list[tuple[str | None, str]]:
    with env.factory() as session:
        events = session.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id))  # type: ignore[arg-type]
        return [(e.from_status, e.to_status) for e in events]


def count_items(env: WorkerEnv, run_id: int) -> int:
    with env.factory() as session:
        return int(session.scalar(select(func.count()).select_from(RunItem).where(RunItem.run_id == run_id)) or 0)  # type: ignore[arg-type]


def step_once(env: WorkerEnv, dispatcher: RecordingDispatcher) -> tuple[str, int]:
    _, step = dispatcher.steps.popleft()
    execute_step(env, step.run_id, step.phase, step.chunk_no)
    return step.phase, step.chunk_no


def test_a_run_is_split_into_chunks_and_every_chunk_counts(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain, dispatcher: RecordingDispatcher,
) -> None:
    # Given 7 accounts in scope and chunks of 3
    run_id = start_run(make_job())
    drain()
    run = run_of(env, run_id)
    assert run.status == S.COMPLETED
    assert run.chunks_total == 3 and run.chunks_done == 3
    sent = [(step.phase, step.chunk_no) for _, step in dispatcher.sent]
    assert sent == [("plan", 0), ("evaluate", 0), ("evaluate", 1), ("evaluate", 2),
                    ("apply", 0), ("apply", 1), ("apply", 2)]
    with env.factory() as session:
        chunks = session.scalars(select(RunChunk).where(RunChunk.run_id == run_id).order_by(RunChunk.chunk_no)).all()  # type: ignore[arg-type]
    assert [c.spec["accounts"] for c in chunks] == [3, 3, 1]
    assert all(c.evaluated_at and c.applied_at for c in chunks)
    assert [c.items for c in chunks] == [3, 1, 0]
    assert history(env, run_id) == [(None, "CREATED"), ("CREATED", "PROCESSING"), ("PROCESSING", "SUBMITTED"),
                                    ("SUBMITTED", "COMPLETED")]
    assert run.started_at is not None and run.finished_at is not None and run.attempt == 1
    assert run.worker == "worker-test"


def test_duplicate_steps_are_no_ops(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    dispatcher: RecordingDispatcher, drain: Drain,
) -> None:
    # Given a run that planned and evaluated its first chunk
    run_id = start_run(make_job())
    assert step_once(env, dispatcher) == ("plan", 0)
    assert step_once(env, dispatcher) == ("evaluate", 0)
    staged = count_items(env, run_id)
    # When the plan and that evaluate step are delivered again
    execute_step(env, run_id, Phase.PLAN, 0)
    execute_step(env, run_id, Phase.EVALUATE, 0)
    # Then nothing is planned, staged or counted twice
    run = run_of(env, run_id)
    assert (run.status, run.chunks_total, run.chunks_done, run.attempt) == (S.PROCESSING, 3, 1, 1)
    assert count_items(env, run_id) == staged == 3
    assert [s.phase for _, s in dispatcher.steps] == ["evaluate", "evaluate"]
    # And once the run completes, any step delivered again changes nothing
    drain()
    done = run_of(env, run_id)
    events = history(env, run_id)
    for phase in (Phase.PLAN, Phase.EVALUATE, Phase.APPLY):
        for chunk_no in (0, 1, 2, FINAL_CHECK):
            execute_step(env, run_id, phase, chunk_no)
    assert not dispatcher.steps
    assert history(env, run_id) == events
    again = run_of(env, run_id)
    assert (again.status, again.summary, again.finished_at) == (S.COMPLETED, done.summary, done.finished_at)


def test_an_exception_in_plan_fails_the_run(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: Any, ctx: Any) -> list[dict[str, Any]]:
        raise RuntimeError("billing database unreachable")

    monkeypatch.setattr(DunningJobType, "plan", broken)
    run_id = start_run(make_job())
    drain()
    run = run_of(env, run_id)
    assert run.status == S.FAILED
    assert run.error == "planning failed: billing database unreachable"
    assert run.finished_at is not None


def test_an_exception_in_evaluate_fails_the_run_and_later_chunks_do_nothing(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = DunningJobType.evaluate

    def broken(self: DunningJobType, ctx: Any, chunk_no: int, spec: dict[str, Any]) -> int:
        if chunk_no == 1:
            raise ValueError("bad invoice row")
        return original(self, ctx, chunk_no, spec)

    monkeypatch.setattr(DunningJobType, "evaluate", broken)
    run_id = start_run(make_job())
    drain()
    run = run_of(env, run_id)
    assert run.status == S.FAILED
    assert run.error == "evaluation of chunk 1 failed: bad invoice row"
    with env.factory() as session:
        applied = session.scalar(
            select(func.count()).select_from(RunItem).where(RunItem.run_id == run_id, RunItem.applied_at.is_not(None))  # type: ignore[arg-type,union-attr]
        )
    assert applied == 0


def test_apply_failing_in_every_chunk_fails_the_run(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: Any, ctx: Any, chunk_no: int, spec: dict[str, Any]) -> None:
        raise RuntimeError("ledger locked")

    monkeypatch.setattr(DunningJobType, "apply", broken)
    run_id = start_run(make_job())
    drain()
    run = run_of(env, run_id)
    assert run.status == S.FAILED
    assert run.error is not None and run.error.startswith("4 of 4 items failed")
    assert "ledger locked" in run.error
    assert run.summary["items"] == {"error": 4}
    assert run.chunks_done == 3


def test_a_run_past_max_runtime_fails_when_a_step_notices(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    dispatcher: RecordingDispatcher, drain: Drain, clock: FrozenClock,
) -> None:
    # Given a job limited to 60 seconds whose run planned at once
    job = make_job()
    with env.factory() as session:
        session.execute(update(Job).where(Job.id == job.id).values(max_runtime=60))  # type: ignore[arg-type]
        session.commit()
    run_id = start_run(job)
    step_once(env, dispatcher)
    # When the evaluate steps only run two minutes later
    clock.advance(timedelta(minutes=2))
    drain()
    # Then the run failed with that reason and nothing was staged
    run = run_of(env, run_id)
    assert run.status == S.FAILED
    assert run.error is not None and run.error.startswith("exceeded max_runtime of 60s")
    assert count_items(env, run_id) == 0


def test_final_check_moves_a_fully_evaluated_run_on(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    dispatcher: RecordingDispatcher, drain: Drain,
) -> None:
    # Given a run whose last evaluate message was lost after its chunk was marked
    run_id = start_run(make_job())
    for _ in range(3):
        step_once(env, dispatcher)  # plan, evaluate 0, evaluate 1
    dispatcher.steps.clear()
    execute_step(env, run_id, Phase.EVALUATE, FINAL_CHECK)
    assert run_of(env, run_id).status == S.PROCESSING  # chunk 2 is still to do
    with env.factory() as session:
        session.execute(update(RunChunk).where(RunChunk.run_id == run_id, RunChunk.chunk_no == 2)  # type: ignore[arg-type]
                        .values(evaluated_at=run_of(env, run_id).started_at))
        session.commit()
    # When beat's completion check arrives
    execute_step(env, run_id, Phase.EVALUATE, FINAL_CHECK)
    # Then the run is submitted and applied
    assert run_of(env, run_id).status == S.SUBMITTED
    drain()
    assert run_of(env, run_id).status == S.COMPLETED


def test_a_run_with_nothing_in_scope_completes_with_no_chunks(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain,
) -> None:
    run_id = start_run(make_job(account_category="NOBODY"))
    drain()
    run = run_of(env, run_id)
    assert (run.status, run.chunks_total, run.summary["accounts_evaluated"]) == (S.COMPLETED, 0, 0)


def test_an_unknown_run_or_phase_is_ignored(env: WorkerEnv) -> None:
    execute_step(env, 987654, Phase.PLAN, 0)
    execute_step(env, 987654, "compact", 0)


def test_heartbeat_stamps_runs_with_a_step_in_progress(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    dispatcher: RecordingDispatcher, clock: FrozenClock,
) -> None:
    run_id = start_run(make_job())
    step_once(env, dispatcher)
    beat = RunHeartbeat(env.factory, clock, interval=3600)
    clock.advance(timedelta(seconds=42))
    assert beat.beat_once() == 0
    with beat.beating(run_id):
        assert beat.active_runs() == [run_id]
        assert beat.beat_once() == 1
    assert beat.active_runs() == []
    beat.stop()
    assert run_of(env, run_id).heartbeat_at == clock.now()
