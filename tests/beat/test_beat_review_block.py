"""A preview awaiting review that holds its job's schedule up is never silent: noted, counted, shown, mailed once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from beat_fake_types import FakeJobType
from beat_helpers import SwitchableDispatcher, events_of, metric, runs_of
from mailkit import smtp_server
from sqlalchemy.orm import Session, sessionmaker

from beat.service import Beat
from scheduler.api.schemas import JobDetail
from scheduler.clock import FrozenClock
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import Job, JobRun, OverlapPolicy, RunStatus
from scheduler.settings import Settings

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def test_ticks_skipped_while_a_preview_awaits_review_are_noted_counted_shown_and_mailed_once(
    beat_settings: Settings,
    factory: sessionmaker[Session],
    beat_registry: JobTypeRegistry,
    dispatcher: SwitchableDispatcher,
    add_job: Callable[..., Job],
    add_run: Callable[..., JobRun],
    clock: FrozenClock,
    job_type: FakeJobType,
) -> None:
    with smtp_server() as (inbox, port):
        settings = beat_settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}",
                                                    "mail_from": "billing@example.com"})
        beat = Beat(settings, factory, beat_registry, dispatcher, clock, "beat-a")
        # Given a job reviewed by AR, whose last run waits at PREVIEW
        job = add_job(next_fire_at=NOON, overlap_policy=OverlapPolicy.SKIP, name="Nightly dunning",
                      notify_emails=["ar@example.com"], notify_on=["preview_ready"])
        assert job.id is not None
        preview = add_run(job, status=RunStatus.PREVIEW, scheduled_for=NOON - MINUTE)
        before = metric("scheduler_missed_ticks_total", job_type=job_type.name, reason="awaiting_review")
        # When two ticks come while it waits
        clock.set(NOON)
        assert beat.tick().missed == {"awaiting_review": 1}
        clock.set(NOON + MINUTE)
        assert beat.tick().missed == {"awaiting_review": 1}
        # Then no run was made, and the skips are counted under their own reason
        assert [r.id for r in runs_of(factory, job.id)] == [preview.id]
        assert metric("scheduler_missed_ticks_total", job_type=job_type.name, reason="awaiting_review") == before + 2
        # And each skip is on the preview's audit trail with its reason
        notes = [e.note for e in events_of(factory, preview.id or 0) if e.to_status == RunStatus.PREVIEW]
        assert notes[-2:] == [
            f"scheduled tick {t.isoformat()} skipped: this preview awaits review "
            "(the job's overlap policy runs nothing while it waits)" for t in (NOON, NOON + MINUTE)]
        # And the job shows the preview holding it up, with the ticks it has skipped
        with factory() as session:
            detail = JobDetail.build(session, session.get(Job, job.id))  # type: ignore[arg-type]
        assert detail.awaiting_review is not None
        assert (detail.awaiting_review.run_id, detail.awaiting_review.skipped_ticks,
                detail.awaiting_review.first_skipped, detail.awaiting_review.last_skipped) == (
            preview.id, 2, NOON, NOON + MINUTE)
        # And the recipients were mailed once, at the first skip
        [mail] = inbox.wait_for(1)
        inbox.wait_for(2, timeout=0.5)
        assert len(inbox.messages) == 1
    assert mail["To"] == "ar@example.com"
    assert mail["Subject"] == f"[Billing Scheduler] Nightly dunning: run {preview.id} PREVIEW"
    body = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Events: review_blocking" in body and "Outcome: awaiting review: nothing to do" in body
    assert "the job skips its scheduled ticks until it is submitted or deleted" in body
