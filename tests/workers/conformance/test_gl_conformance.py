"""The GL collector passes the conformance kit on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, insert, select

from cli.migrations import migrate_billing_database
from scheduler.settings import Settings
from workers.billing import accounts, invoices, payments
from workers.billing.gl_tables import gl_entries
from workers.gl import JOB_TYPE
from workers.testing.conformance import JobTypeCase, JobTypeConformance


class GLCase(JobTypeCase):
    job_type = JOB_TYPE

    def prepare(self, engine: Engine) -> None:
        migrate_billing_database(engine, [])  # the ledger; the kit runs the type's own tree

    def seed(self, engine: Engine, settings: Settings) -> None:
        # Five invoices (two chunks of three) and four payments (two chunks), all before the runs' cut-off.
        with engine.begin() as conn:
            account = conn.execute(insert(accounts).values(account_number="G-1", name="G-1")
                                   .returning(accounts.c.id)).scalar_one()
            conn.execute(insert(invoices), [
                {"account_id": account, "number": f"GL-{n}", "issued_on": date(2026, 5, n),
                 "due_on": date(2026, 5, n), "amount": Decimal(f"{n}0.50"), "balance": Decimal(f"{n}0.50")}
                for n in range(1, 6)
            ])
            conn.execute(insert(payments), [
                {"account_id": account, "amount": Decimal(f"{n}.25"),
                 "received_at": datetime(2026, 5, 10 + n, 9, 0, tzinfo=UTC)}
                for n in range(1, 5)
            ])

    def job_properties(self, settings: Settings) -> dict[str, Any]:
        return {"collectors": ["invoices", "payments"]}

    def bad_properties(self) -> list[tuple[dict[str, Any], str]]:
        return [
            ({"collectors": []}, "collectors"),
            ({"collectors": ["invoices", "invoices"]}, "collectors"),
            ({"collectors": ["receipts"]}, "collectors.0"),
            ({"ledger": "main"}, "ledger"),
        ]

    def bad_run_properties(self) -> list[tuple[dict[str, Any], str]]:
        return [({"as_of": "2026-06-01T12:00:00"}, "as_of"), ({"collectors": ["invoices"]}, "collectors")]

    def effects(self, engine: Engine) -> Any:
        with engine.connect() as conn:
            rows = conn.execute(select(gl_entries.c.source_type, gl_entries.c.source_id, gl_entries.c.line_no,
                                       gl_entries.c.gl_account, gl_entries.c.debit, gl_entries.c.credit)).all()
        return sorted(map(str, rows))


class TestGLConformance(JobTypeConformance):
    case = GLCase()
