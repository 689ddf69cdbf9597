"""E-mail notifications to a job's recipients on the events they chose, with the run's counts and errors."""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.jobs import NotifyEvent
from scheduler.lifecycle import RETRYABLE
from scheduler.models import Job, JobRun, RunItem, RunStatus
from scheduler.outcomes import outcome_line
from scheduler.redact import redact
from scheduler.settings import Settings

log = logging.getLogger(__name__)

# The notification event a run's status raises.
STATUS_EVENTS: dict[str, str] = {
    RunStatus.COMPLETED: "completed",
    RunStatus.INCOMPLETE: "incomplete",
    RunStatus.FAILED: "failed",
    RunStatus.PREVIEW: "preview_ready",
}
REVIEW_BLOCKING = NotifyEvent.REVIEW_BLOCKING
ERRORS_SHOWN = 20


def item_error_text(detail: dict[str, Any]) -> str:
    """Why an item errored, from the detail a job type recorded (``error`` or ``reason``)."""
    return str(detail.get("error") or detail.get("reason") or "no reason recorded")


@dataclass(frozen=True, kw_only=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    ssl: bool
    starttls: bool

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        """``smtp://user:pass@host:port`` (``?starttls=1``) or ``smtps://…`` for implicit TLS."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"SCHEDULER_SMTP_URL must look like smtp://user:pass@host:port, got {redact(url)!r}")
        query = parse_qs(parts.query)
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "smtps",
            starttls=query.get("starttls", ["0"])[0] in ("1", "true", "yes"),
        )


def events_for(run: JobRun) -> list[str]:
    """The events a run at its current status raises; ``complete_error`` for any run that ended with errors."""
    events = [STATUS_EVENTS[run.status]] if run.status in STATUS_EVENTS else []
    if run.status in RETRYABLE:  # ended with errors
        events.append("complete_error")
    events.extend(str(e) for e in run.summary.get("notify_events", []))
    return events


def build_message(settings: Settings, job: Job, run: JobRun, events: list[str], errors: list[RunItem]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = ", ".join(job.notify_emails)
    message["Subject"] = f"[Billing Scheduler] {job.name}: run {run.id} {run.status}"
    lines = [
        f"Job: {job.name} (id {job.id}, type {job.job_type})",
        f"Run: {run.id} ({run.trigger}), status {run.status}",
        f"Events: {', '.join(events)}",
        f"Outcome: {outcome_line(run.status, run.summary, run.error)}",
    ]
    if run.scheduled_for:
        lines.append(f"Scheduled for: {run.scheduled_for.isoformat()}")
    if REVIEW_BLOCKING in events:
        lines.append("This preview awaits review: the job skips its scheduled ticks until it is submitted or "
                     "deleted.")
    if run.error:
        lines.append(f"Error: {run.error}")
    counts = {k: v for k, v in run.summary.items() if k != "notify_events"}
    if counts:
        lines.append("")
        lines.append("Counts:")
        lines.extend(f"  {key}: {value}" for key, value in counts.items())
    if errors:
        lines.append("")
        lines.append(f"Errors (first {len(errors)}):")
        lines.extend(f"  {item.item_key}: {item_error_text(item.detail)}" for item in errors)
    message.set_content("\n".join(lines) + "\n")
    return message


def notify_run(*, settings: Settings, session: Session, run_id: int, events: list[str] | None = None) -> bool:
    """Mail the job's recipients when the run's status (or ``events``) raises an event they chose; ``True`` when
    sent. A preview blocking its job's schedule (``review_blocking``) also reaches those who chose ``preview_ready``.

    Mail is best effort: an unreachable SMTP server is logged in one line and never fails the run.
    """
    run = session.get(JobRun, run_id)
    if run is None:
        return False
    job = session.get(Job, run.job_id)
    if job is None or not job.notify_emails or not settings.smtp_url:
        return False
    chosen = set(job.notify_on) | ({REVIEW_BLOCKING} if STATUS_EVENTS[RunStatus.PREVIEW] in job.notify_on else set())
    events = [e for e in (events_for(run) if events is None else events) if e in chosen]
    if not events:
        return False
    errors = list(
        session.scalars(
            select(RunItem)
            .where(col(RunItem.run_id) == run_id, col(RunItem.outcome) == "error")
            .order_by(col(RunItem.id))
            .limit(ERRORS_SHOWN)
        )
    )
    message = build_message(settings, job, run, events, errors)
    session.rollback()  # the reads are done: on SQLite an open transaction holds the one write lock
    try:
        send(SmtpTarget.parse(settings.smtp_url), message)
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        log.warning("notification for run %s not sent (SCHEDULER_SMTP_URL): %s", run_id, exc)
        return False
    log.info("notified %s of run %s: %s", message["To"], run_id, ", ".join(events))
    return True


def send(target: SmtpTarget, message: EmailMessage) -> None:
    smtp_class = smtplib.SMTP_SSL if target.ssl else smtplib.SMTP
    with smtp_class(target.host, target.port, timeout=10) as smtp:
        if target.starttls:
            smtp.starttls()
        if target.username:
            smtp.login(target.username, target.password or "")
        smtp.send_message(message)
