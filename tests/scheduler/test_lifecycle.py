"""The one guarded transition: compare-and-set on the status plus an audit row, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from scheduler.clock import FrozenClock
from scheduler.errors import InvalidTransition, RunNotFound
from scheduler.lifecycle import ALLOWED, allowed_actions, final_status, stops_for_review, transition
from scheduler.models import Job, JobRun, RunEvent, RunStatus
from scheduler.runs import act_on_run

S = RunStatus


def _run(session: Session, status: RunStatus = S.CREATED) -> int:
    job = Job(name=f"job-{datetime.now(UTC).timestamp()}", job_type="fake", cron="* * * * *")
    session.add(job)
    session.flush()
    assert job.id is not None
    run = JobRun(job_id=job.id, job_type="fake", status=status)
    session.add(run)
    session.commit()
    assert run.id is not None
    return run.id


def _events(session: Session, run_id: int) -> list[tuple[str | None, str, str]]:
    rows = session.scalars(select(RunEvent).where(col(RunEvent.run_id) == run_id).order_by(col(RunEvent.id)))
    return [(e.from_status, e.to_status, e.actor) for e in rows]


def test_transition_changes_status_and_writes_the_event(session: Session) -> None:
    run_id = _run(session)
    assert transition(session, run_id, S.PROCESSING, actor="worker-1", note="taken")
    session.commit()
    run = session.get(JobRun, run_id)
    assert run is not None
    session.refresh(run)
    assert run.status == S.PROCESSING
    assert _events(session, run_id) == [(S.CREATED, S.PROCESSING, "worker-1")]


def test_losing_racer_changes_nothing(session_factory: sessionmaker[Session]) -> None:
    # Given two workers that both saw the run CREATED
    with session_factory() as s:
        run_id = _run(s)
    # When the first takes it
    with session_factory() as first:
        assert transition(first, run_id, S.PROCESSING, actor="worker-1")
        first.commit()
    # Then the second's identical move is refused quietly and writes no event
    with session_factory() as second:
        assert not transition(second, run_id, S.PROCESSING, actor="worker-2", expected=[S.CREATED])
        second.commit()
        assert _events(second, run_id) == [(S.CREATED, S.PROCESSING, "worker-1")]


@pytest.mark.parametrize(
    ("status", "action", "target"),
    [
        (S.PROCESSING, "submit", S.SUBMITTED),
        (S.COMPLETED, "delete", S.DELETED),
        (S.PROCESSING, "cancel", S.CANCELLED),
        (S.SUBMITTED, "cancel", S.CANCELLED),
    ],
)
def test_user_action_not_allowed_is_refused_with_the_allowed_actions(
    session: Session, status: RunStatus, action: str, target: RunStatus
) -> None:
    run_id = _run(session, status)
    with pytest.raises(InvalidTransition) as err:
        transition(session, run_id, target, actor="alice", action=action, expected=[S.PREVIEW, S.CREATED])
    assert err.value.details["status"] == status
    assert err.value.details["allowed_actions"] == allowed_actions(status)
    session.rollback()
    assert _events(session, run_id) == []


def test_unknown_run_is_not_found(session: Session) -> None:
    with pytest.raises(RunNotFound):
        transition(session, 999_999, S.PROCESSING, actor="x")


@pytest.mark.parametrize(
    ("status", "actions"),
    [
        (S.CREATED, ["cancel"]),
        (S.PREVIEW, ["submit", "delete"]),
        (S.PROCESSING, []),
        (S.SUBMITTED, []),
        (S.COMPLETED, []),
        (S.INCOMPLETE, ["retry"]),
        (S.FAILED, ["retry"]),
        (S.DELETED, []),
    ],
)
def test_actions_per_status_follow_the_product_table(status: RunStatus, actions: list[str]) -> None:
    assert allowed_actions(status) == actions


def test_terminal_statuses_have_no_way_out() -> None:
    for status in (S.COMPLETED, S.INCOMPLETE, S.FAILED, S.CANCELLED, S.DELETED):
        assert ALLOWED[status] == frozenset()


def test_finished_at_is_stamped_on_terminal_moves(engine: Engine, session: Session) -> None:
    run_id = _run(session, S.SUBMITTED)
    at = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert transition(session, run_id, S.COMPLETED, actor="w", at=at)
    session.commit()
    run = session.get(JobRun, run_id)
    assert run is not None
    session.refresh(run)
    assert run.finished_at == at
    assert run.finished_at.tzinfo is not None


@pytest.mark.parametrize(
    ("counts", "status"),
    [
        ({}, S.COMPLETED),
        ({"ok": 3, "skipped": 1}, S.COMPLETED),
        ({"ok": 3, "error": 1}, S.INCOMPLETE),
        ({"skipped": 2, "error": 1}, S.INCOMPLETE),
        ({"error": 4}, S.FAILED),
    ],
)
def test_an_applied_run_ends_by_its_items(counts: dict[str, int], status: RunStatus) -> None:
    assert final_status(counts) is status


@pytest.mark.parametrize(
    ("requires_review", "preview", "held_by_type", "stops"),
    [(False, False, False, False), (True, False, False, True), (False, True, False, True),
     (False, False, True, True)],
)
def test_a_run_stops_at_preview_when_anyone_asks(
    requires_review: bool, preview: bool, held_by_type: bool, stops: bool
) -> None:
    assert stops_for_review(requires_review=requires_review, preview=preview, held_by_type=held_by_type) is stops


def test_a_cancelled_run_is_counted_as_it_ends(session: Session) -> None:
    # Given a created run
    run_id = _run(session)
    labels = {"job_type": "fake", "trigger": "MANUAL", "status": "CANCELLED"}
    before = REGISTRY.get_sample_value("scheduler_runs_total", labels) or 0.0

    # When a user cancels it
    run = act_on_run(session=session, run_id=run_id, action="cancel", actor="alice",
                     clock=FrozenClock(datetime(2026, 6, 1, tzinfo=UTC)))

    # Then it ends CANCELLED and the run-ended hook counted it
    assert run.status == S.CANCELLED
    assert REGISTRY.get_sample_value("scheduler_runs_total", labels) == before + 1
