"""Bad input is a 4xx that names the field, never a 500: ids, integers, text, dates, cursors, sizes, names.

Each case is one the issue found as a server error (on SQLite, PostgreSQL or both), and runs on both.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine, text
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    build_client,
    client_fixture,
    count,
    create_job,
    job_body,
    live_dispatcher_fixture,
)

from scheduler.clock import FrozenClock
from scheduler.dispatch import Dispatcher
from scheduler.migrate import alembic_config, upgrade
from scheduler.models import Job, JobRun
from scheduler.settings import Settings
from workers.dunning.properties import DunningRunProperties
from workers.erp.properties import ErpProperties, ErpRunProperties
from workers.gl.properties import GLRunProperties
from workers.mediation.properties import MediationRunProperties

BEYOND_INT4 = 2**31


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _names_field(body: dict[str, Any], field: str) -> bool:
    """The error names the field: in ``details.field``, in a validation error's location, or in the message."""
    details = body["details"]
    locations = [".".join(str(p) for p in e["loc"]) for e in details.get("errors", [])]
    return details.get("field") == field or any(field in loc for loc in locations) or field in body["message"]


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("get", f"/api/v1/jobs/{BEYOND_INT4}", None, "job_id"),
    ("get", f"/api/v1/runs/{10**30}", None, "run_id"),
    ("get", f"/api/v1/runs/{BEYOND_INT4}/items", None, "run_id"),
    ("post", f"/api/v1/keys/{BEYOND_INT4}/revoke", None, "key_id"),
    ("get", f"/api/v1/runs?job_id={BEYOND_INT4}", None, "job_id"),
    ("post", "/api/v1/runs", {"job_id": BEYOND_INT4}, "job_id"),
    ("post", "/api/v1/jobs", job_body(catchup_window=BEYOND_INT4), "catchup_window"),
    ("post", "/api/v1/jobs", job_body(max_runtime=BEYOND_INT4), "max_runtime"),
    ("post", "/api/v1/jobs", job_body(name="night\x00ly"), "name"),
    ("post", "/api/v1/jobs", job_body(name="two\nlines"), "name"),
    ("post", "/api/v1/jobs", job_body(description="\x00"), "description"),
    ("post", "/api/v1/jobs", job_body(timezone="UTC\x00"), "timezone"),
    ("post", "/api/v1/jobs", job_body(properties={"threshold": 5, "label": "x\x00"}), "properties.label"),
    ("post", "/api/v1/jobs", job_body(properties={"threshold": 5, "\x00": 1}), "properties"),
    ("post", "/api/v1/jobs", job_body(notify_emails=[f"a{n}@example.com" for n in range(51)]), "notify_emails"),
    ("post", "/api/v1/keys", {"name": "k\x00"}, "name"),
    ("get", "/api/v1/runs?created_from=0001-01-01T00:00:00%2B05:00", None, "created_from"),
    ("get", "/api/v1/runs?created_to=9999-12-31T23:59:59-05:00", None, "created_to"),
    ("get", "/api/v1/runs?created_from=1899-12-31T23:59:59Z", None, "created_from"),
    ("get", "/api/v1/jobs?limit=1001", None, "limit"),
    ("get", "/api/v1/jobs?job_type=" + "x" * 65, None, "job_type"),
    ("get", "/api/v1/runs?job_type=dunning%00", None, "job_type"),
    ("get", "/api/v1/runs?cursor=" + "1" * 5000, None, "cursor"),
])
def test_out_of_range_and_unstorable_values_are_422_naming_the_field(
    client: TestClient, engine: Engine, method: str, path: str, body: dict[str, Any] | None, field: str
) -> None:
    answer = assert_error(client.request(method.upper(), path, json=body), 422)
    assert _names_field(answer, field), answer
    assert count(engine, Job) == 0 and count(engine, JobRun) == 0


@pytest.mark.parametrize("cursor", [
    "²", "٣", "1" * 11, str(BEYOND_INT4), "0", "-1", "1\n", " 1",
])
def test_odd_id_cursors_are_400(client: TestClient, cursor: str) -> None:
    for path in ("/api/v1/jobs", "/api/v1/runs/1/items"):
        answer = assert_error(client.get(path, params={"cursor": cursor}), 400, "invalid_cursor")
        assert answer["details"]["field"] == "cursor"


@pytest.mark.parametrize("cursor", [
    _cursor(["0001-01-01T00:00:00+05:00", 1]),
    _cursor(["9999-12-31T23:59:59-05:00", 1]),
    _cursor(["2026-06-01T12:00:00", 1]),
    _cursor(["2026-06-01T12:00:00+00:00", BEYOND_INT4]),
    _cursor(["2026-06-01T12:00:00+00:00", 1.5]),
    base64.urlsafe_b64encode(b'["2026-06-01T12:00:00+00:00", 1e400]').decode().rstrip("="),
    _cursor({"a": 1}),
    "²",
    "Zm9v=",
])
def test_runs_cursors_the_api_did_not_issue_are_400(client: TestClient, cursor: str) -> None:
    answer = assert_error(client.get("/api/v1/runs", params={"cursor": cursor}), 400, "invalid_cursor")
    assert answer["details"]["field"] == "cursor"


def test_dates_outside_the_supported_years_are_refused(client: TestClient, engine: Engine) -> None:
    job = create_job(client)
    for start in ("0001-01-01T00:00:00+05:00", "1899-12-31T23:00:00Z"):
        answer = assert_error(client.post(f"/api/v1/jobs/{job['id']}/backfill",
                                          json={"start": start, "end": "2026-05-01T00:00:00Z"}), 422)
        assert _names_field(answer, "start") and "1900" in answer["message"]
    assert count(engine, JobRun) == 0


@pytest.mark.parametrize(("model", "values"), [
    (DunningRunProperties, {"as_of": "9999-12-31"}),
    (DunningRunProperties, {"account_numbers": ["A" * 33]}),
    (GLRunProperties, {"as_of": "0001-01-01T00:00:00+05:00"}),
    (ErpRunProperties, {"date_from": "0001-01-01"}),
    (ErpRunProperties, {"bill_cycle_run_id": BEYOND_INT4}),
    (ErpProperties, {"dataset": "invoices", "target": {"kind": "file", "directory": "out"},
                     "inception_date": "3000-01-01"}),
    (MediationRunProperties, {"files": ["f" * 256]}),
])
def test_job_type_properties_are_bounded_too(model: type[BaseModel], values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(values)


def test_json_values_that_cannot_be_stored_are_refused(client: TestClient, engine: Engine) -> None:
    body = json.dumps(job_body()).replace('"threshold": 5', '"threshold": 5, "label": NaN')
    answer = assert_error(client.post("/api/v1/jobs", content=body, headers={"Content-Type": "application/json"}),
                          422, "invalid_value")
    assert answer["details"]["field"] == "properties.label" and "finite" in answer["message"]
    job = create_job(client)
    answer = assert_error(client.post("/api/v1/runs", json={"job_id": job["id"], "run_properties": {"a\x00": 1}}),
                          422, "invalid_value")
    assert answer["details"]["field"] == "run_properties"
    answer = assert_error(client.post(f"/api/v1/jobs/{job['id']}/pause", json={"note": "why\x00"}), 422)
    assert _names_field(answer, "note")
    assert count(engine, JobRun) == 0


def test_a_database_refusal_is_a_4xx_backstop_not_a_500(client: TestClient, engine: Engine) -> None:
    # Given routes that reach the database with what validation would normally have refused
    app = client.app
    assert isinstance(app, FastAPI)

    def orphan_run() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO job_run (job_id, job_type, trigger, status, preview, run_properties, "
                              "created_by, created_at, attempt, chunks_total, chunks_done, summary) VALUES "
                              "(424242, 'fake', 'MANUAL', 'CREATED', false, '{}', 'x', '2026-01-01', 0, 0, 0, '{}')"))

    def bad_number() -> None:
        with engine.begin() as conn:
            conn.execute(text("SELECT CAST('x' AS INTEGER)"))

    app.add_api_route("/orphan", orphan_run, methods=["POST"])
    app.add_api_route("/bad-number", bad_number)
    quiet = TestClient(app, raise_server_exceptions=False, headers=dict(client.headers))
    # Then a constraint is a 409 and (on PostgreSQL, which checks types) a bad value a 422, in the error shape
    assert_error(quiet.post("/orphan"), 409, "conflict")
    if engine.dialect.name == "postgresql":
        assert_error(quiet.get("/bad-number"), 422, "invalid_value")


@pytest.fixture(name="small_client")
def small_client_fixture(
    settings: Settings, engine: Engine, clock: FrozenClock, live_dispatcher: Dispatcher
) -> Iterator[TestClient]:
    """The app with small limits: 4 KiB bodies, 1 KiB properties, exports of 3 runs."""
    small = settings.model_copy(update={"max_request_bytes": 4096, "max_properties_bytes": 1024,
                                        "max_export_rows": 3})
    yield build_client(settings=small, engine=engine, clock=clock, dispatcher=live_dispatcher)


def test_request_bodies_over_the_limit_are_413_even_when_chunked(small_client: TestClient, engine: Engine) -> None:
    big = job_body(description="x" * 5000)
    answer = assert_error(small_client.post("/api/v1/jobs", json=big), 413, "payload_too_large")
    assert answer["details"] == {"limit_bytes": 4096} and "SCHEDULER_MAX_REQUEST_BYTES" in answer["message"]

    def chunks() -> Iterator[bytes]:
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 1000):
            yield payload[start:start + 1000]

    # No Content-Length: the body is counted while it is read
    chunked = small_client.post("/api/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(chunked, 413, "payload_too_large")
    assert count(engine, Job) == 0
    assert small_client.post("/api/v1/jobs", json=job_body()).status_code == 201


def test_properties_over_the_limit_are_422(small_client: TestClient, engine: Engine) -> None:
    answer = assert_error(small_client.post("/api/v1/jobs", json=job_body(properties={"threshold": 5,
                                                                                     "label": "y" * 1100})),
                          422, "invalid_value")
    assert answer["details"]["field"] == "properties" and answer["details"]["limit_bytes"] == 1024
    assert count(engine, Job) == 0


@pytest.mark.parametrize(("first", "second"), [
    ("Nightly dunning", "nightly DUNNING"),
    ("Caf\u00e9 accounts", "Cafe\u0301 accounts"),
    ("Stra\u00dfe", "STRASSE"),
    ("  Month end  ", "month end"),
])
def test_job_names_are_unique_ignoring_case_and_unicode_form(
    client: TestClient, engine: Engine, first: str, second: str
) -> None:
    original = create_job(client, name=first)
    answer = assert_error(client.post("/api/v1/jobs", json=job_body(name=second)), 409, "job_name_taken")
    assert answer["details"]["field"] == "name"
    assert count(engine, Job) == 1
    # An archived name is free again, in any spelling
    client.post(f"/api/v1/jobs/{original['id']}/archive")
    assert create_job(client, name=second)["name"] == second.strip()


def test_the_migration_keeps_live_jobs_whose_names_collide(engine: Engine) -> None:
    # Given a database before name keys, with two live jobs that differ only in case, and an archived one
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "b7e41d2c9f30")
    with engine.begin() as conn:
        for job_id, name, status in ((1, "Billing", "ACTIVE"), (2, "billing", "PAUSED"), (3, "BILLING", "ARCHIVED")):
            conn.execute(text("INSERT INTO job (id, name, job_type, status, description, timezone, properties, "
                              "notify_emails, notify_on, can_run_manual, requires_review, misfire_policy, "
                              "catchup_window, max_catchup_runs, overlap_policy, created_at, created_by) VALUES "
                              "(:id, :name, 'fake', :status, '', 'UTC', '{}', '[]', '[]', true, false, 'ONCE', 0, 1, "
                              "'SKIP', '2026-01-01', 'x')"), {"id": job_id, "name": name, "status": status})
    # When it is migrated
    upgrade(engine)
    # Then every job is kept, and the later live one gets a key of its own
    with engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT id, name_key FROM job ORDER BY id")).all())
    assert keys == {1: "billing", 2: "billing#2", 3: "billing"}
