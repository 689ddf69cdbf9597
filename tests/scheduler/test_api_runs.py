"""The runs API on SQLite and PostgreSQL with a real Redis: manual runs, idempotency, actions, lists, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import Engine, event
from sqlmodel import Session, col, select
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    client_fixture,
    count,
    create_job,
    create_run,
    dead_dispatcher_fixture,
    down_client_fixture,
    live_dispatcher_fixture,
    move_run,
    queued_messages,
)

from scheduler.clock import FrozenClock
from scheduler.models import JobRun, RunChunk, RunItem, RunStatus

S = RunStatus


def _run_row(engine: Engine, run_id: int) -> JobRun:
    with Session(engine) as session:
        run = session.get(JobRun, run_id)
        assert run is not None
        return run


def test_manual_run_is_recorded_and_sent_to_its_queue(
    client: TestClient, engine: Engine, redis_client: redis.Redis
) -> None:
    job = create_job(client)
    response = client.post("/api/v1/runs", json={"job_id": job["id"], "run_properties": {"as_of": "2026-05-31"}})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["status"] == "CREATED" and run["trigger"] == "MANUAL"
    assert run["job_id"] == job["id"] and run["job_name"] == "nightly" and run["job_type"] == "fake"
    assert run["run_properties"] == {"as_of": "2026-05-31"}
    assert run["created_by"] == "key:test-admin" and run["created_at"] == "2026-06-01T12:00:00Z"
    assert run["enqueued_at"] == "2026-06-01T12:00:00Z"
    assert run["actions"] == ["cancel"]
    assert run["progress"] == {"chunks_total": 0, "chunks_done": 0, "percent": 0.0, "phase": None,
                               "records_done": 0, "records_total": None}
    assert run["item_counts"] == {}
    assert [(e["from_status"], e["to_status"], e["actor"]) for e in run["events"]] == [
        (None, "CREATED", "key:test-admin")
    ]
    # The plan step waits in Redis on the job type's queue.
    messages = queued_messages(redis_client, "fake_q")
    assert len(messages) == 1
    assert messages[0]["actor_name"] == "run_step__fake_q"
    assert messages[0]["args"] == [run["id"], "plan", 0]
    assert _run_row(engine, run["id"]).enqueued_at is not None
    # The answer, built from the row just written, is the run as it is read back.
    assert client.get(f"/api/v1/runs/{run['id']}").json() == run


def test_a_new_manual_run_is_one_transaction_of_a_read_and_one_write(client: TestClient, engine: Engine) -> None:
    # Given a job (and the caller's key known to the API)
    job = create_job(client)
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    def commit(conn: object) -> None:
        statements.append("COMMIT")

    event.listen(engine, "before_cursor_execute", record)
    event.listen(engine, "commit", commit)
    try:
        # When a run is asked for
        response = client.post("/api/v1/runs", json={"job_id": job["id"]})
    finally:
        event.remove(engine, "before_cursor_execute", record)
        event.remove(engine, "commit", commit)
    # Then the job is read and the run written with its event and sent stamp: one statement on PostgreSQL
    # (SQLite: the run, then its event), in one transaction
    assert response.status_code == 201, response.text
    writes = ["WITH"] if engine.dialect.name == "postgresql" else ["INSERT", "INSERT"]
    assert [s for s in statements if s != "BEGIN"] == ["SELECT", *writes, "COMMIT"], statements
    assert _run_row(engine, response.json()["id"]).enqueued_at is not None


def test_idempotency_key_returns_the_same_run(client: TestClient, engine: Engine, redis_client: redis.Redis) -> None:
    job = create_job(client)
    headers = {"Idempotency-Key": "invoice-batch-42"}
    first = client.post("/api/v1/runs", json={"job_id": job["id"]}, headers=headers)
    again = client.post("/api/v1/runs", json={"job_id": job["id"]}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["idempotency_key"] == "invoice-batch-42"
    assert count(engine, JobRun) == 1
    assert len(queued_messages(redis_client, "fake_q")) == 1

    other = create_job(client, name="other")
    body = assert_error(client.post("/api/v1/runs", json={"job_id": other["id"]}, headers=headers), 409,
                        "idempotency_mismatch")
    assert body["details"] == {"idempotency_key": "invoice-batch-42", "run_id": first.json()["id"],
                               "differs": ["job_id"]}
    assert count(engine, JobRun) == 1


def test_runs_are_refused_for_jobs_that_cannot_run(client: TestClient, engine: Engine) -> None:
    paused = create_job(client, name="paused")
    client.post(f"/api/v1/jobs/{paused['id']}/pause")
    assert "PAUSED" in assert_error(client.post("/api/v1/runs", json={"job_id": paused["id"]}), 409,
                                    "job_not_runnable")["message"]
    no_manual = create_job(client, name="scheduled-only", can_run_manual=False)
    assert "manual runs are disabled" in assert_error(
        client.post("/api/v1/runs", json={"job_id": no_manual["id"]}), 409, "job_not_runnable")["message"]
    archived = create_job(client, name="archived")
    client.post(f"/api/v1/jobs/{archived['id']}/archive")
    assert_error(client.post("/api/v1/runs", json={"job_id": archived["id"]}), 409, "job_not_runnable")
    assert_error(client.post("/api/v1/runs", json={"job_id": 999}), 404, "job_not_found")
    assert count(engine, JobRun) == 0


def test_bad_run_requests_are_422_and_write_nothing(client: TestClient, engine: Engine) -> None:
    job = create_job(client)
    nopreview = create_job(client, name="np", job_type="nopreview")
    assert_error(client.post("/api/v1/runs", json={"job_id": job["id"], "run_properties": {"as_of": "soon"}}),
                 422, "invalid_properties")
    assert_error(client.post("/api/v1/runs", json={"job_id": job["id"], "run_properties": {"x": 1}}), 422,
                 "invalid_properties")
    assert_error(client.post("/api/v1/runs", json={"job_id": job["id"], "surprise": True}), 422, "invalid_request")
    assert_error(client.post("/api/v1/runs", json={}), 422, "invalid_request")
    assert_error(client.post("/api/v1/runs", json={"job_id": "one"}), 422, "invalid_request")
    assert_error(client.post("/api/v1/runs", json={"job_id": nopreview["id"], "preview": True}), 422,
                 "invalid_input")
    assert_error(client.post("/api/v1/runs", json={"job_id": job["id"]}, headers={"Idempotency-Key": "k" * 201}),
                 422, "invalid_request")
    assert count(engine, JobRun) == 0


def test_cancel_a_created_run_and_refusals_name_the_allowed_actions(client: TestClient) -> None:
    run = create_run(client, create_job(client)["id"])
    body = assert_error(client.post(f"/api/v1/runs/{run['id']}/submit"), 409, "invalid_transition")
    assert body["details"]["allowed_actions"] == ["cancel"] and body["details"]["status"] == "CREATED"

    cancelled = client.post(f"/api/v1/runs/{run['id']}/cancel", json={"note": "wrong month"})
    assert cancelled.status_code == 200
    detail = cancelled.json()
    assert detail["status"] == "CANCELLED" and detail["finished_at"] == "2026-06-01T12:00:00Z"
    assert detail["actions"] == []
    assert detail["events"][-1] == {"from_status": "CREATED", "to_status": "CANCELLED",
                                    "at": "2026-06-01T12:00:00Z", "actor": "key:test-admin", "note": "wrong month"}

    body = assert_error(client.post(f"/api/v1/runs/{run['id']}/cancel"), 409, "invalid_transition")
    assert body["details"]["allowed_actions"] == []
    assert_error(client.post("/api/v1/runs/999/cancel"), 404, "run_not_found")


def test_submit_a_preview_sends_its_apply_steps(client: TestClient, engine: Engine, redis_client: redis.Redis) -> None:
    # Given a run a worker took to PREVIEW with two staged chunks
    run = create_run(client, create_job(client)["id"], preview=True)
    move_run(engine, run["id"], S.PROCESSING, S.PREVIEW)
    with Session(engine) as session:
        session.add_all([RunChunk(run_id=run["id"], chunk_no=n, items=1) for n in (0, 1)])
        session.commit()
    redis_client.delete("dramatiq:fake_q", "dramatiq:fake_q.msgs")
    assert client.get(f"/api/v1/runs/{run['id']}").json()["actions"] == ["submit", "delete"]
    # When it is submitted
    response = client.post(f"/api/v1/runs/{run['id']}/submit")
    # Then it is SUBMITTED and one apply step per chunk waits in Redis
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "SUBMITTED"
    assert sorted(m["args"][2] for m in queued_messages(redis_client, "fake_q")) == [0, 1]
    assert {tuple(m["args"][1:2]) for m in queued_messages(redis_client, "fake_q")} == {("apply",)}
    assert _run_row(engine, run["id"]).status == S.SUBMITTED
    # And a second submit is refused
    assert_error(client.post(f"/api/v1/runs/{run['id']}/submit"), 409, "invalid_transition")


def test_delete_a_preview_keeps_the_record(client: TestClient, engine: Engine) -> None:
    run = create_run(client, create_job(client)["id"], preview=True)
    move_run(engine, run["id"], S.PROCESSING, S.PREVIEW)
    deleted = client.post(f"/api/v1/runs/{run['id']}/delete").json()
    assert deleted["status"] == "DELETED"
    assert [e["to_status"] for e in deleted["events"]] == ["CREATED", "PROCESSING", "PREVIEW", "DELETED"]
    assert _run_row(engine, run["id"]).status == S.DELETED


def test_retry_a_failed_run_creates_a_new_run(client: TestClient, engine: Engine, redis_client: redis.Redis) -> None:
    run = create_run(client, create_job(client)["id"], run_properties={"as_of": "2026-05-31"})
    body = assert_error(client.post(f"/api/v1/runs/{run['id']}/retry"), 409, "invalid_transition")
    assert body["details"]["allowed_actions"] == ["cancel"]
    move_run(engine, run["id"], S.FAILED)
    assert client.get(f"/api/v1/runs/{run['id']}").json()["actions"] == ["retry"]

    response = client.post(f"/api/v1/runs/{run['id']}/retry")
    assert response.status_code == 201, response.text
    retry = response.json()
    assert retry["id"] != run["id"] and retry["retry_of"] == run["id"]
    assert retry["trigger"] == "RETRY" and retry["status"] == "CREATED"
    assert retry["run_properties"] == {"as_of": "2026-05-31"}
    assert retry["enqueued_at"] is not None
    assert [m["args"][0] for m in queued_messages(redis_client, "fake_q")] == [run["id"], retry["id"]]
    assert count(engine, JobRun) == 2


def test_run_details_show_items_and_counts(client: TestClient, engine: Engine) -> None:
    run = create_run(client, create_job(client)["id"])
    outcomes = ["ok"] * 3 + ["error"] * 2 + ["skipped"]
    with Session(engine) as session:
        session.add_all([
            RunItem(run_id=run["id"], item_key=f"ACC-{n:03}", outcome=o, detail={"n": n})
            for n, o in enumerate(outcomes)
        ])
        session.commit()
    detail = client.get(f"/api/v1/runs/{run['id']}").json()
    assert detail["item_counts"] == {"ok": 3, "error": 2, "skipped": 1}

    errors = client.get(f"/api/v1/runs/{run['id']}/items?outcome=error").json()
    assert [(i["key"], i["outcome"], i["detail"]) for i in errors["items"]] == [
        ("ACC-003", "error", {"n": 3}), ("ACC-004", "error", {"n": 4}),
    ]
    keys: list[str] = []
    cursor = ""
    while True:
        page = client.get(f"/api/v1/runs/{run['id']}/items?limit=4&cursor={cursor}").json()
        keys += [i["key"] for i in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert keys == [f"ACC-{n:03}" for n in range(6)]
    assert_error(client.get(f"/api/v1/runs/{run['id']}/items?outcome=maybe"), 422)
    assert_error(client.get(f"/api/v1/runs/{run['id']}/items?cursor=x1"), 400, "invalid_cursor")
    assert_error(client.get("/api/v1/runs/999/items"), 404, "run_not_found")
    assert_error(client.get("/api/v1/runs/999"), 404, "run_not_found")


def _make_runs(client: TestClient, engine: Engine, clock: FrozenClock) -> dict[str, list[int]]:
    """Seven runs over two jobs; some share a creation instant to exercise the keyset tie-break."""
    a = create_job(client, name="a")["id"]
    b = create_job(client, name="b", job_type="nopreview")["id"]
    ids: dict[str, list[int]] = {"a": [], "b": []}
    for minute, job, name in [(0, a, "a"), (0, a, "a"), (0, b, "b"), (1, a, "a"), (2, b, "b"), (2, a, "a"),
                              (3, a, "a")]:
        clock.set(datetime(2026, 6, 1, 12, minute, tzinfo=UTC))
        ids[name].append(create_run(client, job)["id"])
    move_run(engine, ids["a"][0], S.FAILED)
    move_run(engine, ids["b"][0], S.PROCESSING)
    return ids


def test_list_runs_filters(client: TestClient, engine: Engine, clock: FrozenClock) -> None:
    ids = _make_runs(client, engine, clock)
    everything = client.get("/api/v1/runs").json()
    assert len(everything["items"]) == 7 and everything["next_cursor"] is None
    newest_first = [r["id"] for r in everything["items"]]
    assert newest_first == sorted(newest_first, reverse=True)
    assert everything["items"][0]["job_name"] == "a"

    def listed(query: str) -> set[int]:
        response = client.get(f"/api/v1/runs?{query}")
        assert response.status_code == 200, response.text
        return {r["id"] for r in response.json()["items"]}

    assert listed("status=FAILED") == {ids["a"][0]}
    assert listed("status=FAILED&status=PROCESSING") == {ids["a"][0], ids["b"][0]}
    assert listed("status=failed,processing") == {ids["a"][0], ids["b"][0]}
    assert listed("job_id=999") == set()
    assert listed("job_type=nopreview") == set(ids["b"])
    assert listed("trigger=MANUAL") == set(ids["a"]) | set(ids["b"])
    assert listed("trigger=RETRY") == set()
    assert listed("created_from=2026-06-01T12:02:00Z") == {ids["b"][1], ids["a"][3], ids["a"][4]}
    assert listed("created_to=2026-06-01T12:01:00") == {ids["a"][0], ids["a"][1], ids["b"][0]}
    assert listed("created_from=2026-06-01T13:01:00%2B01:00&created_to=2026-06-01T12:02:00Z") == {ids["a"][2]}
    assert_error(client.get("/api/v1/runs?status=DONE"), 422, "invalid_request")
    assert_error(client.get("/api/v1/runs?trigger=sometimes"), 422, "invalid_request")
    assert_error(client.get("/api/v1/runs?created_from=yesterday"), 422, "invalid_request")
    assert_error(client.get("/api/v1/runs?limit=1001"), 422, "invalid_request")
    assert_error(client.get("/api/v1/runs?limit=0"), 422, "invalid_request")
    for bad in ("nonsense", "W10=", "WyJ4IiwgMV0"):
        assert_error(client.get(f"/api/v1/runs?cursor={bad}"), 400, "invalid_cursor")


def test_list_runs_by_job(client: TestClient, engine: Engine, clock: FrozenClock) -> None:
    ids = _make_runs(client, engine, clock)
    job_b = client.get(f"/api/v1/runs/{ids['b'][0]}").json()["job_id"]
    assert {r["id"] for r in client.get(f"/api/v1/runs?job_id={job_b}").json()["items"]} == set(ids["b"])


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_cursor_pagination_has_no_duplicates_or_gaps(
    client: TestClient, engine: Engine, clock: FrozenClock, limit: int
) -> None:
    _make_runs(client, engine, clock)
    expected = [r["id"] for r in client.get("/api/v1/runs?limit=500").json()["items"]]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query = f"limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/api/v1/runs?{query}").json()
        assert len(page["items"]) <= limit
        seen += [r["id"] for r in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and len(set(seen)) == 7
    assert pages == -(-7 // limit)


def test_csv_export_of_the_filtered_runs(client: TestClient, engine: Engine, clock: FrozenClock) -> None:
    ids = _make_runs(client, engine, clock)
    response = client.get("/api/v1/runs?format=csv&job_type=fake")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {int(r["id"]) for r in rows} == set(ids["a"])
    assert list(rows[0])[:6] == ["id", "job_id", "job_name", "job_type", "trigger", "status"]
    failed = next(r for r in rows if int(r["id"]) == ids["a"][0])
    assert failed["status"] == "FAILED" and failed["job_name"] == "a" and failed["created_at"].endswith("Z")
    assert failed["enqueued_at"].endswith("Z") and failed["error"] == ""

    by_accept = client.get("/api/v1/runs?status=FAILED", headers={"Accept": "text/csv"})
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(by_accept.text))] == [ids["a"][0]]
    # The export ignores limit: it is the whole filtered set.
    assert len(list(csv.DictReader(io.StringIO(client.get("/api/v1/runs?format=csv&limit=1").text)))) == 7


def test_csv_export_streams_past_one_page(client: TestClient, engine: Engine) -> None:
    job = create_job(client)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with Session(engine) as session:
        session.add_all([
            JobRun(job_id=job["id"], job_type="fake", created_at=base + timedelta(seconds=n)) for n in range(1203)
        ])
        session.commit()
    rows = list(csv.DictReader(io.StringIO(client.get("/api/v1/runs?format=csv").text)))
    assert len(rows) == 1203 and len({r["id"] for r in rows}) == 1203


def test_manual_run_while_redis_is_down_is_recorded_for_the_outbox(
    down_client: TestClient, engine: Engine
) -> None:
    # Given Redis unreachable
    job = create_job(down_client)
    # When a manual run is requested
    response = down_client.post("/api/v1/runs", json={"job_id": job["id"]})
    # Then it is accepted and recorded, not sent: beat's outbox sends it later
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "CREATED" and response.json()["enqueued_at"] is None
    row = _run_row(engine, response.json()["id"])
    assert row.status == S.CREATED and row.enqueued_at is None
    # And submitting a preview still works, the apply step waiting for beat
    move_run(engine, row.id or 0, S.PROCESSING, S.PREVIEW)
    assert down_client.post(f"/api/v1/runs/{row.id}/submit").json()["status"] == "SUBMITTED"
    # And readiness says which setting is at fault
    body = assert_error(down_client.get("/readyz"), 503, "broker_unavailable")
    assert body["details"]["setting"] == "SCHEDULER_REDIS_URL" and body["details"]["checks"]["database"] == "ok"
    assert "SCHEDULER_REDIS_URL" in body["message"]


def test_list_runs_orders_by_creation_then_id(client: TestClient, engine: Engine) -> None:
    job = create_job(client)
    same = datetime(2026, 5, 1, tzinfo=UTC)
    with Session(engine) as session:
        session.add_all([JobRun(job_id=job["id"], job_type="fake", created_at=same) for _ in range(3)])
        session.commit()
        expected = sorted(session.exec(select(col(JobRun.id))).all(), reverse=True)
    assert [r["id"] for r in client.get("/api/v1/runs?limit=1").json()["items"]] == expected[:1]
