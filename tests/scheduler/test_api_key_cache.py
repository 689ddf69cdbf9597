"""Verified keys are remembered for SCHEDULER_API_KEY_CACHE_SECONDS: revocation stops a key at once in the API
process that revoked it, and within that many seconds in any other (the CLI, another worker or replica)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, select
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    client_fixture,
    live_dispatcher_fixture,
    make_key,
)

from scheduler import auth
from scheduler.api.key_cache import KeyCache
from scheduler.models import ApiKey


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def revoke_elsewhere(engine: Engine, name: str) -> None:
    """Revoke a key the way ``scheduler keys revoke`` does: straight in the database, not through this API."""
    with Session(engine) as session:
        key = session.exec(select(ApiKey).where(ApiKey.name == name)).one()
        assert key.id is not None
        auth.revoke_key(session, key.id, actor="cli")


def use_cache(client: TestClient, seconds: float) -> FakeMonotonic:
    clock = FakeMonotonic()
    client.app.state.services.key_cache = KeyCache(seconds, monotonic=clock)  # type: ignore[attr-defined]
    return clock


def test_a_key_revoked_elsewhere_stops_working_within_the_cache_seconds(client: TestClient, engine: Engine) -> None:
    clock = use_cache(client, 1.0)
    token = make_key(engine, "operator", "ci")
    assert client.get("/api/v1/runs", headers=bearer(token)).status_code == 200
    # When the key is revoked by another process
    revoke_elsewhere(engine, "ci")
    # Then this API process may still take it for what is left of the second
    clock.now += 0.9
    assert client.get("/api/v1/runs", headers=bearer(token)).status_code == 200
    # And not a moment longer
    clock.now += 0.2
    assert_error(client.get("/api/v1/runs", headers=bearer(token)), 401, "invalid_api_key")
    clock.now += 5
    assert_error(client.get("/api/v1/runs", headers=bearer(token)), 401, "invalid_api_key")


def test_a_key_revoked_through_this_api_stops_working_at_once(client: TestClient, engine: Engine) -> None:
    use_cache(client, 60.0)
    admin = bearer(make_key(engine, "admin"))
    created = client.post("/api/v1/keys", json={"name": "ci", "role": "operator"}, headers=admin).json()
    assert client.get("/api/v1/runs", headers=bearer(created["token"])).status_code == 200
    assert client.post(f"/api/v1/keys/{created['id']}/revoke", headers=admin).status_code == 200
    assert_error(client.get("/api/v1/runs", headers=bearer(created["token"])), 401, "invalid_api_key")
    # The admin's own key, forgotten with the others, is simply verified again
    assert client.get("/api/v1/keys", headers=admin).status_code == 200


def test_with_no_cache_every_request_looks_the_key_up(client: TestClient, engine: Engine) -> None:
    use_cache(client, 0)
    token = make_key(engine, "operator", "ci")
    assert client.get("/api/v1/runs", headers=bearer(token)).status_code == 200
    revoke_elsewhere(engine, "ci")
    assert_error(client.get("/api/v1/runs", headers=bearer(token)), 401, "invalid_api_key")


def test_unknown_keys_are_refused_every_time_and_roles_still_count(client: TestClient, engine: Engine) -> None:
    use_cache(client, 60.0)
    viewer = bearer(make_key(engine, "viewer"))
    for _ in range(2):
        assert_error(client.get("/api/v1/runs", headers=bearer("sch_deadbeef_wrong")), 401, "invalid_api_key")
        assert client.get("/api/v1/runs", headers=viewer).status_code == 200
        assert_error(client.post("/api/v1/runs", json={"job_id": 1}, headers=viewer), 403, "insufficient_role")


def test_the_cache_keeps_only_token_hashes(engine: Engine) -> None:
    cache = KeyCache(60.0)
    token = make_key(engine, "viewer", "v")
    with Session(engine) as session:
        assert cache.principal(session, token).name == "v"
    assert token not in repr(cache._known) and auth.hash_token(token) in cache._known
