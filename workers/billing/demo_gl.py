"""The demo GL collector job: the demo ledger's invoices, payments, late fees and write-offs into the GL.

The demo ledger (``workers.billing.demo``) and the demo dunning jobs (late fees, write-offs) already
create every kind of document the collector reads; ``seed_gl_demo`` only makes sure the GL tables
exist and says what the first run will collect. The job runs every 10 minutes: its first run posts the
whole history, later runs only what is new (each document is collected once).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from workers.billing.gl_tables import gl_entries
from workers.gl.properties import GLAccountMapping, GLCollector
from workers.gl.sources import SOURCES, typed

DEMO_JOB: dict[str, Any] = {
    "name": "General ledger collector (every 10 minutes)",
    "job_type": "gl_collector",
    "description": (
        "Posts new invoices, payments, late fees and write-offs as balanced GL lines (and reverses invoices "
        "voided after posting): 1000 cash, 1200 receivables, 4000 revenue, 4100 late-fee income, 6100 bad-debt "
        "expense."
    ),
    "cron": "*/10 * * * *",
    "timezone": "UTC",
    "properties": {
        "collectors": [c.value for c in GLCollector],
        "gl_accounts": GLAccountMapping().model_dump(mode="json"),
    },
}


def seed_gl_demo(engine: Engine, *, now: datetime | None = None) -> dict[str, Any]:
    """The lines posted so far and the documents still to collect (the billing tables are migrated)."""
    now = now or datetime.now(UTC)
    params = {"as_of": now, "as_of_date": now.date()}
    with engine.connect() as conn:
        posted = int(conn.execute(select(func.count()).select_from(gl_entries)).scalar_one())
        uncollected = {
            collector.value: int(conn.execute(typed(f"SELECT COUNT(*) {source.uncollected()}"), params).scalar_one())
            for collector, source in SOURCES.items()
        }
    return {"gl_entries": posted, "uncollected": uncollected}
