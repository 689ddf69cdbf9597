"""Which records a run takes: rolling ranges of scheduled runs, the job's inception date, GL journal by bill cycle."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from erp_testkit import (
    Ledger,
    add_invoices,
    delivered,
    make_job,
    run_row,
    seed_ledger,
    start_manual,
    start_scheduled,
)
from sqlalchemy import Engine, insert
from workers_testkit import Drain

from scheduler.clock import FrozenClock
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import RunStatus
from workers.billing.gl_tables import gl_entries
from workers.erp import JOB_TYPE
from workers.runtime.env import WorkerEnv

S = RunStatus
OUTBOX = {"kind": "file", "directory": "erp/outbox"}


@pytest.fixture
def registry() -> JobTypeRegistry:
    """Just this job type, so the tests do not depend on the other types installed."""
    return JobTypeRegistry([JOB_TYPE])


@pytest.fixture
def ledger(billing_engine: Engine) -> Ledger:
    return seed_ledger(billing_engine)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sent_numbers(env: WorkerEnv, run_id: int) -> list[str]:
    outbox = env.settings.resolved_files_root / "erp" / "outbox"
    return [
        record.get("number") or record["id"]
        for path in sorted(outbox.glob(f"*-{run_id}-*.json"))
        for record in json.loads(path.read_text())["records"]
    ]


def scope_of(env: WorkerEnv, run_id: int) -> tuple[str, str | None, str | None]:
    summary = run_row(env, run_id).summary
    return summary["range_kind"], summary["range_start"], summary["range_end"]


def test_scheduled_runs_roll_on_from_the_last_completed_run(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain,
) -> None:
    # Given a job scheduled every 10 minutes with an inception date of May 1
    job = make_job(env, clock, target=OUTBOX, cron="*/10 * * * *", inception_date="2026-05-01")
    # The first run takes inception .. its own date
    first = start_scheduled(env, clock, job, at("2026-05-15T00:10"))
    drain()
    assert run_row(env, first).status == S.COMPLETED
    assert scope_of(env, first) == ("rolling", "2026-05-01", "2026-05-15")
    assert sent_numbers(env, first) == ["INV-0501", "INV-0510", "LF-0515"]
    # A manual run of another range does not move the rolling range
    manual = start_manual(env, clock, job, date_from="2026-04-01", date_to="2026-04-30")
    drain()
    assert sent_numbers(env, manual) == ["INV-0430"]
    # A run that fails does not move it either
    outbox = env.settings.resolved_files_root / "erp" / "outbox"
    blocked = outbox.rename(outbox.with_name("moved"))
    outbox.write_text("in the way")
    failed = start_scheduled(env, clock, job, at("2026-06-01T00:10"))
    drain()
    assert run_row(env, failed).status == S.FAILED
    outbox.unlink()
    blocked.rename(outbox)
    # The next run starts a week (the default look-back) before the last completed rolling run ended;
    # what was sent already is not sent again
    second = start_scheduled(env, clock, job, at("2026-06-02T00:10"))
    drain()
    assert run_row(env, second).status == S.COMPLETED
    assert scope_of(env, second) == ("rolling", "2026-05-08", "2026-06-02")
    assert sent_numbers(env, second) == ["INV-0520", "INV-0531", "INV-0601"]
    # And the one after takes only what is new since
    add_invoices(env.billing_engine, 2, date(2026, 6, 2), prefix="JUN")
    third = start_scheduled(env, clock, job, at("2026-06-02T00:20"))
    drain()
    assert scope_of(env, third) == ("rolling", "2026-05-26", "2026-06-02")
    assert sent_numbers(env, third) == ["JUN-0000", "JUN-0001"]
    assert len(delivered(env.billing_engine)) == 9


def test_records_entered_late_are_sent_by_the_next_rolling_run_within_the_look_back(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain,
) -> None:
    # Given a daily job looking back 3 days, whose run of June 1 sent everything up to that day
    job = make_job(env, clock, target=OUTBOX, cron="0 1 * * *", inception_date="2026-05-01", lookback_days=3)
    first = start_scheduled(env, clock, job, at("2026-06-01T01:00"))
    drain()
    assert sent_numbers(env, first) == ["INV-0501", "INV-0510", "LF-0515", "INV-0520", "INV-0531", "INV-0601"]
    # When invoices dated May 30 (within the look-back) and May 20 (before it) are entered afterwards
    add_invoices(env.billing_engine, 1, date(2026, 5, 30), prefix="LATE")
    add_invoices(env.billing_engine, 1, date(2026, 5, 20), prefix="OLD")
    add_invoices(env.billing_engine, 1, date(2026, 6, 2), prefix="NEW")
    # Then the next scheduled run sends the late one with the new one, and nothing twice
    second = start_scheduled(env, clock, job, at("2026-06-02T01:00"))
    drain()
    assert scope_of(env, second) == ("rolling", "2026-05-29", "2026-06-02")
    assert sent_numbers(env, second) == ["LATE-0000", "NEW-0000"]
    # The one dated before the look-back goes with a run of an explicit range
    explicit = start_manual(env, clock, job, date_from="2026-05-01", date_to="2026-05-31")
    drain()
    assert sent_numbers(env, explicit) == ["OLD-0000"]
    assert len(delivered(env.billing_engine)) == 9


def test_without_a_look_back_the_range_starts_on_the_last_end_day(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain,
) -> None:
    job = make_job(env, clock, target=OUTBOX, cron="0 1 * * *", inception_date="2026-05-01", lookback_days=0)
    start_scheduled(env, clock, job, at("2026-05-15T01:00"))
    drain()
    second = start_scheduled(env, clock, job, at("2026-05-20T01:00"))
    drain()
    # The boundary day is read again; the look-back never reaches before the inception date either
    assert scope_of(env, second) == ("rolling", "2026-05-15", "2026-05-20")
    assert sent_numbers(env, second) == ["INV-0520"]
    early = make_job(env, clock, name="ERP early", target=OUTBOX, cron="0 1 * * *", inception_date="2026-05-10")
    start_scheduled(env, clock, early, at("2026-05-12T01:00"))
    drain()
    again = start_scheduled(env, clock, early, at("2026-05-13T01:00"))
    drain()
    assert scope_of(env, again) == ("rolling", "2026-05-10", "2026-05-13")


def test_the_rolling_range_ends_on_the_local_date_of_the_tick(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain,
) -> None:
    job = make_job(env, clock, target=OUTBOX, cron="0 22 * * *", timezone="America/New_York")
    run_id = start_scheduled(env, clock, job, at("2026-05-15T02:00"))
    drain()
    # 02:00 UTC on May 15 is still May 14 in New York; without an inception date the range is open below
    assert scope_of(env, run_id) == ("rolling", None, "2026-05-14")
    assert sent_numbers(env, run_id) == ["INV-0430", "INV-0501", "INV-0510"]


def add_journal(engine: Engine) -> dict[tuple[int, int], int]:
    """GL lines of two collector runs (7: an invoice, 8: a payment), by ``(run_id, line_no)``."""
    posted = at("2026-05-03T01:00")
    rows = [
        (7, "INVOICE", 11, 1, "1100-AR", "120.50", "0", date(2026, 5, 1)),
        (7, "INVOICE", 11, 2, "4000-REVENUE", "0", "120.50", date(2026, 5, 1)),
        (8, "PAYMENT", 21, 1, "1000-CASH", "40.00", "0", date(2026, 5, 2)),
        (8, "PAYMENT", 21, 2, "1100-AR", "0", "40.00", date(2026, 5, 2)),
    ]
    found = {}
    with engine.begin() as conn:
        for run_id, source_type, source_id, line_no, account, debit, credit, day in rows:
            found[(run_id, line_no)] = conn.execute(
                insert(gl_entries).values(
                    run_id=run_id, source_type=source_type, source_id=source_id, line_no=line_no, account_id=1,
                    gl_account=account, debit=Decimal(debit), credit=Decimal(credit), entry_date=day, posted_at=posted,
                ).returning(gl_entries.c.id)
            ).scalar_one()
    return found


def test_gl_journal_lines_of_one_bill_cycle_run_then_the_rest_of_the_range(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain,
) -> None:
    lines = add_journal(env.billing_engine)
    job = make_job(env, clock, name="ERP journal", dataset="gl_journal", target=OUTBOX)
    # The lines of GL collector run 7 only
    cycle = start_manual(env, clock, job, bill_cycle_run_id=7)
    drain()
    assert run_row(env, cycle).status == S.COMPLETED
    (path,) = (env.settings.resolved_files_root / "erp" / "outbox").glob(f"gl_journal-{cycle}-*.json")
    assert json.loads(path.read_text())["records"] == [
        {"id": str(lines[(7, 1)]), "run_id": "7", "source_type": "INVOICE", "source_id": "11", "line_no": "1",
         "account_number": "ACC-1", "gl_account": "1100-AR", "debit": "120.50", "credit": "0.00",
         "entry_date": "2026-05-01", "posted_at": "2026-05-03T01:00:00Z"},
        {"id": str(lines[(7, 2)]), "run_id": "7", "source_type": "INVOICE", "source_id": "11", "line_no": "2",
         "account_number": "ACC-1", "gl_account": "4000-REVENUE", "debit": "0.00", "credit": "120.50",
         "entry_date": "2026-05-01", "posted_at": "2026-05-03T01:00:00Z"},
    ]
    # Then the whole of May: only run 8's lines are new
    rest = start_manual(env, clock, job, date_from="2026-05-01", date_to="2026-05-31")
    drain()
    assert sent_numbers(env, rest) == [str(lines[(8, 1)]), str(lines[(8, 2)])]
    assert [row[:2] for row in delivered(env.billing_engine)] == sorted(("gl_journal", i) for i in lines.values())


def test_invoices_and_payments_of_one_bill_cycle_run(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain,
) -> None:
    # The invoices bill cycle run 51 issued, whatever their dates
    invoices_job = make_job(env, clock, target=OUTBOX)
    cycle = start_manual(env, clock, invoices_job, bill_cycle_run_id=51)
    drain()
    assert run_row(env, cycle).status == S.COMPLETED
    assert sent_numbers(env, cycle) == ["INV-0501", "INV-0510"]
    # With a range too: the cycle's records within it
    narrowed = start_manual(env, clock, invoices_job, bill_cycle_run_id=52, date_from="2026-05-25")
    drain()
    assert sent_numbers(env, narrowed) == ["INV-0531"]
    # The payments against bill cycle run 51's invoices (INV-0501 and INV-0510), not those against no invoice
    payments_job = make_job(env, clock, name="ERP payments", dataset="payments", target=OUTBOX)
    paid = start_manual(env, clock, payments_job, bill_cycle_run_id=51)
    drain()
    assert run_row(env, paid).status == S.COMPLETED
    assert sent_numbers(env, paid) == [str(ledger.payments["P-0501-0000"]), str(ledger.payments["P-0601-0000"])]
    # A bill cycle run nothing belongs to completes with nothing sent
    unknown = start_manual(env, clock, invoices_job, bill_cycle_run_id=999)
    drain()
    assert run_row(env, unknown).status == S.COMPLETED
    assert run_row(env, unknown).summary["delivered"] == 0
