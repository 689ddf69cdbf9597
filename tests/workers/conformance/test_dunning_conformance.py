"""Dunning passes the conformance kit on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from workers_testkit import TIERS, add_account

from cli.migrations import migrate_billing_database
from scheduler.settings import Settings
from workers.billing import accounts, dunning_actions, invoices
from workers.dunning import JOB_TYPE
from workers.testing.conformance import JobTypeCase, JobTypeConformance


class DunningCase(JobTypeCase):
    job_type = JOB_TYPE

    def prepare(self, engine: Engine) -> None:
        migrate_billing_database(engine, [])  # the ledger; dunning keeps no tables of its own

    def seed(self, engine: Engine, settings: Settings) -> None:
        # Seven accounts in three chunks of three: escalations, a clearance and a fee in each of the first two.
        add_account(engine, "C01", open_invoices=[(10, "50.00")])
        add_account(engine, "C02", open_invoices=[(40, "80.00")])
        add_account(engine, "C03", tier=2, status="SUSPENDED", paid=[(70, "90.00")])
        add_account(engine, "C04", open_invoices=[(95, "200.00")])
        add_account(engine, "C05", open_invoices=[(35, "60.00")])
        add_account(engine, "C06", open_invoices=[(2, "5.00")])
        add_account(engine, "C07", open_invoices=[(12, "70.00")])

    def job_properties(self, settings: Settings) -> dict[str, Any]:
        return {"account_category": "RESIDENTIAL", "minimum_account_due": "10.00", "tiers": TIERS}

    def bad_properties(self) -> list[tuple[dict[str, Any], str]]:
        return [
            ({"minimum_account_due": "-1"}, "minimum_account_due"),
            ({"tiers": []}, "tiers"),
            ({"tiers": [{"code": 1, "name": "Reminder", "min_days_past_due": -3}]}, "tiers.0.min_days_past_due"),
            ({"strategy": "newest"}, "strategy"),
            ({"colour": "red"}, "colour"),
        ]

    def bad_run_properties(self) -> list[tuple[dict[str, Any], str]]:
        return [({"as_of": "yesterday"}, "as_of"), ({"account_numbers": []}, "account_numbers"), ({"x": 1}, "x")]

    def effects(self, engine: Engine) -> Any:
        with engine.connect() as conn:
            tiers = conn.execute(select(accounts.c.account_number, accounts.c.dunning_tier, accounts.c.status)).all()
            bills = conn.execute(
                select(accounts.c.account_number, invoices.c.kind, invoices.c.amount, invoices.c.balance,
                       invoices.c.status).join(accounts, accounts.c.id == invoices.c.account_id)
            ).all()
            actions = conn.execute(
                select(accounts.c.account_number, dunning_actions.c.to_tier)
                .join(accounts, accounts.c.id == dunning_actions.c.account_id)
            ).all()
        return sorted(map(tuple, tiers)), sorted(map(str, bills)), sorted(map(tuple, actions))


class TestDunningConformance(JobTypeConformance):
    case = DunningCase()
