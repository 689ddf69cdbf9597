"""The demo GL job over the demo ledger: it validates, runs, balances, and leaves nothing to collect."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from sqlalchemy import Engine, func, select
from workers_testkit import Drain

from scheduler.clock import FrozenClock
from scheduler.jobs import JobCreate, create_job
from scheduler.models import JobRun, RunStatus
from scheduler.runs import RunCreate, create_manual_run, send_run
from workers.billing import invoices, payments
from workers.billing.demo import seed_demo
from workers.billing.demo_gl import DEMO_JOB, seed_gl_demo
from workers.billing.gl_tables import gl_entries
from workers.runtime.env import WorkerEnv


def test_demo_job_collects_the_demo_ledger_once(
    env: WorkerEnv, billing_engine: Engine, clock: FrozenClock, drain: Drain, load_run: Callable[[int], JobRun],
) -> None:
    # Given the demo ledger as of the test clock's date
    seed_demo(billing_engine, accounts=40, as_of=date(2026, 6, 1))
    before = seed_gl_demo(billing_engine, now=clock.now())
    with billing_engine.connect() as conn:
        n_invoices = conn.execute(select(func.count()).select_from(invoices)).scalar_one()
        n_payments = conn.execute(select(func.count()).select_from(payments)).scalar_one()
    assert before == {"gl_entries": 0, "uncollected": {"invoices": n_invoices, "payments": n_payments,
                                                       "late_fees": 0, "write_offs": 0, "invoice_voids": 0,
                                                       "late_fee_voids": 0}}
    # When the demo job (as the demo wires it) runs once
    with env.factory() as session:
        job = create_job(session=session, registry=env.registry, actor="demo", clock=clock,
                         job_in=JobCreate.model_validate(DEMO_JOB))
        run, _ = create_manual_run(session=session, registry=env.registry, actor="demo", clock=clock,
                                   run_in=RunCreate(job_id=job.id or 0))
        run_id = run.id or 0
    send_run(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=run_id, clock=clock)
    drain()
    # Then every document is posted, balanced, and nothing is left to collect
    done = load_run(run_id)
    assert done.status == RunStatus.COMPLETED, done.error
    assert done.summary["documents"] == n_invoices + n_payments
    assert done.summary["balanced"] is True
    with billing_engine.connect() as conn:
        lines = conn.execute(select(func.count()).select_from(gl_entries)).scalar_one()
    assert lines == 2 * (n_invoices + n_payments)
    after = seed_gl_demo(billing_engine, now=clock.now())
    assert after == {"gl_entries": lines, "uncollected": {"invoices": 0, "payments": 0, "late_fees": 0,
                                                          "write_offs": 0, "invoice_voids": 0, "late_fee_voids": 0}}
