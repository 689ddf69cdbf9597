"""POST /api/v1/runs/batch on SQLite and PostgreSQL with a real Redis: many runs, one request, all or nothing."""

from __future__ import annotations

from typing import Any

import redis
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    client_fixture,
    count,
    create_job,
    dead_dispatcher_fixture,
    down_client_fixture,
    live_dispatcher_fixture,
    queued_messages,
)

from scheduler.models import JobRun, RunEvent

BATCH = "/api/v1/runs/batch"


def entries(job_id: int, n: int, *, prefix: str = "k", **fields: Any) -> list[dict[str, Any]]:
    return [{"job_id": job_id, "idempotency_key": f"{prefix}-{i}", **fields} for i in range(n)]


def test_a_batch_records_every_run_audits_it_and_sends_it_in_order(
    client: TestClient, engine: Engine, redis_client: redis.Redis
) -> None:
    # Given two jobs
    nightly, other = create_job(client), create_job(client, name="other")
    runs = [*entries(nightly["id"], 3, run_properties={"as_of": "2026-05-31"}),
            *entries(other["id"], 2, prefix="o", preview=True)]

    # When a batch asks for five runs
    response = client.post(BATCH, json={"runs": runs})

    # Then each is created, in the order asked, and answered with its key
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] == 5
    assert [(r["job_id"], r["idempotency_key"], r["status"], r["created"]) for r in body["runs"]] == [
        (e["job_id"], e["idempotency_key"], "CREATED", True) for e in runs]
    ids = [r["id"] for r in body["runs"]]
    with Session(engine) as session:
        stored = {run.id: run for run in session.scalars(select(JobRun).where(col(JobRun.id).in_(ids)))}
        events = list(session.scalars(select(RunEvent).where(col(RunEvent.run_id).in_(ids))))
    assert [(stored[i].trigger, stored[i].preview, stored[i].run_properties, stored[i].created_by) for i in ids] == [
        ("MANUAL", False, {"as_of": "2026-05-31"}, "key:test-admin")] * 3 + [("MANUAL", True, {"as_of": None},
                                                                              "key:test-admin")] * 2
    assert all(stored[i].enqueued_at is not None for i in ids)
    # And each has its audit event, and its plan step waits on the job type's queue
    assert sorted((e.run_id, e.from_status, e.to_status) for e in events) == [(i, None, "CREATED") for i in ids]
    assert [m["args"] for m in queued_messages(redis_client, "fake_q")] == [[i, "plan", 0] for i in ids]


def test_repeating_a_batch_answers_the_same_runs_and_adds_new_keys_only(
    client: TestClient, engine: Engine, redis_client: redis.Redis
) -> None:
    job = create_job(client)
    first = client.post(BATCH, json={"runs": entries(job["id"], 3)}).json()

    # The same batch again: 200, the same runs, nothing new created or sent
    again = client.post(BATCH, json={"runs": entries(job["id"], 3)})
    assert again.status_code == 200, again.text
    assert again.json() == {**first, "created": 0, "runs": [{**r, "created": False} for r in first["runs"]]}

    # The same keys plus a new one: only the new one is created
    more = client.post(BATCH, json={"runs": entries(job["id"], 4)})
    assert more.status_code == 201 and more.json()["created"] == 1
    assert [r["created"] for r in more.json()["runs"]] == [False, False, False, True]
    assert count(engine, JobRun) == 4 and len(queued_messages(redis_client, "fake_q")) == 4

    # A batch key is the same key as a single request's Idempotency-Key
    single = client.post("/api/v1/runs", json={"job_id": job["id"]}, headers={"Idempotency-Key": "k-0"})
    assert single.status_code == 200 and single.json()["id"] == first["runs"][0]["id"]


def test_a_refused_entry_refuses_the_whole_batch_naming_it(client: TestClient, engine: Engine) -> None:
    job = create_job(client)
    paused = create_job(client, name="paused")
    assert client.post(f"/api/v1/jobs/{paused['id']}/pause", json={}).status_code == 200
    client.post(BATCH, json={"runs": entries(job["id"], 1)})
    before = count(engine, JobRun)

    cases: list[tuple[list[dict[str, Any]], int, str]] = [
        # a key used before for a different request
        ([*entries(job["id"], 1, prefix="new"), {"job_id": job["id"], "idempotency_key": "k-0", "preview": True}],
         409, "idempotency_mismatch"),
        ([*entries(job["id"], 1, prefix="new"), {"job_id": 999_999, "idempotency_key": "x"}], 404, "job_not_found"),
        ([*entries(job["id"], 1, prefix="new"), *entries(paused["id"], 1, prefix="p")], 409, "job_not_runnable"),
        ([*entries(job["id"], 1, prefix="new"),
          {"job_id": job["id"], "idempotency_key": "bad", "run_properties": {"as_of": "not a date"}}], 422, None),
    ]
    for runs, status, code in cases:
        body = assert_error(client.post(BATCH, json={"runs": runs}), status, code)
        assert body["details"]["index"] == 1, body
        assert body["message"].startswith("runs[1]: "), body
    assert count(engine, JobRun) == before


def test_batches_are_bounded_and_keys_unique_within_one(client: TestClient, engine: Engine) -> None:
    job = create_job(client)
    too_many = entries(job["id"], 1_001)
    assert_error(client.post(BATCH, json={"runs": too_many}), 422)
    assert_error(client.post(BATCH, json={"runs": []}), 422)
    assert_error(client.post(BATCH, json={"runs": [{"job_id": job["id"]}]}), 422)  # a key is required
    assert_error(client.post(BATCH, json={"runs": entries(job["id"], 1, prefix="has space")}), 422)
    repeated = [*entries(job["id"], 2), *entries(job["id"], 1)]
    body = assert_error(client.post(BATCH, json={"runs": repeated}), 422, "invalid_value")
    assert body["details"]["index"] == 2
    assert count(engine, JobRun) == 0
    # "batch" is no run id: other methods are 405
    assert_error(client.get(BATCH), 405, "method_not_allowed")

    # A thousand runs is one request
    response = client.post(BATCH, json={"runs": entries(job["id"], 1_000)})
    assert response.status_code == 201 and response.json()["created"] == 1_000
    assert count(engine, JobRun) == 1_000


def test_with_redis_down_the_batch_is_recorded_for_the_outbox(down_client: TestClient, engine: Engine) -> None:
    job = create_job(down_client)
    response = down_client.post(BATCH, json={"runs": entries(job["id"], 3)})
    assert response.status_code == 201, response.text
    with Session(engine) as session:
        assert [run.enqueued_at for run in session.scalars(select(JobRun))] == [None] * 3
