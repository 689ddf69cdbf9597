"""Notifications go through a real SMTP server (aiosmtpd) and say what a finance user needs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mailkit import Inbox, free_port, smtp_server
from sqlalchemy.orm import Session

from scheduler.models import Job, JobRun, RunItem, RunStatus
from scheduler.notify import SmtpTarget, notify_run
from scheduler.settings import Settings


@pytest.fixture
def session(sqlite_engine: Any) -> Iterator[Session]:
    """Mail formatting does not depend on the database: SQLite is enough here."""
    with Session(sqlite_engine) as s:
        yield s


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


def _job_and_run(session: Session, *, status: RunStatus, notify_on: list[str]) -> int:
    job = Job(name="Month-end dunning", job_type="dunning", notify_emails=["ar@example.com", "cfo@example.com"],
              notify_on=notify_on)
    session.add(job)
    session.flush()
    assert job.id is not None
    run = JobRun(job_id=job.id, job_type="dunning", status=status, error=None,
                 summary={"accounts_evaluated": 120, "escalated": 7})
    session.add(run)
    session.flush()
    assert run.id is not None
    session.add(RunItem(run_id=run.id, item_key="ACC-0042", outcome="error", detail={"reason": "account closed"}))
    session.add(RunItem(run_id=run.id, item_key="ACC-0043", outcome="ok", detail={}))
    session.commit()
    return run.id


def _settings(tmp_path: Path, port: int) -> Settings:
    return Settings(data_dir=tmp_path, smtp_url=f"smtp://127.0.0.1:{port}", mail_from="billing@example.com")


def test_incomplete_run_mails_counts_and_errors(session: Session, smtp: tuple[Inbox, int], tmp_path: Path) -> None:
    inbox, port = smtp
    run_id = _job_and_run(session, status=RunStatus.INCOMPLETE, notify_on=["incomplete"])

    assert notify_run(settings=_settings(tmp_path, port), session=session, run_id=run_id)

    [mail] = inbox.messages
    assert mail["To"] == "ar@example.com, cfo@example.com"
    assert mail["Subject"] == f"[Billing Scheduler] Month-end dunning: run {run_id} INCOMPLETE"
    body = mail.get_payload()
    assert isinstance(body, str)
    assert "escalated: 7" in body
    assert "ACC-0042: account closed" in body
    assert "ACC-0043" not in body


def test_event_not_chosen_sends_nothing(session: Session, smtp: tuple[Inbox, int], tmp_path: Path) -> None:
    inbox, port = smtp
    run_id = _job_and_run(session, status=RunStatus.COMPLETED, notify_on=["failed"])
    assert not notify_run(settings=_settings(tmp_path, port), session=session, run_id=run_id)
    assert inbox.messages == []


def test_preview_ready_is_an_event(session: Session, smtp: tuple[Inbox, int], tmp_path: Path) -> None:
    inbox, port = smtp
    run_id = _job_and_run(session, status=RunStatus.PREVIEW, notify_on=["preview_ready"])
    assert notify_run(settings=_settings(tmp_path, port), session=session, run_id=run_id)
    assert "PREVIEW" in inbox.messages[0]["Subject"]


def test_unreachable_smtp_never_raises(session: Session, tmp_path: Path) -> None:
    run_id = _job_and_run(session, status=RunStatus.FAILED, notify_on=["failed"])
    assert not notify_run(settings=_settings(tmp_path, free_port()), session=session, run_id=run_id)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail:2525", SmtpTarget(host="mail", port=2525, username=None, password=None, ssl=False,
                                        starttls=False)),
        ("smtps://u%40x:p%2Fw@mail", SmtpTarget(host="mail", port=465, username="u@x", password="p/w", ssl=True,
                                                starttls=False)),
        ("smtp://mail?starttls=1", SmtpTarget(host="mail", port=25, username=None, password=None, ssl=False,
                                              starttls=True)),
    ],
)
def test_smtp_url_parsing(url: str, expected: SmtpTarget) -> None:
    assert SmtpTarget.parse(url) == expected


def test_bad_smtp_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="SCHEDULER_SMTP_URL"):
        SmtpTarget.parse("http://mail")
