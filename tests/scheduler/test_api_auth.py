"""Closed by default: every API route needs a key, the authorization matrix, keys and their audit, revocation.

Page sessions, login CSRF and the security headers are in ``test_api_sessions.py``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TEST_ADMIN,
    TestClient,
    assert_error,
    client_fixture,
    count,
    create_job,
    create_run,
    fake_registry,
    job_body,
    live_dispatcher_fixture,
    make_key,
)

from scheduler.api.app import create_app
from scheduler.clock import FrozenClock
from scheduler.dispatch import Dispatcher
from scheduler.models import ApiKey, JobEvent, JobRun, RunEvent, RunStatus
from scheduler.settings import Settings

ROLES = ("viewer", "operator", "admin")

LEAST_ROLE: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/job-types"): "viewer",
    ("GET", "/api/v1/job-types/{name}"): "viewer",
    ("GET", "/api/v1/jobs"): "viewer",
    ("POST", "/api/v1/jobs"): "admin",
    ("GET", "/api/v1/jobs/{job_id}"): "viewer",
    ("POST", "/api/v1/jobs/{job_id}/pause"): "admin",
    ("POST", "/api/v1/jobs/{job_id}/resume"): "admin",
    ("POST", "/api/v1/jobs/{job_id}/archive"): "admin",
    ("GET", "/api/v1/jobs/{job_id}/next-fires"): "viewer",
    ("POST", "/api/v1/jobs/{job_id}/backfill"): "operator",
    ("POST", "/api/v1/runs"): "operator",
    ("POST", "/api/v1/runs/batch"): "operator",
    ("GET", "/api/v1/runs"): "viewer",
    ("GET", "/api/v1/runs/{run_id}"): "viewer",
    ("GET", "/api/v1/runs/{run_id}/items"): "viewer",
    ("POST", "/api/v1/runs/{run_id}/submit"): "operator",
    ("POST", "/api/v1/runs/{run_id}/delete"): "operator",
    ("POST", "/api/v1/runs/{run_id}/cancel"): "operator",
    ("POST", "/api/v1/runs/{run_id}/retry"): "operator",
    ("GET", "/api/v1/refused-requests"): "operator",
    ("POST", "/api/v1/keys"): "admin",
    ("GET", "/api/v1/keys"): "admin",
    ("POST", "/api/v1/keys/{key_id}/revoke"): "admin",
    ("GET", "/api/v1/me"): "viewer",
}
"""The authorization matrix: the least role each API route admits (higher roles are admitted too)."""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path template) the published contract lists under /api/v1."""
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return sorted((method.upper(), path) for path, operations in paths.items() if path.startswith("/api/v1")
                  for method in operations)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "999999", path)


@pytest.fixture(name="bare")
def bare_fixture(settings: Settings, engine: Engine, clock: FrozenClock, live_dispatcher: Dispatcher) -> TestClient:
    """A client that sends no key, on a database where no key has ever been created."""
    return TestClient(create_app(settings, engine=engine, registry=fake_registry(), dispatcher=live_dispatcher,
                                 clock=clock))


def test_a_fresh_installation_answers_401_on_every_api_route(bare: TestClient, engine: Engine) -> None:
    # Given no key at all (the state of a first start)
    assert count(engine, ApiKey) == 0
    # Then every route of the contract refuses a request without a key, before looking at its input
    for method, path in api_routes(bare):
        response = bare.request(method, concrete(path), json={})
        body = assert_error(response, 401, "missing_credentials")
        assert response.headers["www-authenticate"] == "Bearer", (method, path)
        assert "API key" in body["message"]
    # And a made-up key is refused too: there is no anonymous mode
    assert_error(bare.get("/api/v1/jobs", headers=bearer("sch_nope_nope")), 401, "invalid_api_key")
    assert count(engine, JobRun) == 0


def test_the_matrix_names_every_api_route(client: TestClient) -> None:
    assert set(api_routes(client)) == set(LEAST_ROLE), "a route was added or removed: classify it in LEAST_ROLE"


@pytest.mark.parametrize("role", ROLES)
def test_authorization_matrix(client: TestClient, engine: Engine, role: str) -> None:
    # Given a key of this role
    headers = bearer(make_key(engine, role))
    rank = ROLES.index(role)
    for (method, path), least in LEAST_ROLE.items():
        response = client.request(method, concrete(path), json={}, headers=headers)
        if rank < ROLES.index(least):
            # Then routes above the role are refused, naming the role needed
            body = assert_error(response, 403, "insufficient_role")
            assert body["details"] == {"required_role": least, "role": role}, (method, path)
        else:
            # And the others get past authorization (to a 2xx, or to what the made-up ids and body deserve)
            assert response.status_code not in (401, 403), (method, path, response.text)
    # And nothing was changed by the refused requests
    assert count(engine, JobRun) == 0


def test_every_action_is_recorded_under_the_key_that_did_it(client: TestClient, engine: Engine) -> None:
    admin, operator = bearer(make_key(engine, "admin", "alice")), bearer(make_key(engine, "operator", "bob"))
    job = create_job(client, headers=admin)
    run = create_run(client, job["id"], headers=operator)
    client.post(f"/api/v1/runs/{run['id']}/cancel", headers=operator)
    client.post(f"/api/v1/jobs/{job['id']}/pause", headers=admin)
    assert job["created_by"] == "key:alice" and run["created_by"] == "key:bob"
    with Session(engine) as session:
        assert session.exec(select(col(JobEvent.actor)).order_by(col(JobEvent.id))).all() == ["key:alice"] * 2
        assert session.exec(select(col(RunEvent.actor)).order_by(col(RunEvent.id))).all() == ["key:bob"] * 2
    assert count(engine, JobRun, col(JobRun.status) == RunStatus.CANCELLED) == 1


def test_keys_through_the_api_token_once_hash_stored_creator_and_revoker_recorded(
    client: TestClient, engine: Engine
) -> None:
    # When an admin creates a key
    response = client.post("/api/v1/keys", json={"name": "ci", "role": "operator"})
    assert response.status_code == 201, response.text
    created = response.json()
    token = created["token"]
    assert token.startswith(f"sch_{created['prefix']}_") and created["role"] == "operator"
    assert created["created_by"] == f"key:{TEST_ADMIN}" and created["revoked_by"] is None
    # Then only its hash is stored, and the list never shows tokens
    with Session(engine) as session:
        stored = session.exec(select(ApiKey).where(col(ApiKey.name) == "ci")).one()
    assert stored.token_hash != token and len(stored.token_hash) == 64
    listed = client.get("/api/v1/keys").json()["items"]
    assert [k["name"] for k in listed] == [TEST_ADMIN, "ci"]
    assert all("token" not in k and "token_hash" not in k for k in listed) and token not in str(listed)
    # And the key works until it is revoked, at once
    assert client.get("/api/v1/runs", headers=bearer(token)).status_code == 200
    revoked = client.post(f"/api/v1/keys/{created['id']}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None and revoked.json()["revoked_by"] == f"key:{TEST_ADMIN}"
    assert_error(client.get("/api/v1/runs", headers=bearer(token)), 401, "invalid_api_key")
    # Revoking again changes nothing; unknown keys are 404
    assert client.post(f"/api/v1/keys/{created['id']}/revoke").json() == revoked.json()
    assert_error(client.post("/api/v1/keys/999/revoke"), 404, "api_key_not_found")


def test_key_names_are_unique(client: TestClient, engine: Engine) -> None:
    assert client.post("/api/v1/keys", json={"name": "ci", "role": "viewer"}).status_code == 201
    body = assert_error(client.post("/api/v1/keys", json={"name": " ci ", "role": "admin"}), 409,
                        "duplicate_key_name")
    assert body["details"] == {"name": "ci"}
    assert count(engine, ApiKey, col(ApiKey.name) == "ci") == 1


def test_revoking_every_key_does_not_reopen_the_api(client: TestClient, engine: Engine) -> None:
    admin = bearer(make_key(engine, "admin"))
    for key in client.get("/api/v1/keys", headers=admin).json()["items"]:
        client.post(f"/api/v1/keys/{key['id']}/revoke", headers=admin)
    assert_error(client.get("/api/v1/jobs"), 401, "invalid_api_key")
    assert_error(client.get("/api/v1/jobs", headers={"Authorization": ""}), 401, "missing_credentials")


@pytest.mark.parametrize(
    ("body", "code"),
    [({"name": "x", "role": "root"}, "invalid_request"), ({"name": ""}, "invalid_request"),
     ({"name": "x", "extra": 1}, "invalid_request")],
)
def test_bad_key_requests(client: TestClient, engine: Engine, body: dict[str, Any], code: str) -> None:
    assert_error(client.post("/api/v1/keys", json=body), 422, code)
    assert count(engine, ApiKey) == 1  # the client's own


@pytest.mark.parametrize("role", ROLES)
def test_me_says_who_is_asking_and_what_the_role_may_do(client: TestClient, engine: Engine, role: str) -> None:
    me = client.get("/api/v1/me", headers=bearer(make_key(engine, role, f"{role}-1"))).json()
    assert me["name"] == f"{role}-1" and me["role"] == role and me["via_session"] is False
    may = {action for action, allowed in me["may"].items() if allowed}
    assert may == {"viewer": set(), "operator": {"create_run", "act_on_run", "backfill"},
                   "admin": {"create_run", "act_on_run", "backfill", "create_job", "change_job",
                             "manage_keys"}}[role]


def test_missing_and_invalid_keys_are_401_and_probes_stay_open(client: TestClient, engine: Engine) -> None:
    token = make_key(engine, "viewer")
    assert_error(client.get("/api/v1/jobs", headers={"Authorization": ""}), 401, "missing_credentials")
    assert_error(client.get("/api/v1/jobs", headers=bearer("sch_deadbeef_wrong")), 401, "invalid_api_key")
    assert_error(client.get("/api/v1/jobs", headers={"Authorization": "", "X-Api-Key": token + "x"}), 401,
                 "invalid_api_key")
    assert client.get("/api/v1/jobs", headers={"Authorization": "", "X-Api-Key": token}).status_code == 200
    assert client.get("/api/v1/jobs", headers={"Authorization": f"bearer {token}"}).status_code == 200
    # Operations endpoints stay open for probes and scrapers; they carry no business data.
    bare = TestClient(client.app)
    assert bare.get("/healthz").status_code == 200
    assert bare.get("/metrics").status_code == 200


def test_a_viewer_cannot_create_a_job_even_with_a_valid_body(client: TestClient, engine: Engine) -> None:
    viewer = bearer(make_key(engine, "viewer"))
    assert_error(client.post("/api/v1/jobs", json=job_body(), headers=viewer), 403, "insufficient_role")
    assert count(engine, JobEvent) == 0
