"""Idempotency-Key is strict: the same request answers the first run, a different one 409, also under races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from sqlalchemy import Engine
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    client_fixture,
    count,
    create_job,
    live_dispatcher_fixture,
    queued_messages,
)

from scheduler.models import JobRun

KEY = {"Idempotency-Key": "erp-2026-05-batch-7"}


def test_the_same_request_answers_the_first_run_once(
    client: TestClient, engine: Engine, redis_client: redis.Redis
) -> None:
    job = create_job(client)
    first = client.post("/api/v1/runs", json={"job_id": job["id"]}, headers=KEY)
    # The same request spelled with its defaults is the same request
    again = client.post("/api/v1/runs", json={"job_id": job["id"], "preview": False,
                                              "run_properties": {"as_of": None}}, headers=KEY)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert count(engine, JobRun) == 1 and len(queued_messages(redis_client, "fake_q")) == 1
    # It still answers the first run once the job is paused (nothing new would be created)
    client.post(f"/api/v1/jobs/{job['id']}/pause")
    assert client.post("/api/v1/runs", json={"job_id": job["id"]}, headers=KEY).status_code == 200


@pytest.mark.parametrize(("change", "differs"), [
    ({"preview": True}, ["preview"]),
    ({"run_properties": {"as_of": "2026-05-31"}}, ["run_properties"]),
    ({"preview": True, "run_properties": {"as_of": "2026-05-31"}}, ["preview", "run_properties"]),
])
def test_the_same_key_with_another_request_is_409_naming_what_differs(
    client: TestClient, engine: Engine, change: dict[str, Any], differs: list[str]
) -> None:
    job = create_job(client)
    first = client.post("/api/v1/runs", json={"job_id": job["id"]}, headers=KEY).json()
    answer = assert_error(client.post("/api/v1/runs", json={"job_id": job["id"], **change}, headers=KEY), 409,
                          "idempotency_mismatch")
    assert answer["details"] == {"idempotency_key": KEY["Idempotency-Key"], "run_id": first["id"],
                                 "differs": differs}
    assert count(engine, JobRun) == 1


@pytest.mark.parametrize("key", ["", "has space", "caf\u00e9", "k" * 201, "tab\tkey"])
def test_keys_are_bounded_visible_ascii(client: TestClient, engine: Engine, key: str) -> None:
    job = create_job(client)
    headers = {"Idempotency-Key": key.encode()}
    answer = assert_error(client.post("/api/v1/runs", json={"job_id": job["id"]}, headers=headers), 422)
    assert "Idempotency-Key" in answer["message"]
    assert count(engine, JobRun) == 0


def _race(client: TestClient, bodies: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Post every body at once with the same key, each from its own thread and client."""
    start = threading.Barrier(len(bodies))

    def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with TestClient(client.app, headers=dict(client.headers)) as own:
            start.wait()
            answer = own.post("/api/v1/runs", json=body, headers=KEY)
            return answer.status_code, answer.json()

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_racing_requests_with_one_key_create_one_run(
    client: TestClient, engine: Engine, redis_client: redis.Redis
) -> None:
    job = create_job(client)
    answers = _race(client, [{"job_id": job["id"]}] * 6)
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 200, 200, 200, 200, 201], answers
    assert len({body["id"] for _, body in answers}) == 1
    assert count(engine, JobRun) == 1 and len(queued_messages(redis_client, "fake_q")) == 1


def test_racing_requests_with_one_key_and_different_bodies(client: TestClient, engine: Engine) -> None:
    job = create_job(client)
    answers = _race(client, [{"job_id": job["id"], "preview": n % 2 == 0} for n in range(6)])
    created = [body for status, body in answers if status == 201]
    assert len(created) == 1 and count(engine, JobRun) == 1
    winner = created[0]
    for status, body in answers:
        if body is winner:
            continue
        if status == 200:
            assert body["id"] == winner["id"] and body["preview"] == winner["preview"]
        else:
            assert status == 409 and body["code"] == "idempotency_mismatch", body
            assert body["details"]["differs"] == ["preview"]
    assert sorted(status for status, _ in answers) == [200, 200, 201, 409, 409, 409]
