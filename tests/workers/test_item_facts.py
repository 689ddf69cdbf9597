"""Facts recorded on a run's items, on SQLite and PostgreSQL: merged into each detail, the last value kept.

PostgreSQL appends the facts to each detail's text rather than decoding and encoding it (see
``scheduler.jobkit.items``); whoever reads a detail back — Python or the database's JSON operators —
must see what a merge would have left, also for a key recorded twice and for an empty detail.
"""

from __future__ import annotations

import pytest
from erp_testkit import items_of, make_job, start_manual
from sqlalchemy import text

from scheduler.clock import FrozenClock
from scheduler.jobkit import ItemOutcome, ItemWriter, SqlDialect
from scheduler.jobtypes import JobTypeRegistry
from workers.erp import JOB_TYPE
from workers.runtime.env import WorkerEnv


@pytest.fixture
def registry() -> JobTypeRegistry:
    return JobTypeRegistry([JOB_TYPE])


def test_recorded_facts_are_merged_into_each_detail_and_the_last_value_wins(
    env: WorkerEnv, clock: FrozenClock,
) -> None:
    job = make_job(env, clock, target={"kind": "file", "directory": "erp-out"})
    run_id = start_manual(env, clock, job)  # never executed: its items are written here
    with env.engine.begin() as conn:
        items = ItemWriter(conn, run_id=run_id, now=clock.now())
        items.stage(1, {"a": {"x": 1, "record": {"id": "7", "note": "}"}}, "b": {}})
        items.record(1, ["a", "b"], None, {"x": 2, "word": "café"})
        items.settle(1, ItemOutcome.OK, {"word": None, "list": [1, "}"]})
    details = {key: item.detail for key, item in items_of(env, run_id).items()}
    assert details == {
        "a": {"x": 2, "record": {"id": "7", "note": "}"}, "word": None, "list": [1, "}"]},
        "b": {"x": 2, "word": None, "list": [1, "}"]},
    }
    x = SqlDialect.of(env.engine).json_text("detail", "x")
    with env.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT item_key, {x} AS x, outcome FROM run_item WHERE run_id = :run_id "
                                 "ORDER BY item_key"), {"run_id": run_id}).all()
    assert [(key, str(value), outcome) for key, value, outcome in rows] == [("a", "2", "ok"), ("b", "2", "ok")]
