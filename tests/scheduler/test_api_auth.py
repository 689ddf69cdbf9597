"""API keys and roles: the open bootstrap, 401/403, revocation, keys endpoints, cookie login with CSRF."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    client_fixture,
    count,
    create_job,
    create_run,
    job_body,
    live_dispatcher_fixture,
    make_key,
    move_run,
)

from scheduler.models import ApiKey, JobEvent, JobRun, RunStatus


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_with_no_key_the_api_is_open_as_anonymous_admin(client: TestClient, engine: Engine) -> None:
    job = create_job(client)
    assert job["created_by"] == "anonymous"
    assert create_run(client, job["id"])["created_by"] == "anonymous"
    # Even a bogus key is not refused while no key exists.
    assert client.get("/api/v1/jobs", headers=bearer("sch_nope_nope")).status_code == 200


def test_first_key_created_through_the_api_closes_it(client: TestClient, engine: Engine) -> None:
    # Given the open API, an admin key is created through it
    response = client.post("/api/v1/keys", json={"name": "ops", "role": "admin"})
    assert response.status_code == 201, response.text
    created = response.json()
    token = created["token"]
    assert token.startswith(f"sch_{created['prefix']}_") and created["role"] == "admin"
    # Only the hash is stored
    with Session(engine) as session:
        stored = session.exec(select(ApiKey)).one()
    assert stored.token_hash != token and len(stored.token_hash) == 64
    # Then requests need the key
    assert_error(client.get("/api/v1/jobs"), 401, "missing_credentials")
    assert client.get("/api/v1/jobs", headers=bearer(token)).status_code == 200
    # And the key list never shows tokens
    keys = client.get("/api/v1/keys", headers=bearer(token)).json()["items"]
    assert [k["name"] for k in keys] == ["ops"] and "token" not in keys[0] and "token_hash" not in keys[0]


def test_missing_and_invalid_keys_are_401(client: TestClient, engine: Engine) -> None:
    token = make_key(engine, "admin")
    response = client.get("/api/v1/jobs")
    assert_error(response, 401, "missing_credentials")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(client.get("/api/v1/jobs", headers=bearer("sch_deadbeef_wrong")), 401, "invalid_api_key")
    assert_error(client.get("/api/v1/jobs", headers={"X-Api-Key": token + "x"}), 401, "invalid_api_key")
    assert client.get("/api/v1/jobs", headers={"X-Api-Key": token}).status_code == 200
    assert client.get("/api/v1/jobs", headers={"Authorization": f"bearer {token}"}).status_code == 200
    # Operations endpoints stay open for probes and scrapers.
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_roles(client: TestClient, engine: Engine) -> None:
    admin, operator, viewer = (bearer(make_key(engine, role)) for role in ("admin", "operator", "viewer"))
    job = create_job(client, headers=admin)

    # Viewers read, nothing more
    for path in ("/api/v1/jobs", f"/api/v1/jobs/{job['id']}", "/api/v1/runs", "/api/v1/job-types",
                 f"/api/v1/jobs/{job['id']}/next-fires"):
        assert client.get(path, headers=viewer).status_code == 200, path
    body = assert_error(client.post("/api/v1/runs", json={"job_id": job["id"]}, headers=viewer), 403,
                        "insufficient_role")
    assert body["details"] == {"required_role": "operator", "role": "viewer"}

    # Operators create runs and act on them, but do not manage jobs or keys
    run = create_run(client, job["id"], headers=operator)
    assert run["created_by"] == "key:operator-key"
    assert client.post(f"/api/v1/runs/{run['id']}/cancel", headers=operator).status_code == 200
    assert_error(client.post(f"/api/v1/runs/{run['id']}/retry", headers=viewer), 403)
    assert_error(client.post("/api/v1/jobs", json=job_body(name="x"), headers=operator), 403, "insufficient_role")
    assert_error(client.post(f"/api/v1/jobs/{job['id']}/pause", headers=operator), 403)
    assert_error(client.get("/api/v1/keys", headers=operator), 403)
    assert_error(client.post("/api/v1/keys", json={"name": "x"}, headers=operator), 403)

    # Admins do all of it, recorded under their key's name
    assert client.post(f"/api/v1/jobs/{job['id']}/pause", headers=admin).status_code == 200
    with Session(engine) as session:
        actors = session.exec(select(col(JobEvent.actor)).order_by(col(JobEvent.id))).all()
    assert actors == ["key:admin-key", "key:admin-key"]
    assert count(engine, JobRun, col(JobRun.status) == RunStatus.CANCELLED) == 1


def test_revoked_key_stops_working(client: TestClient, engine: Engine) -> None:
    admin = bearer(make_key(engine, "admin"))
    created = client.post("/api/v1/keys", json={"name": "ci", "role": "operator"}, headers=admin).json()
    assert client.get("/api/v1/runs", headers=bearer(created["token"])).status_code == 200
    revoked = client.post(f"/api/v1/keys/{created['id']}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_error(client.get("/api/v1/runs", headers=bearer(created["token"])), 401, "invalid_api_key")
    # Revoking again changes nothing; unknown keys are 404
    assert client.post(f"/api/v1/keys/{created['id']}/revoke", headers=admin).json() == revoked.json()
    assert_error(client.post("/api/v1/keys/999/revoke", headers=admin), 404, "api_key_not_found")


def test_revoking_every_key_does_not_reopen_the_api(client: TestClient, engine: Engine) -> None:
    admin = make_key(engine, "admin")
    key_id = client.get("/api/v1/keys", headers=bearer(admin)).json()["items"][0]["id"]
    client.post(f"/api/v1/keys/{key_id}/revoke", headers=bearer(admin))
    assert_error(client.get("/api/v1/jobs"), 401)


@pytest.mark.parametrize(
    ("body", "code"),
    [({"name": "x", "role": "root"}, "invalid_input"), ({"name": ""}, "invalid_request"),
     ({"name": "x", "extra": 1}, "invalid_request")],
)
def test_bad_key_requests(client: TestClient, engine: Engine, body: dict[str, object], code: str) -> None:
    assert_error(client.post("/api/v1/keys", json=body), 422, code)
    assert count(engine, ApiKey) == 0


def test_cookie_login_needs_csrf_for_changes(client: TestClient, engine: Engine) -> None:
    token = make_key(engine, "operator", name="alice")
    job_id = create_job(client, headers=bearer(make_key(engine, "admin")))["id"]

    assert_error(client.post("/login", data={"api_key": "sch_bad_bad"}), 401, "invalid_api_key")
    response = client.post("/login", data={"api_key": token})
    assert response.status_code == 200
    assert response.json()["name"] == "alice" and response.json()["role"] == "operator"
    csrf = response.json()["csrf_token"]
    set_cookies = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in set_cookies if c.startswith("scheduler_session="))
    assert "HttpOnly" in session_cookie and "samesite=lax" in session_cookie.lower()
    assert client.cookies.get("scheduler_csrf") == csrf

    # Reads with the cookie alone
    assert client.get("/api/v1/runs").status_code == 200
    # Changes need the CSRF token too
    assert_error(client.post("/api/v1/runs", json={"job_id": job_id}), 403, "csrf_rejected")
    assert_error(client.post("/api/v1/runs", json={"job_id": job_id}, headers={"X-CSRF-Token": "guess"}), 403,
                 "csrf_rejected")
    assert count(engine, JobRun) == 0
    run = client.post("/api/v1/runs", json={"job_id": job_id}, headers={"X-CSRF-Token": csrf})
    assert run.status_code == 201 and run.json()["created_by"] == "key:alice"
    # An HTML form may carry the token as a field instead
    move_run(engine, run.json()["id"], RunStatus.FAILED)
    retried = client.post(f"/api/v1/runs/{run.json()['id']}/retry", data={"csrf_token": csrf})
    assert retried.status_code == 201, retried.text
    assert_error(client.post(f"/api/v1/runs/{run.json()['id']}/retry", data={"csrf_token": "nope"}), 403,
                 "csrf_rejected")

    # Logging out clears the cookies
    assert client.post("/logout").status_code == 204
    assert "scheduler_session" not in client.cookies
    assert_error(client.get("/api/v1/runs"), 401, "missing_credentials")


def test_login_redirects_only_to_same_site_paths(client: TestClient, engine: Engine) -> None:
    token = make_key(engine, "viewer")
    response = client.post("/login", data={"api_key": token, "next": "/runs"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/runs"
    response = client.post("/login", data={"api_key": token, "next": "//evil.example"}, follow_redirects=False)
    assert response.status_code == 200


def test_revoked_key_in_a_cookie_is_refused(client: TestClient, engine: Engine) -> None:
    admin = bearer(make_key(engine, "admin"))
    created = client.post("/api/v1/keys", json={"name": "page", "role": "viewer"}, headers=admin).json()
    client.post("/login", data={"api_key": created["token"]})
    assert client.get("/api/v1/runs").status_code == 200
    client.post(f"/api/v1/keys/{created['id']}/revoke", headers=admin)
    assert_error(client.get("/api/v1/runs"), 401, "invalid_api_key")


def test_bearer_header_wins_over_the_cookie_and_needs_no_csrf(client: TestClient, engine: Engine) -> None:
    viewer = make_key(engine, "viewer")
    operator = make_key(engine, "operator", name="svc")
    job_id = create_job(client, headers=bearer(make_key(engine, "admin")))["id"]
    client.post("/login", data={"api_key": viewer})
    run = client.post("/api/v1/runs", json={"job_id": job_id}, headers=bearer(operator))
    assert run.status_code == 201 and run.json()["created_by"] == "key:svc"
