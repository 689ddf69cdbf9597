"""Log lines that help at 3 a.m.: every JSON line says which process, where and which version; the API's
answers and log lines carry the request id, and a run created by a request keeps it."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    client_fixture,
    create_job,
    live_dispatcher_fixture,
)

from scheduler.logs import configure_logging, package_version, run_fields
from scheduler.models import JobRun
from scheduler.settings import Settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_json_lines_name_the_process_and_the_work_in_hand(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(log_format="json"), service="worker:dunning")
    log = logging.getLogger("workers.test")
    with run_fields(run_id=7, job_id=3, job_type="dunning", request_id="req-1"):
        log.info("run %s: step done", 7)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("outside any run")

    step, failure = lines(capsys.readouterr().err)
    assert step["message"] == "run 7: step done" and step["level"] == "INFO" and step["logger"] == "workers.test"
    assert (step["service"], step["pid"], step["host"]) == ("worker:dunning", os.getpid(), socket.gethostname())
    assert step["version"] == package_version() != "unknown"
    assert str(step["timestamp"]).endswith("+00:00")
    assert {k: step[k] for k in ("run_id", "job_id", "job_type", "request_id")} == {
        "run_id": 7, "job_id": 3, "job_type": "dunning", "request_id": "req-1"}
    assert "run_id" not in failure and "ValueError: boom" in str(failure["exc"])


def test_text_lines_stay_readable_and_end_with_the_ids(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(log_format="text", log_service="beat-7"), service="beat")
    with run_fields(run_id=9, job_id=2):
        logging.getLogger("beat.service").info("run %s sent", 9)
    line = capsys.readouterr().err.strip()
    assert line.endswith("INFO beat-7 beat.service: run 9 sent [run_id=9 job_id=2]"), line
    assert not line.startswith("{")


@pytest.mark.parametrize(("given", "kept"), [
    ("abc-123.x:y_z", True),
    ("a" * 128, True),
    ("a" * 129, False),
    ("evil\"injected", False),
    ("", False),
])
def test_the_request_id_is_returned_and_kept_with_the_run_only_when_safe(
    client: TestClient, engine: Engine, given: str, kept: bool,
) -> None:
    # Given a job
    job = create_job(client)

    # When a manual run is requested with that X-Request-Id
    answer = client.post("/api/v1/runs", json={"job_id": job["id"]}, headers={"X-Request-Id": given})

    # Then the answer carries the id (the caller's when safe, else a new one), and so does the run
    assert answer.status_code == 201, answer.text
    rid = answer.headers["X-Request-Id"]
    assert (rid == given) is kept and 1 <= len(rid) <= 128
    assert answer.json()["request_id"] == rid
    with Session(engine) as session:
        assert session.get(JobRun, answer.json()["id"]).request_id == rid  # type: ignore[union-attr]


def test_every_answer_has_a_request_id_errors_included(client: TestClient) -> None:
    answers = [client.get("/api/v1/runs/999999"), client.get("/no/such/path"),
               client.post("/api/v1/runs", json={"job_id": "x"})]
    assert [a.status_code for a in answers] == [404, 404, 422]
    ids = [a.headers["X-Request-Id"] for a in answers]
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
    assert client.get("/healthz", headers={"X-Request-Id": "probe-1"}).headers["X-Request-Id"] == "probe-1"


def test_lines_go_to_the_stderr_of_the_moment(restore_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # A forked Dramatiq worker process points stderr at its pool's pipe after logging was set up
    configure_logging(Settings(log_format="json"), service="worker:dunning")
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    logging.getLogger("dramatiq.WorkerProcess(0)").info("Worker process is ready for action.")
    assert json.loads(pipe.getvalue())["message"] == "Worker process is ready for action."
