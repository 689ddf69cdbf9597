"""The demo ledger: deterministic, realistic enough to exercise every dunning path, seeded set-based."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, text
from workers_testkit import AS_OF, Drain, dunning_registry

from cli.migrations import migrate_billing_database
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import Job, JobRun
from workers.billing.demo import seed_demo
from workers.runtime.env import WorkerEnv


@pytest.fixture
def registry() -> JobTypeRegistry:
    return dunning_registry()


def fingerprint(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT a.account_number, a.category, a.status, a.dunning_tier, COUNT(i.id), "
            "SUM(CASE WHEN i.status = 'OPEN' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN i.disputed THEN 1 ELSE 0 END), MIN(i.due_on) "
            "FROM accounts a JOIN invoices i ON i.account_id = a.id GROUP BY a.id, a.account_number, a.category, "
            "a.status, a.dunning_tier ORDER BY a.id"
        ))]


def test_seed_is_deterministic_and_not_repeated(billing_engine: Engine, sqlite_engine: Engine) -> None:
    counts = seed_demo(billing_engine, accounts=300, seed=3, as_of=AS_OF)
    assert counts["seeded"] is True and counts["accounts"] == 300 and counts["invoices"] >= 1200
    again = seed_demo(billing_engine, accounts=300, seed=3, as_of=AS_OF)
    assert again == {**counts, "seeded": False}
    if billing_engine is not sqlite_engine:
        # The same seed gives the same ledger on the other database.
        migrate_billing_database(sqlite_engine, [])
        seed_demo(sqlite_engine, accounts=300, seed=3, as_of=AS_OF)
        assert [r[:5] for r in fingerprint(billing_engine)] == [r[:5] for r in fingerprint(sqlite_engine)]
    rows = fingerprint(billing_engine)
    assert {r[1] for r in rows} == {"RESIDENTIAL", "BUSINESS", "ENTERPRISE"}
    assert {r[3] for r in rows} >= {0, 1, 3}
    assert any(r[6] for r in rows), "some accounts dispute an invoice"
    # Six months unpaid: the oldest open invoice is over 120 days past due.
    assert min(date.fromisoformat(str(r[7])) for r in rows) < AS_OF - timedelta(days=120)
    # Every invoice came from a bill cycle run, one per issue day, numbered in date order
    with billing_engine.connect() as conn:
        cycles = conn.execute(text(
            "SELECT bill_cycle_run_id, MIN(issued_on), MAX(issued_on) FROM invoices GROUP BY bill_cycle_run_id "
            "ORDER BY bill_cycle_run_id")).all()
    assert None not in [c[0] for c in cycles]
    assert {c[0] for c in cycles} >= set(range(21, 61))  # the four months every account has
    assert {c[0] for c in cycles} <= set(range(1, 61))
    assert all(c[1] == c[2] for c in cycles)
    assert [c[1] for c in cycles] == sorted(c[1] for c in cycles)


def test_dunning_over_the_demo_ledger(
    env: WorkerEnv, make_job: Callable[..., Job], start_run: Callable[..., int], drain: Drain
) -> None:
    seed_demo(env.billing_engine, accounts=200, seed=5, as_of=AS_OF)
    job = make_job(account_category=None)
    run_id = start_run(job)
    drain()
    with env.factory() as session:
        run = session.get(JobRun, run_id)
        assert run is not None
    assert run.status == "COMPLETED", run.error
    summary = run.summary
    assert summary["accounts_evaluated"] == 200 - sum(1 for r in fingerprint(env.billing_engine) if r[2] == "CLOSED")
    assert summary["escalated"] > 0 and summary["cleared"] > 0 and summary["unchanged"] > 0
    assert summary["fees_posted"] > 0
