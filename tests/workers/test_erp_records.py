"""The records PostgreSQL builds as JSON for a batch are the strings Python makes of the same rows.

PostgreSQL stages a batch's records without reading them into Python (``Source.record_json``);
SQLite formats them in Python (``record_fields``). Both must send the same fields, so every dataset's
records are built both ways here and compared, instants with and without microseconds and fields left
empty included.
"""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from erp_testkit import seed_ledger
from sqlalchemy import Engine, insert, text

from cli.migrations import migrate_billing_database
from scheduler.jobkit import SqlDialect
from workers.billing import payments
from workers.billing.gl_tables import gl_entries
from workers.erp.datasets import SOURCES, record_fields
from workers.erp.properties import ErpDataset

pytestmark = pytest.mark.postgres


@pytest.fixture
def ledger_engine(pg_engine: Engine) -> Engine:
    migrate_billing_database(pg_engine, [])
    ledger = seed_ledger(pg_engine)
    with pg_engine.begin() as conn:
        account_id = conn.execute(text("SELECT MIN(id) FROM accounts")).scalar_one()
        conn.execute(insert(payments).values(
            account_id=account_id, invoice_id=ledger.invoices["INV-0520"], amount="7.25",
            received_at=datetime.fromisoformat("2026-05-20T13:45:07.012300+00:00")))
        conn.execute(insert(gl_entries), [
            {"run_id": 9, "source_type": "invoice", "source_id": 1, "line_no": 1, "account_id": account_id,
             "gl_account": "1200", "debit": "120.50", "credit": "0", "entry_date": date(2026, 5, 1),
             "posted_at": datetime.fromisoformat("2026-05-02T00:00:00+00:00")},
            {"run_id": 9, "source_type": "invoice", "source_id": 1, "line_no": 2, "account_id": account_id + 999,
             "gl_account": "4000", "debit": "0", "credit": "120.50", "entry_date": date(2026, 5, 1),
             "posted_at": datetime.fromisoformat("2026-05-02T09:30:00.000001+00:00")},
        ])
    return pg_engine


@pytest.mark.parametrize("dataset", list(ErpDataset))
def test_the_database_builds_each_record_as_python_would(ledger_engine: Engine, dataset: ErpDataset) -> None:
    source = SOURCES[dataset]
    select = source.select(SqlDialect.of(ledger_engine))
    with ledger_engine.connect() as conn:
        rows = conn.execute(text(f"{select} ORDER BY r.id").columns(**source.typed_columns())).all()
        built = conn.execute(text(
            f"SELECT CAST({source.record_json('s')} AS text) AS record FROM ({select}) s ORDER BY s.id")).scalars()
        by_database = [json.loads(record) for record in built]
    by_python = [record_fields(source, row) for row in rows]
    assert len(by_python) >= 2
    assert by_database == by_python
    if dataset is not ErpDataset.INVOICES:
        instants = [record["received_at" if dataset is ErpDataset.PAYMENTS else "posted_at"] for record in by_python]
        assert any("." in str(instant) for instant in instants)  # microseconds kept where there are some
