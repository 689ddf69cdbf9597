"""The CSV export: one snapshot built before the first byte, formula cells neutralised, bounded in size."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, text, update
from sqlmodel import Session, col
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    build_client,
    client_fixture,
    create_job,
    create_run,
    live_dispatcher_fixture,
)

from scheduler.api.export import safe_cell
from scheduler.clock import FrozenClock
from scheduler.dispatch import Dispatcher
from scheduler.models import JobRun
from scheduler.settings import Settings


def _rows(answer: object) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(answer.text)))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+1+1", "'+1+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("-12.50", "'-12.50"), ("plain", "plain"), ("a=b", "a=b"), (None, ""),
    (Decimal("-12.50"), Decimal("-12.50")), (-3, -3), (True, True),
])
def test_text_cells_a_spreadsheet_would_run_get_a_quote_numbers_stay_numbers(value: object, cell: object) -> None:
    assert safe_cell(value) == cell


def test_the_export_neutralises_formula_cells(client: TestClient, engine: Engine) -> None:
    job = create_job(client, name="=HYPERLINK(\"http://evil.example\",\"open\")")
    run = create_run(client, job["id"])
    with Session(engine) as session:
        session.execute(update(JobRun).where(col(JobRun.id) == run["id"])
                        .values(error="-1+cmd|' /C calc'!A0", worker="@worker-1", attempt=2))
        session.commit()
    [row] = _rows(client.get("/api/v1/runs?format=csv"))
    assert row["job_name"] == "'=HYPERLINK(\"http://evil.example\",\"open\")"
    assert row["error"] == "'-1+cmd|' /C calc'!A0" and row["worker"] == "'@worker-1"
    assert row["attempt"] == "2" and row["id"] == str(run["id"])


@pytest.fixture(name="small_export_client")
def small_export_client_fixture(
    settings: Settings, engine: Engine, clock: FrozenClock, live_dispatcher: Dispatcher
) -> TestClient:
    small = settings.model_copy(update={"max_export_rows": 3})
    return build_client(settings=small, engine=engine, clock=clock, dispatcher=live_dispatcher)


def test_an_export_over_the_row_limit_is_a_json_error(small_export_client: TestClient) -> None:
    job = create_job(small_export_client)
    for _ in range(4):
        create_run(small_export_client, job["id"])
    answer = assert_error(small_export_client.get("/api/v1/runs?format=csv"), 422, "export_too_large")
    assert answer["details"] == {"rows": 4, "limit": 3}
    assert len(_rows(small_export_client.get(f"/api/v1/runs?format=csv&job_id={job['id']}&status=FAILED"))) == 0


def test_an_error_while_reading_is_a_json_error_not_a_cut_file(
    tmp_path: Path, sqlite_url: str, sqlite_engine: Engine, clock: FrozenClock, live_dispatcher: Dispatcher
) -> None:
    # Given more runs than one page, the oldest of which the database cannot give back (SQLite keeps any text)
    settings = Settings(data_dir=tmp_path / "data", database_url=sqlite_url)
    client = build_client(settings=settings, engine=sqlite_engine, clock=clock, dispatcher=live_dispatcher)
    job = create_job(client)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with Session(sqlite_engine) as session:
        session.add_all([JobRun(job_id=job["id"], job_type="fake", created_at=base + timedelta(seconds=n))
                         for n in range(1005)])
        session.commit()
    with sqlite_engine.begin() as conn:
        conn.execute(text("UPDATE job_run SET started_at = 'not a time' WHERE id = 1"))
    # When it is exported
    answer = TestClient(client.app, raise_server_exceptions=False, headers=dict(client.headers)).get(
        "/api/v1/runs?format=csv")
    # Then the answer is an error in the error shape, not a 200 with the pages read so far
    assert_error(answer, 500, "internal_error")
    assert answer.headers["content-type"].startswith("application/json")
