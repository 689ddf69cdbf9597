"""Structured logs: what a worker logs while it works on a run carries the run's and the job's ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from workers_testkit import Drain

from scheduler.logs import JsonFormatter, RunFields, add_run_fields, run_fields
from scheduler.models import Job


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every record, as the JSON line a container would print (``SCHEDULER_LOG_FORMAT=json``)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RunFields())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_runs_steps_log_its_run_and_job_ids(
    json_lines: io.StringIO, make_job: Callable[..., Job], start_run: Callable[..., int], drain: Drain,
) -> None:
    job = make_job()
    run_id = start_run(job)
    drain()
    logging.getLogger("after").info("outside any run")
    lines = records(json_lines)
    steps = [r for r in lines if str(r["logger"]).startswith("workers.")]
    assert steps, lines
    assert {(r["run_id"], r["job_id"], r["job_type"]) for r in steps} == {(run_id, job.id, job.job_type)}
    assert all("request_id" not in r for r in steps)  # not created by an API request
    assert any(str(r["message"]).startswith(f"run {run_id}: COMPLETED") for r in steps)
    assert "run_id" not in lines[-1] and lines[-1]["message"] == "outside any run"


def test_fields_nest_and_end_with_their_block(json_lines: io.StringIO) -> None:
    log = logging.getLogger("fields")
    add_run_fields(job_id=1)  # outside any block: nothing to add to
    with run_fields(run_id=7):
        add_run_fields(job_id=3)
        with run_fields(chunk_no=2):
            log.info("inner")
        log.info("outer", extra={"run_id": 8})  # an explicit extra wins
    log.info("after")
    assert [{k: r.get(k) for k in ("run_id", "job_id", "chunk_no")} for r in records(json_lines)] == [
        {"run_id": 7, "job_id": 3, "chunk_no": 2},
        {"run_id": 8, "job_id": 3, "chunk_no": None},
        {"run_id": None, "job_id": None, "chunk_no": None},
    ]
