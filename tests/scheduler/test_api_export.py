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
from scheduler.models import JobRun, RunChunk, RunItem
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


def _finish(engine: Engine, run_id: int, summary: dict[str, object], items: list[tuple[str, str, dict[str, object]]],
            ) -> None:
    with Session(engine) as session:
        session.execute(update(JobRun).where(col(JobRun.id) == run_id).values(
            status="INCOMPLETE", finished_at=datetime(2026, 6, 1, 13, tzinfo=UTC), summary=summary))
        for n, (key, outcome, detail) in enumerate(items):
            session.add(RunItem(run_id=run_id, chunk_no=0, item_key=key, outcome=outcome, detail=detail))
            session.add(RunChunk(run_id=run_id, chunk_no=n, items=1, evaluated_at=datetime(2026, 6, 1, tzinfo=UTC),
                                 applied_at=datetime(2026, 6, 1, tzinfo=UTC)))
        session.commit()


SUMMARY = {"accounts_evaluated": 1204, "fees_total": "2500.000000", "by_tier": {"1": 3, "2": 1},
           "collectors": ["invoices", "payments"], "items": {"ok": 1, "error": 1},
           "written_off": {"amount": "1250.5", "currency": "JPY"}, "status": "=shadow"}


def test_a_run_answer_shows_its_money_with_currency_separators_and_decimals(client: TestClient, engine: Engine,
                                                                           ) -> None:
    run = create_run(client, create_job(client)["id"])
    _finish(engine, run["id"], SUMMARY, [])
    for answer in (client.get(f"/api/v1/runs/{run['id']}").json(), client.get("/api/v1/runs").json()["items"][0]):
        assert [(a["field"], a["amount"], a["currency"], a["display"]) for a in answer["amounts"]] == [
            ("fees_total", "2500.00", "USD", "USD 2,500.00"), ("written_off", "1251", "JPY", "JPY 1,251")]
        assert answer["progress"]["records_done"] == 2 and answer["progress"]["records_total"] == 2


def test_the_run_export_has_one_column_per_summary_field(client: TestClient, engine: Engine) -> None:
    run = create_run(client, create_job(client)["id"])
    _finish(engine, run["id"], SUMMARY, [])
    [row] = _rows(client.get("/api/v1/runs?format=csv"))
    assert "summary" not in row
    assert row["status"] == "INCOMPLETE" and row["summary.status"] == "'=shadow"
    assert row["accounts_evaluated"] == "1204" and row["by_tier.1"] == "3" and row["by_tier.2"] == "1"
    assert row["fees_total"] == "2500.00" and row["fees_total_currency"] == "USD"
    assert row["written_off"] == "1251" and row["written_off_currency"] == "JPY"
    assert row["items.ok"] == "1" and row["collectors"] == "invoices, payments"


def test_a_runs_items_export_filtered_by_outcome_with_neutralised_cells(client: TestClient, engine: Engine) -> None:
    run = create_run(client, create_job(client)["id"])
    _finish(engine, run["id"], SUMMARY, [
        ("A-1", "ok", {"fee_amount": "25", "tier": 2}),
        ("=A-2", "error", {"error": "@refused", "fee_amount": "-1234.5", "key": "shadow"}),
    ])
    rows = _rows(client.get(f"/api/v1/runs/{run['id']}/items?format=csv"))
    assert [r["key"] for r in rows] == ["A-1", "'=A-2"]
    [failed] = _rows(client.get(f"/api/v1/runs/{run['id']}/items?format=csv&outcome=ERROR"))
    assert failed["outcome"] == "error" and failed["error"] == "'@refused" and failed["detail.key"] == "shadow"
    assert failed["fee_amount"] == "-1234.50" and failed["fee_amount_currency"] == "USD"
    page = client.get(f"/api/v1/runs/{run['id']}/items?outcome=error").json()["items"]
    assert [a["display"] for a in page[0]["amounts"]] == ["USD -1,234.50"]
    assert_error(client.get("/api/v1/runs/999999/items?format=csv"), 404, "run_not_found")


def test_money_totals_per_currency_are_listed_and_exported_per_currency(client: TestClient, engine: Engine) -> None:
    run = create_run(client, create_job(client)["id"])
    _finish(engine, run["id"], {"fees_total": "2500.5", "write_offs": 2, "money": {
        "EUR": {"late_fees": "2500", "write_offs": "0"}, "JPY": {"late_fees": "1250.5"}}}, [])
    answer = client.get(f"/api/v1/runs/{run['id']}").json()
    assert [(a["field"], a["name"], a["display"]) for a in answer["amounts"]] == [
        ("money", "late_fees", "EUR 2,500.00"), ("money", "write_offs", "EUR 0.00"),
        ("money", "late_fees", "JPY 1,251")]
    [row] = _rows(client.get("/api/v1/runs?format=csv"))
    assert row["money.EUR.late_fees"] == "2500.00" and row["money.JPY.late_fees"] == "1251"
    assert row["write_offs"] == "2" and row["fees_total"] == "2500.5" and "fees_total_currency" not in row


def test_bare_amounts_take_the_one_currency_of_the_money_totals(client: TestClient, engine: Engine) -> None:
    run = create_run(client, create_job(client)["id"])
    _finish(engine, run["id"], {"fees_total": "2500", "money": {"EUR": {"late_fees": "2500"}}}, [])
    answer = client.get(f"/api/v1/runs/{run['id']}").json()
    assert [(a["field"], a["name"], a["display"]) for a in answer["amounts"]] == [
        ("money", "late_fees", "EUR 2,500.00"), ("fees_total", "fees_total", "EUR 2,500.00")]
    [row] = _rows(client.get("/api/v1/runs?format=csv"))
    assert row["fees_total"] == "2500.00" and row["fees_total_currency"] == "EUR"
