"""Fixtures for the executor and the job types: billing tables, an in-memory dispatcher, a worker env.

``RecordingDispatcher`` keeps the steps a run sends; ``drain`` executes them in order, as a worker
pool would, so a whole run goes CREATED → … → final status in-process without a broker.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from workers_testkit import AS_OF, TIERS, Drain, RecordingDispatcher, add_account

from cli.migrations import migrate_billing_database
from scheduler.clock import FrozenClock
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import JobTypeRegistry, load_registry
from scheduler.models import Job, JobRun
from scheduler.runs import RunCreate, create_manual_run, send_run
from scheduler.settings import Settings
from workers.billing import accounts
from workers.runtime.env import WorkerEnv, build_env
from workers.runtime.executor import execute_step


@pytest.fixture
def billing_engine(engine: Engine) -> Engine:
    """The scheduler database with the billing tables migrated (the default layout)."""
    migrate_billing_database(engine, load_registry(Settings()).all())
    return engine


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def worker_settings(settings: Settings) -> Settings:
    """Small chunks; ERP targets may send to the tests' local HTTP sink (127.0.0.1, any port)."""
    return settings.model_copy(update={"chunk_size": 3, "erp_allowed_hosts": ["127.0.0.1:*"]})


@pytest.fixture
def env(
    worker_settings: Settings, billing_engine: Engine, dispatcher: RecordingDispatcher, clock: FrozenClock,
    registry: JobTypeRegistry,
) -> WorkerEnv:
    return build_env(worker_settings, dispatcher=dispatcher, registry=registry, clock=clock, engine=billing_engine,
                     billing_engine=billing_engine, worker_id="worker-test", heartbeat=False)


@pytest.fixture
def drain(env: WorkerEnv, dispatcher: RecordingDispatcher) -> Drain:
    """Execute every queued step (and the steps they send) in order; returns how many ran."""

    def run() -> int:
        count = 0
        while dispatcher.steps:
            _, step = dispatcher.steps.popleft()
            execute_step(env, step.run_id, step.phase, step.chunk_no)
            count += 1
            assert count < 10_000, "steps keep coming"
        return count

    return run


@pytest.fixture
def make_job(env: WorkerEnv, clock: FrozenClock) -> Callable[..., Job]:
    def make(name: str = "Residential dunning", *, requires_review: bool = False, review_empty_previews: bool = False,
             **properties: Any) -> Job:
        props = {"account_category": "RESIDENTIAL", "minimum_account_due": "10.00",
                 "strategy": "oldest_open_invoice", "tiers": TIERS, **properties}
        with env.factory() as session:
            job = create_job(
                session=session, registry=env.registry, actor="test", clock=clock,
                job_in=JobCreate(name=name, job_type="dunning", properties=props, requires_review=requires_review,
                                 review_empty_previews=review_empty_previews),
            )
            session.expunge(job)
            return job

    return make


@pytest.fixture
def start_run(env: WorkerEnv, clock: FrozenClock) -> Callable[..., int]:
    """Record a manual run and send its plan step (to the recording dispatcher)."""

    def start(job: Job, *, preview: bool = False, as_of: date | None = AS_OF, **run_properties: Any) -> int:
        assert job.id is not None
        if as_of is not None:
            run_properties["as_of"] = as_of.isoformat()
        with env.factory() as session:
            run, _ = create_manual_run(
                session=session, registry=env.registry, actor="test", clock=clock,
                run_in=RunCreate(job_id=job.id, preview=preview, run_properties=run_properties),
            )
            assert run.id is not None
            run_id = run.id
        assert send_run(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=run_id,
                        clock=clock)
        return run_id

    return start


def get_run(factory: sessionmaker[Session], run_id: int) -> JobRun:
    with factory() as session:
        run = session.get(JobRun, run_id)
        assert run is not None
        session.expunge(run)
        return run


@pytest.fixture
def load_run(env: WorkerEnv) -> Callable[[int], JobRun]:
    return lambda run_id: get_run(env.factory, run_id)


@pytest.fixture
def known_ledger(billing_engine: Engine) -> dict[str, int]:
    """Hand-made accounts whose dunning outcome is known (tiers in ``TIERS``, minimum due 10.00).

    A10: 10 days late → tier 1.  A40: 40 days late (plus a newer one) → tier 2 with a 15.00 fee.
    A95: 95 days late, at tier 1 → tier 3, suspended.  ADIS: only a disputed invoice → unchanged.
    APAID: paid up, at tier 2 and suspended → cleared to 0 and reinstated.  AMIN: 5.00 due → unchanged.
    AAT2: at tier 2 and 45 days late → unchanged.  BIZ: another category; CLOSED: closed → not evaluated.
    """
    e = billing_engine
    return {
        "A10": add_account(e, "A10", open_invoices=[(10, "50.00")], paid=[(40, "50.00")]),
        "A40": add_account(e, "A40", open_invoices=[(40, "80.00"), (5, "20.00")]),
        "A95": add_account(e, "A95", tier=1, open_invoices=[(95, "200.00"), (65, "200.00")]),
        "ADIS": add_account(e, "ADIS", disputed=[(60, "500.00")], open_invoices=[(-10, "30.00")]),
        "APAID": add_account(e, "APAID", tier=2, status="SUSPENDED", paid=[(70, "90.00"), (40, "90.00")]),
        "AMIN": add_account(e, "AMIN", open_invoices=[(50, "5.00")]),
        "AAT2": add_account(e, "AAT2", tier=2, open_invoices=[(45, "60.00")]),
        "BIZ": add_account(e, "BIZ", category="BUSINESS", open_invoices=[(100, "999.00")]),
        "CLOSED": add_account(e, "CLOSED", status="CLOSED", open_invoices=[(100, "10.00")]),
    }


@pytest.fixture
def account_state(billing_engine: Engine) -> Callable[[], dict[str, tuple[int, str]]]:
    """Every account's ``(dunning_tier, status)`` by account number."""

    def state() -> dict[str, tuple[int, str]]:
        with billing_engine.connect() as conn:
            rows = conn.execute(select(accounts.c.account_number, accounts.c.dunning_tier, accounts.c.status))
            return {r.account_number: (r.dunning_tier, r.status) for r in rows}

    return state
