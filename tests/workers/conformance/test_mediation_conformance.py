"""Usage mediation passes the conformance kit on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from workers_testkit import add_account

from cli.migrations import migrate_billing_database
from scheduler.settings import Settings
from workers.mediation import JOB_TYPE
from workers.mediation.tables import usage_daily, usage_events, usage_files
from workers.testing.conformance import JobTypeCase, JobTypeConformance

METERS = [{"meter": "data_gb", "unit": "GB", "price_per_unit": "0.10"},
          {"meter": "sms", "unit": "msg", "price_per_unit": "0.05"}]
HEADER = "event_id,account_number,meter,quantity,occurred_at\n"


class MediationCase(JobTypeCase):
    job_type = JOB_TYPE

    def prepare(self, engine: Engine) -> None:
        migrate_billing_database(engine, [])  # the ledger; the kit migrates the type's own tables

    def seed(self, engine: Engine, settings: Settings) -> None:
        # Two accounts and two files of clean records: one chunk per file.
        add_account(engine, "ACC-1")
        add_account(engine, "ACC-2")
        incoming = settings.resolved_files_root / "usage" / "incoming"
        incoming.mkdir(parents=True)
        (incoming / "usage-1.csv").write_text(HEADER + "A1,ACC-1,data_gb,1.5,2026-05-01T10:00:00Z\n"
                                              "A2,ACC-2,sms,3,2026-05-01T11:00:00Z\n")
        (incoming / "usage-2.csv").write_text(HEADER + "B1,ACC-1,data_gb,2,2026-05-02T10:00:00Z\n"
                                              "B2,ACC-1,sms,1,2026-05-02T12:00:00Z\n")

    def job_properties(self, settings: Settings) -> dict[str, Any]:
        return {"source_dir": "usage/incoming", "meters": METERS}

    def bad_properties(self) -> list[tuple[dict[str, Any], str]]:
        return [
            ({"source_dir": "../outside", "meters": METERS}, "source_dir"),
            ({"source_dir": "usage/incoming", "meters": []}, "meters"),
            ({"source_dir": "usage/incoming", "meters": METERS, "pattern": "sub/*.csv"}, "pattern"),
            ({"meters": METERS}, "source_dir"),
        ]

    def bad_run_properties(self) -> list[tuple[dict[str, Any], str]]:
        return [({"files": []}, "files"), ({"files": ["../../etc/passwd"]}, "files")]

    def effects(self, engine: Engine) -> Any:
        with engine.connect() as conn:
            events = conn.execute(select(usage_events.c.event_id, usage_events.c.meter, usage_events.c.quantity,
                                         usage_events.c.amount, usage_events.c.line_no)).all()
            daily = conn.execute(select(usage_daily.c.account_id, usage_daily.c.meter, usage_daily.c.usage_day,
                                        usage_daily.c.events, usage_daily.c.quantity, usage_daily.c.amount)).all()
            files = conn.execute(select(usage_files.c.name, usage_files.c.records, usage_files.c.mediated)).all()
        return [sorted(tuple(_plain(v) for v in row) for row in rows) for rows in (events, daily, files)]


def _plain(value: Any) -> Any:
    return value.normalize() if isinstance(value, Decimal) else value


class TestMediationConformance(JobTypeConformance):
    case = MediationCase()
