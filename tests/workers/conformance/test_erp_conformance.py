"""ERP transfer passes the conformance kit on SQLite and PostgreSQL (to a file target)."""

from __future__ import annotations

from typing import Any

from erp_testkit import seed_ledger
from sqlalchemy import Engine, select

from cli.migrations import migrate_billing_database
from scheduler.settings import Settings
from workers.erp import JOB_TYPE
from workers.erp.tables import erp_deliveries
from workers.testing.conformance import JobTypeCase, JobTypeConformance


class ErpCase(JobTypeCase):
    job_type = JOB_TYPE

    def prepare(self, engine: Engine) -> None:
        migrate_billing_database(engine, [])  # the ledger; the kit migrates the type's own tables

    def seed(self, engine: Engine, settings: Settings) -> None:
        seed_ledger(engine)  # seven invoices: four batches of two

    def job_properties(self, settings: Settings) -> dict[str, Any]:
        return {"dataset": "invoices", "target": {"kind": "file", "directory": "erp-out"}, "batch_size": 2}

    def bad_properties(self) -> list[tuple[dict[str, Any], str]]:
        target = {"kind": "file", "directory": "erp-out"}
        return [
            ({"dataset": "contracts", "target": target}, "dataset"),
            ({"dataset": "invoices", "target": {"kind": "file", "directory": "../outside"}}, "target"),
            ({"dataset": "invoices", "target": target, "batch_size": 0}, "batch_size"),
            ({"dataset": "invoices"}, "target"),
        ]

    def bad_run_properties(self) -> list[tuple[dict[str, Any], str]]:
        return [({"date_from": "2026-05-02", "date_to": "2026-05-01"}, ""), ({"bill_cycle_run_id": 0},
                "bill_cycle_run_id")]

    def effects(self, engine: Engine) -> Any:
        with engine.connect() as conn:
            rows = conn.execute(select(erp_deliveries.c.dataset, erp_deliveries.c.record_id,
                                       erp_deliveries.c.batch_no)).all()
        return sorted(map(tuple, rows))


class TestErpConformance(JobTypeConformance):
    case = ErpCase()
