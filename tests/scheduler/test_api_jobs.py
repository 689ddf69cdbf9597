"""The jobs API on SQLite and PostgreSQL: create with every kind of bad input, lifecycle, lists, next fires."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from sqlalchemy import Engine
from sqlmodel import col
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    client_fixture,
    count,
    create_job,
    dead_dispatcher_fixture,
    down_client_fixture,
    job_body,
    live_dispatcher_fixture,
    queued_messages,
)

from scheduler.clock import FrozenClock
from scheduler.dispatch import WAKE_CHANNEL
from scheduler.models import Job, JobEvent, JobRun


def test_job_types_publish_their_property_templates(client: TestClient) -> None:
    response = client.get("/api/v1/job-types")
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    fake = next(t for t in body["items"] if t["name"] == "fake")
    assert fake["label"] == "Fake" and fake["queue"] == "fake_q" and fake["supports_preview"] is True
    assert fake["job_properties"]["required"] == ["threshold"]
    assert "as_of" in fake["run_properties"]["properties"]
    assert client.get("/api/v1/job-types/fake").json()["name"] == "fake"
    assert_error(client.get("/api/v1/job-types/nope"), 404)


def test_create_job_answers_the_job_and_writes_it_with_its_audit(
    client: TestClient, engine: Engine, clock: FrozenClock, redis_client: redis.Redis
) -> None:
    # Given beat listening for wake-ups
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(WAKE_CHANNEL)
    pubsub.get_message(timeout=1.0)
    # When a job is created
    response = client.post("/api/v1/jobs", json=job_body(description="nightly dunning"))
    # Then the answer is the job as stored
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["name"] == "nightly" and job["status"] == "ACTIVE" and job["job_type"] == "fake"
    assert job["properties"] == {"threshold": 5, "label": "fake"}
    assert job["created_by"] == "key:test-admin"
    assert job["created_at"] == "2026-06-01T12:00:00Z"
    assert job["next_fire_at"] == "2026-06-02T02:00:00Z"
    assert job["misfire_policy"] == "ONCE" and job["overlap_policy"] == "SKIP"
    assert job["schedule_description"]
    assert count(engine, Job) == 1
    assert count(engine, JobEvent, col(JobEvent.job_id) == job["id"]) == 1
    # And beat was woken
    message = pubsub.get_message(timeout=2.0)
    assert message is not None and message["channel"] == WAKE_CHANNEL.encode()
    pubsub.close()


BAD_JOBS: list[tuple[str, dict[str, Any], int, str]] = [
    ("invalid cron", {"cron": "61 * * * *"}, 422, "invalid_cron"),
    ("cron with too few fields", {"cron": "* *"}, 422, "invalid_cron"),
    ("unknown time zone", {"timezone": "Mars/Olympus"}, 422, "unknown_timezone"),
    ("unknown job type", {"job_type": "nope"}, 422, "unknown_job_type"),
    ("properties missing a required field", {"properties": {}}, 422, "invalid_properties"),
    ("properties of the wrong type", {"properties": {"threshold": "lots"}}, 422, "invalid_properties"),
    ("properties below the minimum", {"properties": {"threshold": -1}}, 422, "invalid_properties"),
    ("extra field", {"colour": "red"}, 422, "invalid_request"),
    ("blank name", {"name": "   "}, 422, "invalid_request"),
    ("created archived", {"status": "ARCHIVED"}, 422, "invalid_request"),
    ("lower-case enum", {"misfire_policy": "once"}, 422, "invalid_request"),
    ("bad email", {"notify_emails": ["not-an-email"]}, 422, "invalid_request"),
    ("unknown notify event", {"notify_on": ["sometimes"]}, 422, "invalid_request"),
    ("negative catch-up window", {"catchup_window": -5}, 422, "invalid_request"),
    ("zero max runtime", {"max_runtime": 0}, 422, "invalid_request"),
    ("properties not an object", {"properties": [1, 2]}, 422, "invalid_request"),
    ("no schedule and no manual runs", {"cron": None, "can_run_manual": False}, 422, "invalid_input"),
    ("review on a type without preview", {"job_type": "nopreview", "requires_review": True}, 422, "invalid_input"),
]


@pytest.mark.parametrize(("overrides", "status", "code"), [b[1:] for b in BAD_JOBS], ids=[b[0] for b in BAD_JOBS])
def test_bad_job_is_refused_and_nothing_is_written(
    client: TestClient, engine: Engine, overrides: dict[str, Any], status: int, code: str
) -> None:
    response = client.post("/api/v1/jobs", json=job_body(**overrides))
    assert_error(response, status, code)
    assert count(engine, Job) == 0
    assert count(engine, JobEvent) == 0


def test_messages_say_what_is_wrong(client: TestClient) -> None:
    body = assert_error(client.post("/api/v1/jobs", json=job_body(cron="61 * * * *")), 422)
    assert "61" in body["message"] and body["details"]["cron"] == "61 * * * *"
    body = assert_error(client.post("/api/v1/jobs", json=job_body(properties={})), 422)
    assert "threshold" in body["message"]
    assert body["details"]["errors"][0]["loc"] == ["threshold"]
    body = assert_error(client.post("/api/v1/jobs", json=job_body(colour="red")), 422)
    assert "colour" in body["message"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"content-type": "application/json"}),
        (b"", {"content-type": "application/json"}),
        (b"[1, 2]", {"content-type": "application/json"}),
        (b"name=x", {"content-type": "application/x-www-form-urlencoded"}),
    ],
    ids=["malformed json", "empty body", "array body", "form body"],
)
def test_malformed_bodies_are_422_not_500(
    client: TestClient, engine: Engine, content: bytes, headers: dict[str, str]
) -> None:
    assert_error(client.post("/api/v1/jobs", content=content, headers=headers), 422, "invalid_request")
    assert count(engine, Job) == 0


def test_duplicate_live_name_is_a_conflict_but_an_archived_name_is_reusable(client: TestClient, engine: Engine) -> None:
    first = create_job(client)
    body = assert_error(client.post("/api/v1/jobs", json=job_body()), 409, "job_name_taken")
    assert body["details"] == {"field": "name", "name": "nightly"}
    assert count(engine, Job) == 1
    assert client.post(f"/api/v1/jobs/{first['id']}/archive").status_code == 200
    second = create_job(client)
    assert second["id"] != first["id"]
    assert count(engine, Job) == 2


def test_pause_resume_archive_are_audited_and_refused_when_not_allowed(
    client: TestClient, clock: FrozenClock
) -> None:
    job = create_job(client)
    path = f"/api/v1/jobs/{job['id']}"
    assert client.get(path).json()["actions"] == ["pause", "archive"]

    paused = client.post(f"{path}/pause", json={"note": "month-end freeze"})
    assert paused.status_code == 200
    assert paused.json()["status"] == "PAUSED" and paused.json()["next_fire_at"] is None
    assert paused.json()["actions"] == ["resume", "archive"]

    body = assert_error(client.post(f"{path}/pause"), 409, "invalid_transition")
    assert body["details"]["allowed_actions"] == ["resume", "archive"]

    clock.set(datetime(2026, 6, 3, 8, 0, tzinfo=UTC))
    resumed = client.post(f"{path}/resume")
    assert resumed.status_code == 200
    # Resuming schedules from now on, not from the past.
    assert resumed.json()["status"] == "ACTIVE" and resumed.json()["next_fire_at"] == "2026-06-04T02:00:00Z"

    assert client.post(f"{path}/archive").json()["status"] == "ARCHIVED"
    body = assert_error(client.post(f"{path}/resume"), 409, "invalid_transition")
    assert body["details"]["allowed_actions"] == []

    detail = client.get(path).json()
    assert [(e["from_status"], e["to_status"]) for e in detail["events"]] == [
        (None, "ACTIVE"), ("ACTIVE", "PAUSED"), ("PAUSED", "ACTIVE"), ("ACTIVE", "ARCHIVED"),
    ]
    assert detail["events"][1]["note"] == "month-end freeze"
    assert detail["events"][1]["actor"] == "key:test-admin"
    assert detail["events"][2]["at"] == "2026-06-03T08:00:00Z"
    assert detail["actions"] == []


def test_job_actions_refuse_unknown_jobs_and_bad_notes(client: TestClient) -> None:
    assert_error(client.post("/api/v1/jobs/999/pause"), 404, "job_not_found")
    assert_error(client.get("/api/v1/jobs/999"), 404, "job_not_found")
    assert_error(client.get("/api/v1/jobs/abc"), 422, "invalid_request")
    job = create_job(client)
    assert_error(client.post(f"/api/v1/jobs/{job['id']}/pause", json={"note": "x", "extra": 1}), 422)
    assert client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "ACTIVE"


def test_list_jobs_filters_and_pages(client: TestClient) -> None:
    ids = [create_job(client, name=f"job-{i}")["id"] for i in range(5)]
    other = create_job(client, name="other", job_type="nopreview")
    client.post(f"/api/v1/jobs/{ids[0]}/archive")
    client.post(f"/api/v1/jobs/{ids[1]}/pause")

    listed = client.get("/api/v1/jobs").json()
    assert [j["id"] for j in listed["items"]] == [*ids[1:], other["id"]]
    assert [j["id"] for j in client.get("/api/v1/jobs?status=PAUSED").json()["items"]] == [ids[1]]
    assert [j["id"] for j in client.get("/api/v1/jobs?status=ARCHIVED").json()["items"]] == [ids[0]]
    assert [j["id"] for j in client.get("/api/v1/jobs?job_type=nopreview").json()["items"]] == [other["id"]]
    assert len(client.get("/api/v1/jobs?include_archived=true").json()["items"]) == 6

    seen: list[int] = []
    cursor = ""
    while True:
        page = client.get(f"/api/v1/jobs?limit=2&include_archived=true&cursor={cursor}").json()
        seen += [j["id"] for j in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == [*ids, other["id"]]

    assert_error(client.get("/api/v1/jobs?status=SLEEPING"), 422, "invalid_request")
    assert_error(client.get("/api/v1/jobs?limit=0"), 422)
    assert_error(client.get("/api/v1/jobs?limit=1001"), 422)
    assert_error(client.get("/api/v1/jobs?cursor=zzz"), 400, "invalid_cursor")


def test_next_fires_count_bounds(client: TestClient) -> None:
    job = create_job(client, cron="*/5 * * * *")
    path = f"/api/v1/jobs/{job['id']}/next-fires"
    default = client.get(path).json()
    assert len(default["fires"]) == 10
    assert default["fires"][0] == {"utc": "2026-06-01T12:05:00Z", "local": "2026-06-01T12:05:00+00:00",
                                   "dst_change": False}
    assert default["description"]
    assert len(client.get(f"{path}?count=1").json()["fires"]) == 1
    assert len(client.get(f"{path}?count=1000").json()["fires"]) == 1000
    for bad in ("0", "1001", "-1", "ten"):
        assert_error(client.get(f"{path}?count={bad}"), 422, "invalid_request")
    assert_error(client.get("/api/v1/jobs/999/next-fires"), 404)


def test_next_fires_in_a_dst_zone_show_both_offsets_and_flag_the_change(
    client: TestClient, clock: FrozenClock
) -> None:
    # Given a daily noon job in London two days before clocks go forward (2026-03-29)
    clock.set(datetime(2026, 3, 27, 13, 0, tzinfo=UTC))
    job = create_job(client, cron="0 12 * * *", timezone="Europe/London")
    # When its next fires are asked for
    fires = client.get(f"/api/v1/jobs/{job['id']}/next-fires?count=3").json()["fires"]
    # Then they are noon local time on both sides of the change, and the change is flagged
    assert fires == [
        {"utc": "2026-03-28T12:00:00Z", "local": "2026-03-28T12:00:00+00:00", "dst_change": False},
        {"utc": "2026-03-29T11:00:00Z", "local": "2026-03-29T12:00:00+01:00", "dst_change": True},
        {"utc": "2026-03-30T11:00:00Z", "local": "2026-03-30T12:00:00+01:00", "dst_change": False},
    ]


def test_next_fires_of_a_manual_only_job_is_empty(client: TestClient) -> None:
    job = create_job(client, cron=None)
    body = client.get(f"/api/v1/jobs/{job['id']}/next-fires").json()
    assert body["fires"] == [] and body["description"]


def test_creating_a_job_while_redis_is_down_still_works(down_client: TestClient, engine: Engine) -> None:
    job = create_job(down_client)
    assert job["status"] == "ACTIVE"
    assert count(engine, Job) == 1


def test_backfill_creates_and_sends_runs_once_per_tick(
    client: TestClient, engine: Engine, redis_client: redis.Redis
) -> None:
    # Given an hourly job and a frozen clock at 2026-06-01 12:00 UTC
    job = create_job(client, name="hourly", cron="0 * * * *")
    body = {"start": "2026-06-01T08:00:00Z", "end": "2026-06-01T10:00:00Z", "mode": "MISSING"}

    # When the past three hours are backfilled twice
    first = client.post(f"/api/v1/jobs/{job['id']}/backfill", json=body)
    second = client.post(f"/api/v1/jobs/{job['id']}/backfill", json=body)

    # Then three runs exist, each sent once, and the second call created nothing
    assert first.status_code == 201, first.text
    assert first.json()["ticks"] == 3 and len(first.json()["created"]) == 3
    assert second.json() == {"ticks": 3, "created": [], "unchanged": 3}
    assert count(engine, JobRun, col(JobRun.trigger) == "BACKFILL") == 3
    assert len(queued_messages(redis_client, "fake_q")) == 3


def test_backfill_refuses_a_future_range_and_an_unordered_one(client: TestClient) -> None:
    job = create_job(client, name="hourly", cron="0 * * * *")
    future = client.post(f"/api/v1/jobs/{job['id']}/backfill",
                         json={"start": "2026-06-01T08:00:00Z", "end": "2026-07-01T00:00:00Z"})
    assert_error(future, 422, "invalid_input")
    unordered = client.post(f"/api/v1/jobs/{job['id']}/backfill",
                            json={"start": "2026-06-01T10:00:00Z", "end": "2026-06-01T08:00:00Z"})
    assert_error(unordered, 422)


def test_a_hashed_job_keeps_its_cron_and_shows_where_it_lands(client: TestClient) -> None:
    # Given two "daily in the 02:00 hour" jobs whose minute is spread by their names
    first = create_job(client, name="ERP nightly", cron="H 2 * * *")
    second = create_job(client, name="GL nightly", cron="H 2 * * *")
    # Then each keeps its cron as written and shows the minute it landed on, and fires then
    for job in (first, second):
        assert job["cron"] == "H 2 * * *"
        minute, rest = job["cron_expanded"].split(" ", 1)
        assert rest == "2 * * *" and 0 <= int(minute) <= 59
        assert job["next_fire_at"] == f"2026-06-02T02:{int(minute):02d}:00Z"
        assert job["schedule_description"] == f"At 02:{int(minute):02d}, every day"
        shown = client.get(f"/api/v1/jobs/{job['id']}").json()
        assert shown["cron_expanded"] == job["cron_expanded"]
        fires = client.get(f"/api/v1/jobs/{job['id']}/next-fires?count=2").json()
        assert fires["cron_expanded"] == job["cron_expanded"]
        assert fires["fires"][0]["utc"] == job["next_fire_at"]
    assert first["cron_expanded"] != second["cron_expanded"]
    # And a job of an unhashed cron shows the cron itself
    plain = create_job(client, name="plain", cron="@daily")
    assert plain["cron_expanded"] == "@daily"


@pytest.mark.parametrize(
    ("cron", "fragment"),
    [
        ("H(30-10) 2 * * *", "minute field 'H(30-10)': the range must run upwards within 0-59"),
        ("R 2 * * *", "'R' (random) is not supported"),
        ("0 0 30 2 *", "never fires: no date matches its day, month and year fields"),
        ("0\u00a02 * * *", "U+00A0 (NO-BREAK SPACE) at position 2 is not a field separator"),
    ],
)
def test_bad_hashed_or_never_firing_crons_are_refused_at_creation(client: TestClient, cron: str, fragment: str) -> None:
    body = assert_error(client.post("/api/v1/jobs", json=job_body(cron=cron)), 422, "invalid_cron")
    assert fragment in body["message"]
    assert body["details"]["cron"] == cron
    assert client.get("/api/v1/jobs").json()["items"] == []
