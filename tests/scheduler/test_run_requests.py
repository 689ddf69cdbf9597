"""request_run's message contract in process: runs made once per key, refusals counted, kept and listed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import select
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    client_fixture,
    create_job,
    fake_registry,
    live_dispatcher_fixture,
    make_key,
)

from scheduler.clock import FrozenClock
from scheduler.dispatch import Dispatcher
from scheduler.errors import InvalidMessage
from scheduler.models import JobRun, RefusedRequest
from scheduler.refused_requests import MASK, MAX_BODY_CHARS, Refusal, record_refusal
from scheduler.run_requests import RequestDesk, parse_request

RETENTION = timedelta(days=30)


@pytest.mark.parametrize(
    ("args", "kwargs", "says"),
    [
        ((), {}, "job: Field required"),
        ((1, {}, "key", False, "more"), {}, "at most 4 arguments (job, run_properties, idempotency_key, preview)"),
        (("nightly",), {"job": "other"}, "job given both by position and by name"),
        (("nightly",), {"colour": "red"}, "unknown argument 'colour' (known: job, run_properties, idempotency_key"),
        (("nightly",), {"run_properties": "as_of=2026-06-01"}, "run_properties: Input should be a valid dictionary"),
        (("nightly",), {"preview": "yes"}, "preview: Input should be a valid boolean"),
        ((True,), {}, "job: a job id (a number) or a job's name (1 to 200 characters) is needed"),
        (("  ",), {}, "job: a job id (a number) or a job's name"),
        (({"id": 1},), {}, "job: a job id (a number) or a job's name"),
        (("nightly",), {"idempotency_key": "k" * 201}, "idempotency_key: String should have at most 200 characters"),
    ],
)
def test_a_malformed_message_is_refused_saying_what_is_wrong(
    args: tuple[Any, ...], kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidMessage) as refused:
        parse_request(args, kwargs)
    assert refused.value.code == "invalid_message"
    assert refused.value.message.startswith("request_run message refused: ")
    assert says in refused.value.message


def test_positional_and_named_arguments_make_the_same_request() -> None:
    by_position = parse_request(("nightly", {"as_of": "2026-06-01"}, "svc-1", True), {})
    by_name = parse_request((), {"job": "nightly", "run_properties": {"as_of": "2026-06-01"},
                                 "idempotency_key": "svc-1", "preview": True})
    assert by_position == by_name
    assert parse_request((7,), {}).job == 7


def _refused(factory: sessionmaker[Session]) -> list[RefusedRequest]:
    with factory() as session:
        return list(session.scalars(select(RefusedRequest).order_by(RefusedRequest.id)))  # type: ignore[arg-type]


def _refusals_counted(reason: str) -> float:
    return REGISTRY.get_sample_value("scheduler_refused_requests_total", {"reason": reason}) or 0.0


def test_requests_make_one_run_per_key_and_refusals_are_counted_and_kept(
    client: TestClient, engine: Engine, clock: FrozenClock, live_dispatcher: Dispatcher
) -> None:
    # Given a job and the desk a worker's request_run actor uses
    job = create_job(client)
    factory = sessionmaker(engine)
    desk = RequestDesk(factory=factory, registry=fake_registry(), dispatcher=live_dispatcher, clock=clock,
                       retention=RETENTION)
    before = {reason: _refusals_counted(reason) for reason in ("job_not_found", "invalid_properties",
                                                               "invalid_message")}

    # When a service asks twice with one key (by name), once by id without a key
    first = desk.handle(("nightly",), {"idempotency_key": "billing-svc:42"}, message_id="m-1")
    again = desk.handle(("nightly",), {"idempotency_key": "billing-svc:42"}, message_id="m-2")
    by_id = desk.handle((job["id"],), {})
    # Then the key gave one run, and the run is found by its key
    assert first is not None and first == again and by_id not in (None, first)
    found = client.get("/api/v1/runs", params={"idempotency_key": "billing-svc:42"}).json()["items"]
    assert [(r["id"], r["created_by"], r["idempotency_key"]) for r in found] == [
        (first, "dramatiq:request_run", "billing-svc:42")]
    assert client.get("/api/v1/runs", params={"idempotency_key": "nobody-sent-this"}).json()["items"] == []

    # When requests that can never succeed arrive
    assert desk.handle(("no such job",), {"idempotency_key": "svc:unknown"}, message_id="m-3") is None
    assert desk.handle(("nightly",), {"run_properties": {"as_of": "someday", "api_token": "tok-123456"},
                                      "idempotency_key": "svc:bad-props"}, message_id="m-4") is None
    assert desk.handle(("nightly",), {"colour": "red"}, message_id="m-5") is None

    # Then no run was made for them, each is counted by reason and kept with why and what it said
    with factory() as session:
        assert len(session.scalars(select(JobRun)).all()) == 2
    for reason in before:
        assert _refusals_counted(reason) == before[reason] + 1, reason
    kept = _refused(factory)
    assert [(r.reason, r.job, r.idempotency_key, r.message_id) for r in kept] == [
        ("job_not_found", "no such job", "svc:unknown", "m-3"),
        ("invalid_properties", "nightly", "svc:bad-props", "m-4"),
        ("invalid_message", "nightly", None, "m-5"),
    ]
    assert kept[0].message == "job no such job does not exist"
    assert kept[1].message.startswith("run properties are invalid: as_of:")
    # The secret-looking property is masked; the rest is as sent
    assert kept[1].body == {"job": "nightly", "idempotency_key": "svc:bad-props",
                            "run_properties": {"as_of": "someday", "api_token": MASK}}
    assert "tok-123456" not in str(kept)

    # And an operator lists them, newest first, filtered by reason or key, page by page
    listed = client.get("/api/v1/refused-requests", params={"limit": 2}).json()
    assert [r["reason"] for r in listed["items"]] == ["invalid_message", "invalid_properties"]
    rest = client.get("/api/v1/refused-requests", params={"cursor": listed["next_cursor"]}).json()
    assert [r["reason"] for r in rest["items"]] == ["job_not_found"] and rest["next_cursor"] is None
    by_key = client.get("/api/v1/refused-requests", params={"idempotency_key": "svc:unknown"}).json()["items"]
    assert [(r["job"], r["message"], r["message_id"]) for r in by_key] == [
        ("no such job", "job no such job does not exist", "m-3")]
    assert client.get("/api/v1/refused-requests", params={"reason": "invalid_message"}).json()["items"][0][
        "body"] == {"job": "nightly", "colour": "red"}
    # A viewer may read runs but not what other services sent
    viewer = {"Authorization": f"Bearer {make_key(engine, 'viewer')}"}
    assert_error(client.get("/api/v1/refused-requests", headers=viewer), 403, "insufficient_role")
    assert_error(client.get("/api/v1/refused-requests", params={"cursor": "x"}), 400)


def test_refusals_past_their_retention_are_dropped_and_bodies_are_bounded(engine: Engine, clock: FrozenClock) -> None:
    factory = sessionmaker(engine)
    with factory() as session:
        record_refusal(session, Refusal(reason="job_not_found", message="old"), at=clock.now(), retention=RETENTION)
    clock.advance(RETENTION + timedelta(seconds=1))
    huge = {"job": "nightly", "run_properties": {"rows": ["x" * 100] * 100}}
    with factory() as session:
        record_refusal(session, Refusal(reason="invalid_properties", message="new", body=huge), at=clock.now(),
                       retention=RETENTION)
    kept = _refused(factory)
    assert [r.message for r in kept] == ["new"]
    assert kept[0].body["truncated"] is True and len(kept[0].body["start"]) == MAX_BODY_CHARS
