"""After Redis restarts empty, beat re-sends what the lost messages carried at once, not after the 30 s
timeouts: runs sent before the loss, and running runs idle for a few seconds (a step still executing
heart-beats, so it is left alone). A flush without a restart, or a beat's first look, opens no window."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from beat_fake_types import FakeJobType
from beat_helpers import SwitchableDispatcher

from beat.broker_loss import MARKER
from beat.service import Beat
from scheduler.clock import FrozenClock
from scheduler.dispatch import Phase
from scheduler.models import Job, JobRun, RunStatus

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


class FakeRedis:
    """The two commands the watch uses, on a server that can restart empty or be flushed."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.run_id = "server-1"

    def set(self, key: str, value: str, nx: bool = False) -> bool:
        if nx and key in self.keys:
            return False
        self.keys[key] = value
        return True

    def info(self, section: str) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def restart_empty(self) -> None:
        self.keys.clear()
        self.run_id += "-restarted"


@pytest.fixture
def fake_redis(beat: Beat) -> FakeRedis:
    server = FakeRedis()
    beat.broker_watch.client = server
    return server


def test_after_redis_restarts_empty_sent_and_idle_runs_are_resent_at_once(
    beat: Beat, fake_redis: FakeRedis, add_job: Callable[..., Job], add_run: Callable[..., JobRun],
    clock: FrozenClock, dispatcher: SwitchableDispatcher, job_type: FakeJobType, caplog: pytest.LogCaptureFixture,
) -> None:
    # Given runs sent a while ago, one running but idle for 8 s, one whose step heart-beat 2 s ago
    job = add_job(next_fire_at=NOON + timedelta(hours=1))
    sent = add_run(job, status=RunStatus.CREATED, enqueued_at=clock.now() - 10 * SECOND)
    idle = add_run(job, status=RunStatus.PROCESSING, started_at=clock.now() - timedelta(minutes=2),
                   heartbeat_at=clock.now() - 8 * SECOND, chunks=[(False, False)])
    busy = add_run(job, status=RunStatus.PROCESSING, started_at=clock.now() - timedelta(minutes=2),
                   heartbeat_at=clock.now() - 2 * SECOND, chunks=[(True, False), (False, False)])
    # and nothing to repair while Redis keeps its data (the timeouts are 30 s)
    result = beat.tick()
    assert (result.resent, result.reclaimed) == (0, 0)

    # When Redis restarts empty
    fake_redis.restart_empty()
    clock.advance(SECOND)
    with caplog.at_level(logging.WARNING, logger="beat"):
        result = beat.tick()

    # Then the sent run and the idle one are re-sent at once, the busy one is left to its worker
    assert (result.resent, result.reclaimed) == (1, 1)
    assert dispatcher.drain(job_type.queue) == [(sent.id, Phase.PLAN, 0), (idle.id, Phase.EVALUATE, 0)]
    assert len([m for m in caplog.messages if "Redis has lost its data" in m]) == 1
    # and the busy one once it too has been idle for 7 s
    clock.advance(4 * SECOND)
    assert beat.tick().reclaimed == 0
    clock.advance(2 * SECOND)
    assert beat.tick().reclaimed == 1
    assert dispatcher.drain(job_type.queue) == [(busy.id, Phase.EVALUATE, 1)]
    # After the window (one heartbeat timeout), the 30 s rule is back
    clock.advance(30 * SECOND)
    later = add_run(job, status=RunStatus.PROCESSING, heartbeat_at=clock.now() - 8 * SECOND, chunks=[(False, False)])
    beat.tick()
    assert later.id not in {run_id for run_id, _, _ in dispatcher.drain(job_type.queue)}


def test_a_flush_without_a_restart_and_a_first_look_open_no_window(
    beat: Beat, fake_redis: FakeRedis, add_job: Callable[..., Job], add_run: Callable[..., JobRun],
    clock: FrozenClock,
) -> None:
    job = add_job(next_fire_at=NOON + timedelta(hours=1))
    add_run(job, status=RunStatus.CREATED, enqueued_at=clock.now() - 10 * SECOND)
    # a restart before this beat's first look: it only notes the server
    fake_redis.restart_empty()
    assert beat.tick().resent == 0
    # a flush (another test suite, an operator) without a restart
    del fake_redis.keys[MARKER]
    clock.advance(SECOND)
    assert beat.tick().resent == 0
