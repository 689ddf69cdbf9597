"""Beat's loop: wake-ups over Redis pub/sub, riding out database and Redis outages, clean shutdown."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from beat_helpers import DEAD_REDIS, SwitchableDispatcher, count_runs
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from beat.service import Beat, TickResult
from beat.tables import LEASES
from beat.wakeup import WakeListener
from scheduler.clock import FrozenClock, SystemClock
from scheduler.db import make_engine
from scheduler.models import Job, MisfirePolicy, OverlapPolicy
from scheduler.settings import Settings


def test_wake_message_ends_the_sleep_at_once(redis_url: str) -> None:
    channel = f"beat-test-wake-{uuid.uuid4().hex[:8]}"
    client, publisher = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    listener = WakeListener(client, channel=channel)
    stop = threading.Event()
    try:
        assert listener.wait(0, stop) is False  # subscribes
        publisher.publish(channel, b"1")
        started = time.monotonic()
        assert listener.wait(5, stop) is True
        assert time.monotonic() - started < 1
        assert listener.wait(0.2, stop) is False  # nothing more pending
    finally:
        listener.close()
        client.close()
        publisher.close()


def test_lost_redis_degrades_to_plain_sleep_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    client = redis.Redis.from_url(DEAD_REDIS)
    listener = WakeListener(client)
    stop = threading.Event()
    with caplog.at_level(logging.WARNING, logger="beat"):
        for _ in range(3):
            started = time.monotonic()
            assert listener.wait(0.1, stop) is False
            assert time.monotonic() - started < 1
    client.close()
    assert len([m for m in caplog.messages if "wake-ups unavailable" in m]) == 1


def test_sleep_is_until_the_earliest_fire_at_most_the_max(beat: Beat, clock: FrozenClock) -> None:
    now = clock.now()
    assert beat.sleep_seconds(TickResult(leader=True, next_fire_at=now + timedelta(milliseconds=300))) == 0.3
    assert beat.sleep_seconds(TickResult(leader=True, next_fire_at=now + timedelta(hours=1))) == 1.0
    assert beat.sleep_seconds(TickResult(leader=True, next_fire_at=now - timedelta(seconds=1))) == 0.0
    assert beat.sleep_seconds(TickResult(leader=False)) == 1.0


def test_database_outage_is_logged_once_and_beat_resumes(
    beat: Beat, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_tick = beat.tick
    calls = {"n": 0}
    stop = threading.Event()

    def flaky_tick() -> TickResult:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        stop.set()
        return real_tick()

    monkeypatch.setattr(beat, "tick", flaky_tick)
    monkeypatch.setattr("beat.service.MAX_DB_BACKOFF", 0.05)
    with caplog.at_level(logging.INFO, logger="beat"):
        beat.run_forever(stop)
    assert calls["n"] == 4
    assert len([m for m in caplog.messages if "database unreachable" in m]) == 1
    assert len([m for m in caplog.messages if "database reachable again" in m]) == 1


def test_unreachable_database_does_not_crash_beat(
    beat_settings: Settings,
    beat_registry: Any,
    dispatcher: SwitchableDispatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = make_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    beat = Beat(beat_settings, engine, beat_registry, dispatcher, SystemClock(), "beat-offline")
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="beat"):
        thread = threading.Thread(target=beat.run_forever, args=(stop,))
        thread.start()
        time.sleep(1.2)
        assert thread.is_alive()
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    outage_lines = [m for m in caplog.messages if "database unreachable" in m]
    assert len(outage_lines) == 1 and "SCHEDULER_DATABASE_URL" in outage_lines[0]
    engine.dispose()


def test_run_forever_schedules_every_second_and_releases_the_lease(
    make_beat: Callable[..., Beat],
    add_job: Callable[..., Job],
    factory: sessionmaker[Session],
) -> None:
    now = datetime.now(UTC)
    add_job(next_fire_at=now.replace(microsecond=0) + timedelta(seconds=1), cron="* * * * * ?",
            overlap_policy=OverlapPolicy.ALLOW, misfire_policy=MisfirePolicy.ALL)
    beat = make_beat("beat-live", beat_clock=SystemClock())
    stop = threading.Event()
    thread = threading.Thread(target=beat.run_forever, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 20
    while count_runs(factory) < 2 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.1)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert count_runs(factory) >= 2, "beat made fewer than two runs of an every-second job in 20 s"
    with factory() as session:
        expires_at = session.execute(select(LEASES.c.expires_at)).scalar_one()
    # released on stop: a standby may take over at once
    assert expires_at <= datetime.now(UTC), f"lease still held until {expires_at}"
