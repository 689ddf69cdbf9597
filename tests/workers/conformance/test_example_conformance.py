"""The example job type passes the conformance kit: what a new type's test module looks like."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from example_type import JOB_TYPE, ledger, metadata, source
from sqlalchemy import Engine, insert, select

from scheduler.settings import Settings
from workers.testing.conformance import JobTypeCase, JobTypeConformance


class ExampleCase(JobTypeCase):
    job_type = JOB_TYPE

    def prepare(self, engine: Engine) -> None:
        metadata.create_all(engine)  # a real job type runs its own migrations here

    def seed(self, engine: Engine, settings: Settings) -> None:
        with engine.begin() as conn:
            conn.execute(insert(source), [{"id": n, "amount": Decimal(n * 10)} for n in range(1, 8)])

    def job_properties(self, settings: Settings) -> dict[str, Any]:
        return {"minimum": "20.00"}

    def bad_properties(self) -> list[tuple[dict[str, Any], str]]:
        return [({"minimum": "-1"}, "minimum"), ({"minimum": "abc"}, "minimum"), ({"maximum": 3}, "maximum")]

    def effects(self, engine: Engine) -> Any:
        with engine.connect() as conn:
            return sorted(map(tuple, conn.execute(select(ledger.c.source_id, ledger.c.amount)).all()))


class TestExampleConformance(JobTypeConformance):
    case = ExampleCase()
