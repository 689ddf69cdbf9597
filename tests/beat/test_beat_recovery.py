"""Beat's repairs: the outbox re-sends unsent runs, stale runs get unfinished steps, overruns fail."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from beat_fake_types import FakeJobType
from beat_helpers import SwitchableDispatcher, events_of, job_row, metric, run_row, runs_of
from mailkit import smtp_server
from sqlalchemy.orm import Session, sessionmaker

from beat.service import Beat
from scheduler.clock import FrozenClock
from scheduler.dispatch import Phase
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import Job, JobRun, JobStatus, OverlapPolicy, RunStatus
from scheduler.settings import Settings

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def test_run_recorded_while_redis_is_down_is_sent_on_a_later_tick(
    beat: Beat,
    add_job: Callable[..., Job],
    factory: sessionmaker[Session],
    clock: FrozenClock,
    dispatcher: SwitchableDispatcher,
    job_type: FakeJobType,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = add_job(next_fire_at=NOON)
    # Given Redis is down when the tick's run is sent
    dispatcher.set_down(True)
    result = beat.tick()
    [run_id] = result.created
    assert result.sent == 0
    run = run_row(factory, run_id)
    assert (run.status, run.enqueued_at) == (RunStatus.CREATED, None)
    # and still down a tick later: nothing sent, nothing lost
    clock.advance(3 * SECOND)
    assert beat.tick().resent == 0

    # When Redis is back
    dispatcher.set_down(False)
    before = metric("scheduler_resent_runs_total")
    clock.advance(SECOND)
    with caplog.at_level(logging.INFO, logger="beat"):
        resent = beat.tick().resent

    # Then the outbox sends it, once, and says so
    assert resent == 1
    assert metric("scheduler_resent_runs_total") == before + 1
    assert dispatcher.drain(job_type.queue) == [(run_id, Phase.PLAN, 0)]
    assert run_row(factory, run_id).enqueued_at == clock.now()
    assert any(f"run {run_id} re-sent" in m for m in caplog.messages)
    note = events_of(factory, run_id)[-1]
    assert (note.from_status, note.to_status, note.actor) == (RunStatus.CREATED, RunStatus.CREATED, "beat-a")
    assert note.note == "re-sent from the outbox: never sent"
    clock.advance(3 * SECOND)
    assert beat.tick().resent == 0
    assert len(runs_of(factory, job.id or 0)) == 1


def test_outbox_waits_a_moment_before_sending_someone_elses_unsent_run(
    beat: Beat, add_job: Callable[..., Job], add_run: Callable[..., JobRun], clock: FrozenClock
) -> None:
    job = add_job(next_fire_at=NOON + timedelta(hours=1))
    add_run(job, status=RunStatus.CREATED, created_at=clock.now() - SECOND)
    assert beat.tick().resent == 0  # its creator is probably sending it right now
    clock.advance(2 * SECOND)
    assert beat.tick().resent == 1


def test_outbox_resends_a_run_sent_but_not_started(
    beat: Beat,
    add_job: Callable[..., Job],
    add_run: Callable[..., JobRun],
    factory: sessionmaker[Session],
    clock: FrozenClock,
    dispatcher: SwitchableDispatcher,
    job_type: FakeJobType,
) -> None:
    job = add_job(next_fire_at=NOON + timedelta(hours=1))
    sent_recently = add_run(job, status=RunStatus.CREATED, enqueued_at=clock.now() - 10 * SECOND)
    sent_long_ago = add_run(job, status=RunStatus.CREATED, enqueued_at=clock.now() - 31 * SECOND)
    add_run(job, status=RunStatus.PROCESSING, enqueued_at=clock.now() - 31 * SECOND, heartbeat_at=clock.now())

    assert beat.tick().resent == 1
    assert dispatcher.drain(job_type.queue) == [(sent_long_ago.id, Phase.PLAN, 0)]
    assert run_row(factory, sent_recently.id or 0).enqueued_at == clock.now() - 10 * SECOND


def test_run_stamped_sent_when_recorded_whose_sender_stopped_is_re_sent_saying_so(
    beat: Beat,
    add_job: Callable[..., Job],
    add_run: Callable[..., JobRun],
    factory: sessionmaker[Session],
    clock: FrozenClock,
    dispatcher: SwitchableDispatcher,
    job_type: FakeJobType,
) -> None:
    # Given a run the API recorded as sent, whose process stopped before it sent it
    job = add_job(next_fire_at=NOON + timedelta(hours=1))
    recorded = clock.now() - 31 * SECOND
    orphan = add_run(job, status=RunStatus.CREATED, created_at=recorded, enqueued_at=recorded)

    # When beat ticks past the outbox's resend time
    assert beat.tick().resent == 1

    # Then it is sent, and its audit note says it was due to be sent when recorded
    assert dispatcher.drain(job_type.queue) == [(orphan.id, Phase.PLAN, 0)]
    notes = [e.note for e in events_of(factory, orphan.id or 0)]
    assert notes == [f"re-sent from the outbox: recorded at {recorded.isoformat()} to be sent at once, "
                     "but not started"]


def test_stale_processing_run_gets_only_its_unevaluated_chunks(
    beat: Beat,
    add_job: Callable[..., Job],
    add_run: Callable[..., JobRun],
    factory: sessionmaker[Session],
    clock: FrozenClock,
    dispatcher: SwitchableDispatcher,
    job_type: FakeJobType,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = add_job(next_fire_at=NOON + timedelta(hours=1))
    stale = add_run(
        job,
        status=RunStatus.PROCESSING,
        started_at=clock.now() - timedelta(minutes=5),
        heartbeat_at=clock.now() - 31 * SECOND,
        chunks=[(False, False), (True, False), (False, False)],
    )
    fresh = add_run(
        job, status=RunStatus.PROCESSING, heartbeat_at=clock.now() - 10 * SECOND, chunks=[(False, False)]
    )
    before = metric("scheduler_reclaimed_runs_total")

    with caplog.at_level(logging.INFO, logger="beat"):
        assert beat.tick().reclaimed == 1

    assert dispatcher.drain(job_type.queue) == [(stale.id, Phase.EVALUATE, 0), (stale.id, Phase.EVALUATE, 2)]
    assert metric("scheduler_reclaimed_runs_total") == before + 1
    assert any(f"run {stale.id} (PROCESSING) stale" in m for m in caplog.messages)
    assert events_of(factory, stale.id or 0)[-1].note == "stale (no heartbeat): re-sent evaluate chunk(s) 0, 2"
    # The heartbeat is bumped: not re-sent on every tick, only after another timeout
    assert run_row(factory, stale.id or 0).heartbeat_at == clock.now()
    assert run_row(factory, fresh.id or 0).heartbeat_at == clock.now() - 10 * SECOND
    clock.advance(SECOND)
    assert beat.tick().reclaimed == 0
    clock.advance(30 * SECOND)
    assert beat.tick().reclaimed == 2  # both stale by now
    assert sorted(dispatcher.drain(job_type.queue)) == [
        (stale.id, Phase.EVALUATE, 0), (stale.id, Phase.EVALUATE, 2), (fresh.id, Phase.EVALUATE, 0)
    ]


@pytest.mark.parametrize(
    ("status", "chunks", "expected"),
    [
        (RunStatus.PROCESSING, [], [(Phase.PLAN, 0)]),
        (RunStatus.PROCESSING, [(True, False), (True, False)], [(Phase.EVALUATE, -1)]),
        (RunStatus.SUBMITTED, [(True, True), (True, False)], [(Phase.APPLY, 1)]),
        (RunStatus.SUBMITTED, [(True, True)], [(Phase.APPLY, -1)]),
    ],
    ids=["not-planned", "all-evaluated", "partly-applied", "all-applied"],
)
def test_stale_run_gets_the_step_it_still_needs(
    beat: Beat,
    add_job: Callable[..., Job],
    add_run: Callable[..., JobRun],
    clock: FrozenClock,
    dispatcher: SwitchableDispatcher,
    job_type: FakeJobType,
    status: str,
    chunks: list[tuple[bool, bool]],
    expected: list[tuple[str, int]],
) -> None:
    job = add_job(next_fire_at=NOON + timedelta(hours=1))
    run = add_run(job, status=status, started_at=clock.now() - timedelta(minutes=2), chunks=chunks)
    assert beat.tick().reclaimed == 1
    assert dispatcher.drain(job_type.queue) == [(run.id, phase, chunk) for phase, chunk in expected]


def test_reclaim_while_redis_is_down_is_retried_next_tick(
    beat: Beat,
    add_job: Callable[..., Job],
    add_run: Callable[..., JobRun],
    factory: sessionmaker[Session],
    clock: FrozenClock,
    dispatcher: SwitchableDispatcher,
    job_type: FakeJobType,
) -> None:
    job = add_job(next_fire_at=NOON + timedelta(hours=1))
    stale_since = clock.now() - timedelta(minutes=2)
    run = add_run(job, status=RunStatus.PROCESSING, heartbeat_at=stale_since)
    dispatcher.set_down(True)
    assert beat.tick().reclaimed == 0
    assert run_row(factory, run.id or 0).heartbeat_at == stale_since
    dispatcher.set_down(False)
    clock.advance(SECOND)
    assert beat.tick().reclaimed == 1
    assert dispatcher.drain(job_type.queue) == [(run.id, Phase.PLAN, 0)]


def test_run_over_max_runtime_fails_with_that_reason(
    beat: Beat,
    add_job: Callable[..., Job],
    add_run: Callable[..., JobRun],
    factory: sessionmaker[Session],
    clock: FrozenClock,
    job_type: FakeJobType,
    dispatcher: SwitchableDispatcher,
) -> None:
    job = add_job(next_fire_at=NOON + timedelta(hours=1), max_runtime=60, overlap_policy=OverlapPolicy.ALLOW)
    over = add_run(job, status=RunStatus.PROCESSING, started_at=clock.now() - 61 * SECOND, heartbeat_at=clock.now())
    within = add_run(job, status=RunStatus.SUBMITTED, started_at=clock.now() - 59 * SECOND, heartbeat_at=clock.now())
    review = add_run(job, status=RunStatus.PREVIEW, started_at=clock.now() - timedelta(hours=5))
    before = metric("scheduler_runs_total", job_type=job_type.name, trigger="MANUAL", status="FAILED")

    assert beat.tick().timed_out == 1

    failed = run_row(factory, over.id or 0)
    assert (failed.status, failed.error, failed.finished_at) == (
        RunStatus.FAILED, "exceeded max_runtime of 60 s", clock.now()
    )
    last = events_of(factory, over.id or 0)[-1]
    assert (last.from_status, last.to_status, last.actor) == (RunStatus.PROCESSING, RunStatus.FAILED, "beat-a")
    assert run_row(factory, within.id or 0).status == RunStatus.SUBMITTED
    assert run_row(factory, review.id or 0).status == RunStatus.PREVIEW  # waiting for a person is not runtime
    assert metric("scheduler_runs_total", job_type=job_type.name, trigger="MANUAL", status="FAILED") == before + 1
    # A SUBMITTED run may have applied items (FAILED means none): once over, it gets one final-check step,
    # and the worker taking it ends the run by what it applied
    dispatcher.drain(job_type.queue)
    clock.advance(2 * SECOND)
    assert beat.tick().timed_out == 0
    assert run_row(factory, within.id or 0).status == RunStatus.SUBMITTED
    assert dispatcher.drain(job_type.queue) == [(within.id, Phase.APPLY, -1)]
    clock.advance(SECOND)
    beat.tick()
    assert dispatcher.drain(job_type.queue) == []


def test_run_failed_by_beat_for_its_runtime_mails_the_failure_and_pauses_the_job(
    beat_settings: Settings,
    factory: sessionmaker[Session],
    beat_registry: JobTypeRegistry,
    dispatcher: SwitchableDispatcher,
    add_job: Callable[..., Job],
    add_run: Callable[..., JobRun],
    clock: FrozenClock,
) -> None:
    # Given a job that wants mail on failure and pauses after one failed run, with a run over its runtime
    with smtp_server() as (inbox, port):
        settings = beat_settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}",
                                                    "mail_from": "billing@example.com"})
        beat = Beat(settings, factory, beat_registry, dispatcher, clock, "beat-a")
        job = add_job(next_fire_at=NOON + timedelta(hours=1), max_runtime=60, name="Nightly GL",
                      notify_emails=["ar@example.com"], notify_on=["failed"], pause_on_failure=1)
        run = add_run(job, status=RunStatus.PROCESSING, started_at=clock.now() - 61 * SECOND,
                      heartbeat_at=clock.now())

        # When beat fails it for exceeding its maximum runtime
        assert beat.tick().timed_out == 1

        # Then the recipients get the failure mail with the reason, and the job is paused
        [mail] = inbox.wait_for(1)
    assert mail["To"] == "ar@example.com"
    assert mail["Subject"] == f"[Billing Scheduler] Nightly GL: run {run.id} FAILED"
    body = mail.get_payload()
    assert "Events: failed, complete_error" not in body  # only the events the job chose
    assert "Events: failed" in body and "Error: exceeded max_runtime of 60 s" in body
    assert job_row(factory, job.id or 0).status == JobStatus.PAUSED
