"""Shared pieces of the API tests: fake job types, an app per test, direct database helpers.

The other ``test_api_*`` modules import from here; a module uses a fixture by importing its
``*_fixture`` function (named so the test parameter does not shadow it).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import redis
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.exceptions import StarletteDeprecationWarning

from scheduler import auth
from scheduler.api.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db import make_session_factory
from scheduler.dispatch import Dispatcher, make_broker
from scheduler.jobtypes import JobType, JobTypeRegistry, RunContext
from scheduler.lifecycle import transition
from scheduler.models import RunStatus
from scheduler.settings import Settings

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 fork and warns once, at import, when it finds httpx instead;
    # httpx works. Other API test modules import TestClient from here so the warning stays contained.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

DEAD_REDIS = "redis://127.0.0.1:1/0"


class FakeProperties(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: int = Field(ge=0, description="required: smallest amount to act on")
    label: str = "fake"


class FakeRunProperties(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: date | None = None


class FakeType(JobType):
    name = "fake"
    label = "Fake"
    queue = "fake_q"
    description = "a job type for the API tests"
    job_properties = FakeProperties
    run_properties = FakeRunProperties

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        return [{}]

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        return 0

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        return None

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return {}


class NoPreviewType(FakeType):
    name = "nopreview"
    label = "No preview"
    queue = "nopreview_q"
    supports_preview = False


def fake_registry() -> JobTypeRegistry:
    return JobTypeRegistry([FakeType(), NoPreviewType()])


def job_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "nightly",
        "job_type": "fake",
        "cron": "0 2 * * *",
        "timezone": "UTC",
        "properties": {"threshold": 5},
    }
    body.update(overrides)
    return body


def count(engine: Engine, model: Any, *where: Any) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def move_run(engine: Engine, run_id: int, *path: RunStatus) -> None:
    """Drive a run through statuses directly in the database, as a worker would."""
    with make_session_factory(engine)() as session:
        for status in path:
            assert transition(session, run_id, status, actor="worker-test")
        session.commit()


def make_key(engine: Engine, role: str, name: str | None = None) -> str:
    with make_session_factory(engine)() as session:
        _, token = auth.create_key(session, name or f"{role}-key", role, actor="test")
    return token


TEST_ADMIN = "test-admin"
"""The name of the admin key every test client sends; audit trails record ``key:test-admin``."""


def queued_messages(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The Dramatiq messages waiting on ``queue`` in Redis, decoded, oldest first."""
    ids = client.lrange(f"dramatiq:{queue}", 0, -1)
    bodies = client.hmget(f"dramatiq:{queue}.msgs", ids) if ids else []
    return [json.loads(body) for body in bodies if body is not None]


def build_client(
    *, settings: Settings, engine: Engine, clock: FrozenClock, dispatcher: Dispatcher
) -> TestClient:
    """A client of the app that sends the ``test-admin`` key on every request (the API is closed without one)."""
    app = create_app(settings, engine=engine, registry=fake_registry(), dispatcher=dispatcher, clock=clock)
    return TestClient(app, headers={"Authorization": f"Bearer {make_key(engine, 'admin', TEST_ADMIN)}"})


@pytest.fixture(name="live_dispatcher")
def live_dispatcher_fixture(redis_url: str, redis_client: redis.Redis) -> Iterator[Dispatcher]:
    broker = make_broker(redis_url)
    yield Dispatcher(broker, redis_url)
    broker.close()


@pytest.fixture(name="dead_dispatcher")
def dead_dispatcher_fixture() -> Iterator[Dispatcher]:
    broker = make_broker(DEAD_REDIS)
    yield Dispatcher(broker, DEAD_REDIS)
    broker.close()


@pytest.fixture(name="client")
def client_fixture(settings: Settings, engine: Engine, clock: FrozenClock, live_dispatcher: Dispatcher) -> TestClient:
    """An app on the test database, a real Redis and a frozen clock, with the fake job types; sends an admin key."""
    return build_client(settings=settings, engine=engine, clock=clock, dispatcher=live_dispatcher)


@pytest.fixture(name="down_client")
def down_client_fixture(
    settings: Settings, engine: Engine, clock: FrozenClock, dead_dispatcher: Dispatcher
) -> TestClient:
    """The same app with Redis unreachable."""
    return build_client(settings=settings, engine=engine, clock=clock, dispatcher=dead_dispatcher)


def create_job(client: TestClient, headers: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/v1/jobs", json=job_body(**overrides), headers=headers or {})
    assert response.status_code == 201, response.text
    return dict(response.json())


def create_run(client: TestClient, job_id: int, headers: dict[str, str] | None = None,
               **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/runs", json={"job_id": job_id, **body}, headers=headers or {})
    assert response.status_code == 201, response.text
    return dict(response.json())


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """An error answer: the status, and the ``{code, message, details}`` shape with a readable message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    if code is not None:
        assert body["code"] == code, body
    return dict(body)
