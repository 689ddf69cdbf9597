"""Health probes, metrics, the OpenAPI contract, and error answers that are never a bare 500."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    client_fixture,
    create_job,
    create_run,
    dead_dispatcher_fixture,
    down_client_fixture,
    fake_registry,
    live_dispatcher_fixture,
)

from scheduler.api.app import create_app
from scheduler.clock import FrozenClock
from scheduler.dispatch import Dispatcher
from scheduler.settings import Settings


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_names_the_database_setting_when_the_database_is_unreachable(
    tmp_path: Path, live_dispatcher: Dispatcher
) -> None:
    settings = Settings(data_dir=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none")
    client = TestClient(create_app(settings, registry=fake_registry(), dispatcher=live_dispatcher))
    body = assert_error(client.get("/readyz"), 503, "database_unavailable")
    assert body["details"]["setting"] == "SCHEDULER_DATABASE_URL"
    assert body["details"]["checks"]["redis"] == "ok"
    assert body["details"]["checks"]["database"].startswith("unreachable: ")
    assert "postgresql://" not in body["message"]  # a probe answer names the setting, never the URL
    # A request needing the database (to check its key) answers 503 naming the setting too, not a 500
    body = assert_error(client.get("/api/v1/jobs", headers={"Authorization": "Bearer sch_0_0"}), 503,
                        "database_unavailable")
    assert "SCHEDULER_DATABASE_URL" in body["message"]
    assert client.get("/healthz").status_code == 200


def test_healthz_stays_up_while_redis_is_down(down_client: TestClient) -> None:
    assert down_client.get("/healthz").status_code == 200
    assert_error(down_client.get("/readyz"), 503, "broker_unavailable")


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


def test_requests_are_counted_by_route_template_and_status(client: TestClient, engine: Engine) -> None:
    job = create_job(client)
    runs = [create_run(client, job["id"])["id"] for _ in range(2)]
    before = client.get("/metrics").text
    for run_id in [*runs, 999_999]:
        client.get(f"/api/v1/runs/{run_id}")
    client.get("/no/such/page/4711")
    text = client.get("/metrics").text

    def increase(name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        return _samples(text, name).get(key, 0) - _samples(before, name).get(key, 0)

    route = "/api/v1/runs/{run_id}"
    assert increase("scheduler_http_requests_total", method="GET", route=route, status="200") == 2
    assert increase("scheduler_http_requests_total", method="GET", route=route, status="404") == 1
    assert increase("scheduler_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert increase("scheduler_http_request_duration_seconds_count", method="GET", route=route) == 3
    routes = {dict(labels)["route"] for labels in _samples(text, "scheduler_http_requests_total")}
    assert not any("4711" in r or "999999" in r for r in routes) and "/api/v1/jobs" in routes
    # The API serves no cluster-wide gauge: the beat leader does, once for the cluster
    assert "scheduler_runs_in_status" not in text and "scheduler_job_last_success" not in text
    assert "scheduler_broker_up 1.0" in text


def test_unexpected_errors_are_a_logged_500_without_internals(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = client.app
    assert isinstance(app, FastAPI)

    def explode() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", explode)
    quiet = TestClient(app, raise_server_exceptions=False)
    body = assert_error(quiet.get("/boom"), 500, "internal_error")
    assert "secret" not in body["message"]
    assert any("unexpected error" in r.getMessage() for r in caplog.records)


def test_unknown_paths_and_methods_answer_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/api/v1/nothing"), 404, "not_found")
    assert_error(client.delete("/api/v1/jobs"), 405, "method_not_allowed")


def test_create_app_connects_to_nothing(tmp_path: Path) -> None:
    # Unreachable services must not matter until a request needs them.
    settings = Settings(data_dir=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none",
                        redis_url="redis://127.0.0.1:1/0")
    app = create_app(settings, clock=FrozenClock(datetime(2026, 6, 1, tzinfo=UTC)))
    assert TestClient(app).get("/healthz").status_code == 200


def test_openapi_is_the_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/api/v1/job-types", "get"), ("/api/v1/jobs", "post"), ("/api/v1/jobs", "get"),
        ("/api/v1/jobs/{job_id}", "get"), ("/api/v1/jobs/{job_id}/pause", "post"),
        ("/api/v1/jobs/{job_id}/resume", "post"), ("/api/v1/jobs/{job_id}/archive", "post"),
        ("/api/v1/jobs/{job_id}/next-fires", "get"), ("/api/v1/runs", "post"), ("/api/v1/runs", "get"),
        ("/api/v1/runs/{run_id}", "get"), ("/api/v1/runs/{run_id}/items", "get"),
        ("/api/v1/runs/{run_id}/submit", "post"), ("/api/v1/runs/{run_id}/delete", "post"),
        ("/api/v1/runs/{run_id}/cancel", "post"), ("/api/v1/runs/{run_id}/retry", "post"),
        ("/api/v1/keys", "post"), ("/api/v1/keys", "get"), ("/api/v1/keys/{key_id}/revoke", "post"),
        ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"), ("/login", "post"), ("/logout", "post"),
    ]:
        operation = paths[path][method]
        assert operation["summary"] and operation["tags"], (path, method)
    create = paths["/api/v1/jobs"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobCreate")
    assert create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobPublic")
    assert create["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    run_create = paths["/api/v1/runs"]["post"]
    assert {"200", "201", "409"} <= set(run_create["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in run_create["parameters"])
    assert "text/csv" in paths["/api/v1/runs"]["get"]["responses"]["200"]["content"]
    assert set(spec["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader", "APIKeyCookie"}
    assert paths["/api/v1/jobs"]["post"]["security"]
    detail = spec["components"]["schemas"]["RunDetail"]["properties"]
    for field in ("id", "job_id", "job_name", "status", "progress", "item_counts", "events", "actions"):
        assert field in detail
