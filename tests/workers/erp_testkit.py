"""Helpers of the ERP transfer tests: a known ledger, jobs, manual and scheduled runs, rows to assert on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, insert, select

from scheduler.clock import FrozenClock
from scheduler.jobs import JobCreate, create_job
from scheduler.models import Job, JobRun, RunEvent, RunItem, RunStatus, RunTrigger
from scheduler.runs import RunCreate, create_manual_run, retry_run, send_run
from workers.billing import accounts, invoices, payments
from workers.erp.tables import erp_deliveries
from workers.runtime.env import WorkerEnv

TOKEN_ENV = "SCHEDULER_ERP_SECRET_TEST_TOKEN"
SINK_HOSTS = ["127.0.0.1:*"]
"""The ERP allow-list of the tests: the local sink, on whatever port it got."""
TOKEN = "s3cr3t-token-value"


@dataclass(frozen=True)
class Ledger:
    """Ids of the known ledger's records by invoice number or payment reference."""

    invoices: dict[str, int]
    payments: dict[str, int]


def seed_ledger(engine: Engine) -> Ledger:
    """Two accounts; invoices issued around May 2026 and payments around its edges (UTC).

    In May 2026: invoices INV-0501, INV-0510, INV-0520, INV-0531 (late fee LF-0515 too) and payments
    P-0501-0000 (00:00:00) and P-0531-2359 (23:59:59); outside: INV-0430, INV-0601, P-0430-2359, P-0601-0000.
    Bill cycle runs: 41 issued INV-0430, 51 INV-0501 and INV-0510, 52 INV-0520 and INV-0531, 61 INV-0601.
    """
    with engine.begin() as conn:
        a1 = conn.execute(insert(accounts).values(account_number="ACC-1", name="Ada Ltd")
                          .returning(accounts.c.id)).scalar_one()
        a2 = conn.execute(insert(accounts).values(account_number="ACC-2", name="Bob Inc")
                          .returning(accounts.c.id)).scalar_one()
        invoice_rows = [  # number, account, issued on, amount, status, kind, bill cycle run
            ("INV-0430", a1, date(2026, 4, 30), "100.00", "OPEN", "INVOICE", 41),
            ("INV-0501", a1, date(2026, 5, 1), "120.50", "PAID", "INVOICE", 51),
            ("INV-0510", a2, date(2026, 5, 10), "99.99", "OPEN", "INVOICE", 51),
            ("LF-0515", a2, date(2026, 5, 15), "25.00", "OPEN", "LATE_FEE", None),
            ("INV-0520", a1, date(2026, 5, 20), "1000.00", "OPEN", "INVOICE", 52),
            ("INV-0531", a2, date(2026, 5, 31), "0.10", "VOID", "INVOICE", 52),
            ("INV-0601", a1, date(2026, 6, 1), "75.00", "OPEN", "INVOICE", 61),
        ]
        ids = {}
        for number, account_id, issued, amount, status, kind, cycle in invoice_rows:
            ids[number] = conn.execute(
                insert(invoices).values(
                    account_id=account_id, number=number, issued_on=issued, due_on=date(2026, 7, 1),
                    amount=Decimal(amount), balance=Decimal(0) if status == "PAID" else Decimal(amount),
                    status=status, kind=kind, bill_cycle_run_id=cycle,
                ).returning(invoices.c.id)
            ).scalar_one()
        payment_rows = [
            ("P-0430-2359", a1, None, datetime.fromisoformat("2026-04-30T23:59:59+00:00"), "10.00"),
            ("P-0501-0000", a1, ids["INV-0501"], datetime.fromisoformat("2026-05-01T00:00:00+00:00"), "120.50"),
            ("P-0531-2359", a2, None, datetime.fromisoformat("2026-05-31T23:59:59+00:00"), "40.00"),
            ("P-0601-0000", a2, ids["INV-0510"], datetime.fromisoformat("2026-06-01T00:00:00+00:00"), "99.99"),
        ]
        pids = {}
        for ref, account_id, invoice_id, received, amount in payment_rows:
            pids[ref] = conn.execute(
                insert(payments).values(account_id=account_id, invoice_id=invoice_id, received_at=received,
                                        amount=Decimal(amount)).returning(payments.c.id)
            ).scalar_one()
    return Ledger(invoices=ids, payments=pids)


def add_invoices(engine: Engine, count: int, issued_on: date, *, prefix: str = "BULK") -> list[int]:
    """``count`` invoices of account ACC-1 issued on ``issued_on``; returns their ids in order."""
    with engine.begin() as conn:
        account_id = conn.execute(select(accounts.c.id).where(accounts.c.account_number == "ACC-1")).scalar_one()
        rows = [{"account_id": account_id, "number": f"{prefix}-{n:04d}", "issued_on": issued_on,
                 "due_on": issued_on, "amount": Decimal("1.00"), "balance": Decimal("1.00")} for n in range(count)]
        conn.execute(insert(invoices), rows)
        found = conn.execute(select(invoices.c.id).where(invoices.c.number.like(f"{prefix}-%"))
                             .order_by(invoices.c.id))
        return [int(i) for i in found.scalars()]


def http_target(url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "http", "url": url, "token_env": TOKEN_ENV, "timeout_seconds": 0.5, "max_attempts": 3,
            "retry_backoff_seconds": 0.01, **extra}


def make_job(
    env: WorkerEnv, clock: FrozenClock, *, name: str = "ERP invoices", dataset: str = "invoices",
    target: dict[str, Any], cron: str | None = None, timezone: str = "UTC", requires_review: bool = False,
    **properties: Any,
) -> Job:
    with env.factory() as session:
        job = create_job(
            session=session, registry=env.registry, actor="test", clock=clock,
            job_in=JobCreate(name=name, job_type="erp_transfer", cron=cron, timezone=timezone,
                             requires_review=requires_review,
                             properties={"dataset": dataset, "target": target, **properties}),
        )
        session.expunge(job)
        return job


def start_manual(env: WorkerEnv, clock: FrozenClock, job: Job, *, preview: bool = False, **run_properties: Any) -> int:
    assert job.id is not None
    with env.factory() as session:
        run, _ = create_manual_run(
            session=session, registry=env.registry, actor="test", clock=clock,
            run_in=RunCreate(job_id=job.id, preview=preview, run_properties=run_properties),
        )
        assert run.id is not None
        run_id = run.id
    assert send_run(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=run_id, clock=clock)
    return run_id


def start_scheduled(env: WorkerEnv, clock: FrozenClock, job: Job, tick: datetime) -> int:
    """A run for ``tick`` as beat records it, then sent."""
    assert job.id is not None
    with env.factory() as session:
        run = JobRun(job_id=job.id, job_type=job.job_type, trigger=RunTrigger.SCHEDULED, scheduled_for=tick,
                     created_at=clock.now(), created_by="beat")
        session.add(run)
        session.flush()
        assert run.id is not None
        run_id = run.id
        session.add(RunEvent(run_id=run_id, to_status=RunStatus.CREATED, at=clock.now(), actor="beat"))
        session.commit()
    assert send_run(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=run_id, clock=clock)
    return run_id


def start_retry(env: WorkerEnv, clock: FrozenClock, run_id: int) -> int:
    with env.factory() as session:
        retry = retry_run(session=session, run_id=run_id, actor="test", clock=clock)
        assert retry.id is not None
        retry_id = retry.id
    assert send_run(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=retry_id,
                    clock=clock)
    return retry_id


def run_row(env: WorkerEnv, run_id: int) -> JobRun:
    with env.factory() as session:
        run = session.get(JobRun, run_id)
        assert run is not None
        session.expunge(run)
        return run


def items_of(env: WorkerEnv, run_id: int) -> dict[str, RunItem]:
    with env.factory() as session:
        rows = session.scalars(select(RunItem).where(RunItem.run_id == run_id))  # type: ignore[arg-type]
        found = {item.item_key: item for item in rows}
        session.expunge_all()
        return found


def delivered(engine: Engine) -> list[tuple[str, int, int, int]]:
    """``(dataset, record_id, run_id, batch_no)`` of every delivery row, by record."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(erp_deliveries.c.dataset, erp_deliveries.c.record_id, erp_deliveries.c.run_id,
                   erp_deliveries.c.batch_no).order_by(erp_deliveries.c.dataset, erp_deliveries.c.record_id)
        )
        return [(r.dataset, int(r.record_id), int(r.run_id), int(r.batch_no)) for r in rows]
