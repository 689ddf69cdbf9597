"""Page sessions (random server-side ids, ended by logout, timeouts and revocation), login CSRF, security headers."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    client_fixture,
    count,
    create_job,
    live_dispatcher_fixture,
    make_key,
    move_run,
)

from scheduler import auth
from scheduler.api.app import create_app
from scheduler.clock import FrozenClock
from scheduler.models import ApiSession, JobRun, RunStatus
from scheduler.settings import Settings

PAGE_CSP = "default-src 'self'"


def page_client(client: TestClient, **kwargs: Any) -> TestClient:
    """A browser-like client of the same app: no key header, cookies only."""
    return TestClient(client.app, **kwargs)


def log_in(browser: TestClient, token: str) -> dict[str, Any]:
    csrf = browser.get("/login").json()["csrf_token"]
    response = browser.post("/login", data={"api_key": token, "csrf_token": csrf})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_login_opens_a_server_side_session_whose_cookie_is_not_the_key(client: TestClient, engine: Engine) -> None:
    token = make_key(engine, "operator", name="alice")
    job_id = create_job(client)["id"]
    browser = page_client(client)

    # When the user logs in with their key
    answer = log_in(browser, token)
    assert answer["name"] == "alice" and answer["role"] == "operator"

    # Then the cookie is a random session id, HTTP-only and SameSite, never the key; only its hash is stored
    set_cookies = browser.post("/login", data={"api_key": token, "csrf_token": answer["csrf_token"]}) \
        .headers.get_list("set-cookie")
    session_cookie = next(c for c in set_cookies if c.startswith("scheduler_session="))
    assert "HttpOnly" in session_cookie and "samesite=lax" in session_cookie.lower()
    assert "Secure" not in session_cookie  # plain HTTP here
    session_id = browser.cookies["scheduler_session"]
    assert token not in session_id and session_id != token and len(session_id) >= 40
    with Session(engine) as session:
        stored = session.exec(select(ApiSession)).all()
    assert len(stored) == 1  # logging in again replaced the first session
    assert stored[0].id_hash == auth.hash_token(session_id) and session_id not in stored[0].id_hash

    # And reads need only the cookie; changes need the session's CSRF token too
    csrf = browser.cookies["scheduler_csrf"]
    me = browser.get("/api/v1/me").json()
    assert me["name"] == "alice" and me["role"] == "operator" and me["via_session"] is True
    assert_error(browser.post("/api/v1/runs", json={"job_id": job_id}), 403, "csrf_rejected")
    assert_error(browser.post("/api/v1/runs", json={"job_id": job_id}, headers={"X-CSRF-Token": "guess"}), 403,
                 "csrf_rejected")
    assert count(engine, JobRun) == 0
    run = browser.post("/api/v1/runs", json={"job_id": job_id}, headers={"X-CSRF-Token": csrf})
    assert run.status_code == 201 and run.json()["created_by"] == "key:alice"
    # An HTML form may carry the token as a field instead
    move_run(engine, run.json()["id"], RunStatus.FAILED)
    assert_error(browser.post(f"/api/v1/runs/{run.json()['id']}/retry", data={"csrf_token": "nope"}), 403,
                 "csrf_rejected")
    assert browser.post(f"/api/v1/runs/{run.json()['id']}/retry", data={"csrf_token": csrf}).status_code == 201


def test_logout_ends_the_session_on_the_server(client: TestClient, engine: Engine) -> None:
    browser = page_client(client)
    log_in(browser, make_key(engine, "viewer"))
    session_id = browser.cookies["scheduler_session"]
    assert browser.get("/api/v1/runs").status_code == 200

    # When the user logs out
    assert browser.post("/logout").status_code == 204
    # Then the cookie is gone, and a copy of it (a stolen cookie) no longer works either
    assert "scheduler_session" not in browser.cookies
    assert_error(browser.get("/api/v1/runs"), 401, "missing_credentials")
    replay = page_client(client, cookies={"scheduler_session": session_id})
    assert_error(replay.get("/api/v1/runs"), 401, "session_ended")
    assert count(engine, ApiSession) == 0
    # And a fresh login form token was handed out for the next login
    assert browser.cookies.get("scheduler_csrf")


def test_revoking_a_key_ends_its_sessions_at_once(client: TestClient, engine: Engine) -> None:
    created = client.post("/api/v1/keys", json={"name": "page", "role": "viewer"}).json()
    browser, other_tab = page_client(client), page_client(client)
    log_in(browser, created["token"])
    log_in(other_tab, created["token"])
    assert count(engine, ApiSession) == 2
    client.post(f"/api/v1/keys/{created['id']}/revoke")
    assert count(engine, ApiSession) == 0
    assert_error(browser.get("/api/v1/runs"), 401, "session_ended")
    assert_error(other_tab.get("/api/v1/runs"), 401, "session_ended")


def test_sessions_end_after_the_idle_and_the_absolute_timeouts(
    client: TestClient, engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    token = make_key(engine, "viewer")
    idle, absolute = timedelta(seconds=settings.session_idle_seconds), timedelta(seconds=settings.session_max_seconds)
    assert idle < absolute

    # A session left alone longer than the idle timeout has ended
    browser = page_client(client)
    log_in(browser, token)
    clock.advance(idle - timedelta(seconds=1))
    assert browser.get("/api/v1/runs").status_code == 200  # used just in time: it stays alive
    clock.advance(idle - timedelta(seconds=1))
    assert browser.get("/api/v1/runs").status_code == 200
    clock.advance(idle)
    assert_error(browser.get("/api/v1/runs"), 401, "session_ended")

    # A session in constant use still ends at the absolute timeout
    log_in(browser, token)
    used_for = timedelta(0)
    while used_for + idle / 2 < absolute:
        clock.advance(idle / 2)
        used_for += idle / 2
        assert browser.get("/api/v1/runs").status_code == 200
    clock.advance(absolute - used_for)
    assert_error(browser.get("/api/v1/runs"), 401, "session_ended")


def test_the_login_form_needs_its_csrf_token(client: TestClient, engine: Engine) -> None:
    token = make_key(engine, "admin")
    browser = page_client(client)
    # Without the pre-session cookie and field (another site posting the form), or with a wrong one: refused
    assert_error(browser.post("/login", data={"api_key": token}), 403, "csrf_rejected")
    csrf = browser.get("/").cookies.get("scheduler_csrf") or browser.cookies["scheduler_csrf"]
    assert_error(browser.post("/login", data={"api_key": token, "csrf_token": "forged"}), 403, "csrf_rejected")
    assert count(engine, ApiSession) == 0
    # A wrong key is 401 even with the token
    assert_error(browser.post("/login", data={"api_key": "sch_bad_bad", "csrf_token": csrf}), 401,
                 "invalid_api_key")
    # With the token from the page shell's cookie: logged in, and the CSRF token is rotated
    answer = browser.post("/login", data={"api_key": token, "csrf_token": csrf})
    assert answer.status_code == 200
    assert answer.json()["csrf_token"] != csrf and browser.cookies["scheduler_csrf"] == answer.json()["csrf_token"]


def test_login_redirects_only_to_same_site_paths(client: TestClient, engine: Engine) -> None:
    token = make_key(engine, "viewer")
    browser = page_client(client)
    csrf = browser.get("/login").json()["csrf_token"]
    response = browser.post("/login", data={"api_key": token, "csrf_token": csrf, "next": "/runs"},
                            follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/runs"
    csrf = browser.cookies["scheduler_csrf"]
    response = browser.post("/login", data={"api_key": token, "csrf_token": csrf, "next": "//evil.example"},
                            follow_redirects=False)
    assert response.status_code == 200


def test_a_key_header_wins_over_the_cookie_and_needs_no_csrf(client: TestClient, engine: Engine) -> None:
    job_id = create_job(client)["id"]
    browser = page_client(client)
    log_in(browser, make_key(engine, "viewer"))
    run = browser.post("/api/v1/runs", json={"job_id": job_id},
                       headers={"Authorization": f"Bearer {make_key(engine, 'operator', name='svc')}"})
    assert run.status_code == 201 and run.json()["created_by"] == "key:svc"


def test_login_and_logout_are_logged_without_secrets(
    client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    token = make_key(engine, "viewer", name="auditor")
    browser = page_client(client)
    with caplog.at_level(logging.INFO, logger="scheduler"):
        log_in(browser, token)
        session_id, csrf = browser.cookies["scheduler_session"], browser.cookies["scheduler_csrf"]
        browser.post("/logout")
    messages = [r.getMessage() for r in caplog.records]
    assert any("login" in m and "auditor" in m for m in messages), messages
    assert any("logout" in m for m in messages), messages
    for record in caplog.records:
        text = record.getMessage() + str(vars(record))
        assert token not in text and session_id not in text and csrf not in text


# ---------------------------------------------------------------- headers and HTTPS


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/v1/jobs", "/api/v1/nope", "/login", "/healthz"])
def test_security_headers_on_every_answer(client: TestClient, path: str) -> None:
    response = client.get(path)
    headers = response.headers
    assert headers["content-security-policy"].startswith(PAGE_CSP)
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in headers  # plain HTTP
    if path.startswith(("/api/", "/login")):
        assert headers["cache-control"] == "no-store"


def test_errors_carry_the_headers_too(client: TestClient) -> None:
    response = page_client(client).get("/api/v1/jobs")
    assert response.status_code == 401
    assert response.headers["content-security-policy"].startswith(PAGE_CSP)


def test_docs_get_a_relaxed_policy_of_their_own(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200 and "swagger-ui" in response.text
    policy = response.headers["content-security-policy"]
    assert "https://cdn.jsdelivr.net" in policy and "'sha256-" in policy and "frame-ancestors 'none'" in policy
    assert "script-src 'self' https://cdn.jsdelivr.net 'sha256-" in policy  # no 'unsafe-inline' for scripts
    assert page_client(client).get("/openapi.json").status_code == 200  # the contract is public


def test_over_https_cookies_are_secure_and_hsts_is_sent(client: TestClient, engine: Engine) -> None:
    browser = page_client(client, base_url="https://testserver")
    assert browser.get("/healthz").headers["strict-transport-security"].startswith("max-age=")
    token, csrf = make_key(engine, "viewer"), browser.get("/login").json()["csrf_token"]
    login = browser.post("/login", data={"api_key": token, "csrf_token": csrf})
    logout = browser.post("/logout")
    cookies = login.headers.get_list("set-cookie") + logout.headers.get_list("set-cookie")
    assert len(cookies) == 4 and all("Secure" in c for c in cookies), cookies


@pytest.mark.parametrize("trusted", [False, True])
def test_forwarded_proto_counts_only_behind_a_trusted_proxy(
    settings: Settings, engine: Engine, clock: FrozenClock, trusted: bool
) -> None:
    app = create_app(settings.model_copy(update={"trust_forwarded_proto": trusted}), engine=engine, clock=clock)
    browser = TestClient(app, headers={"X-Forwarded-Proto": "https"})
    response = browser.get("/login")
    assert ("Secure" in response.headers["set-cookie"]) is trusted
    assert ("strict-transport-security" in response.headers) is trusted
