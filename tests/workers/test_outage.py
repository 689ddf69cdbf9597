"""Database outages in a worker: a step cut off by a lost connection is run again, not failed; one log line
per outage each way."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError
from workers_testkit import Drain, RecordingDispatcher

from scheduler.errors import JobNotFound
from scheduler.models import Job, JobRun, RunStatus
from workers.dunning import DunningJobType
from workers.runtime.env import WorkerEnv
from workers.runtime.executor import execute_step
from workers.runtime.outage import database_outage, is_database_outage, ride_out
from workers.runtime.steps import REQUEST_RETRIES, _retry_request

REFUSED = OperationalError("SELECT 1", {}, Exception("connection refused"))


def test_what_counts_as_an_outage() -> None:
    assert is_database_outage(REFUSED)
    assert not is_database_outage(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_database_outage(OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x")))
    assert is_database_outage(OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked")))
    assert not is_database_outage(RuntimeError("connection refused"))


def test_a_request_run_message_cut_off_by_an_outage_is_retried_then_dead_lettered() -> None:
    # Dramatiq asks before each retry: only an outage is retried (a refusal is recorded, never raised)
    assert _retry_request(0, REFUSED) and _retry_request(REQUEST_RETRIES - 1, REFUSED)
    assert not _retry_request(REQUEST_RETRIES, REFUSED)
    assert not _retry_request(0, JobNotFound("x")) and not _retry_request(0, RuntimeError("a bug"))


def test_a_step_waits_out_an_outage_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[int] = []
    naps: list[float] = []

    def step() -> None:
        attempts.append(1)
        if len(attempts) <= 4:
            raise REFUSED

    outage = database_outage()
    with caplog.at_level(logging.INFO, logger="workers"):
        assert ride_out(step, what="run 1: plan step", outage=outage, sleep=naps.append)
    assert len(attempts) == 5 and naps == [0.5, 1.0, 2.0, 4.0]
    assert [r.levelname for r in caplog.records] == ["ERROR", "INFO"]
    assert "database unreachable" in caplog.records[0].getMessage()
    assert "database reachable again" in caplog.records[1].getMessage()


def test_a_step_under_way_when_the_outage_is_noticed_does_not_end_it(caplog: pytest.LogCaptureFixture) -> None:
    # Given one thread's step in flight while another thread meets the cut
    outage = database_outage()
    before_the_cut = time.monotonic()
    with caplog.at_level(logging.INFO, logger="workers.runtime.outage"):
        outage.failed(str(REFUSED))
        # When the step that began before the outage was noticed completes (its work got in just before)
        outage.recovered(attempt_started=before_the_cut)
        # Then the outage goes on: no "reachable again", no second "unreachable" from the next failure
        assert outage.down
        outage.failed(str(REFUSED))
        # and a step begun since, once the database answers, ends it
        outage.recovered(attempt_started=time.monotonic())
    assert not outage.down
    assert [r.getMessage().split(" (")[0].split(" after")[0] for r in caplog.records] == [
        "database unreachable", "database reachable again"]


def test_other_errors_propagate_and_a_long_outage_is_left_to_beat() -> None:
    def broken() -> None:
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        ride_out(broken, what="step", outage=database_outage(), sleep=lambda _: None)

    def down() -> None:
        raise REFUSED

    assert not ride_out(down, what="step", outage=database_outage(), patience=0.0, sleep=lambda _: None)


def test_an_outage_during_apply_is_not_an_item_error(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    dispatcher: RecordingDispatcher, drain: Drain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a run whose first apply step loses the database
    original = DunningJobType.apply
    failures = {"left": 1}

    def flaky(self: DunningJobType, ctx: Any, chunk_no: int, spec: dict[str, Any]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise REFUSED
        original(self, ctx, chunk_no, spec)

    monkeypatch.setattr(DunningJobType, "apply", flaky)
    run_id = start_run(make_job())
    while dispatcher.steps and dispatcher.steps[0][1].phase != "apply":
        _, step = dispatcher.steps.popleft()
        execute_step(env, step.run_id, step.phase, step.chunk_no)

    # When the step fails with the outage, it raises (for the worker to run it again) and records nothing
    _, step = dispatcher.steps[0]
    with pytest.raises(OperationalError):
        execute_step(env, step.run_id, step.phase, step.chunk_no)

    # Then, run again once the database is back, the run completes with no errored item
    drain()
    with env.factory() as session:
        run = session.get(JobRun, run_id)
        assert run is not None
    assert run.status == RunStatus.COMPLETED, run.error
    assert "error" not in run.summary["items"]
