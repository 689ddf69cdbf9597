"""Two real beat processes on one PostgreSQL database: exactly one run per tick, no gaps."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from beat_fake_types import FAKE
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from scheduler.dispatch import WAKE_CHANNEL
from scheduler.models import Job, JobRun, MisfirePolicy, OverlapPolicy, RunStatus

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TESTS_BEAT = Path(__file__).parent
REPO = TESTS_BEAT.parent.parent


Beats = list[tuple[subprocess.Popen[bytes], Path]]


@pytest.fixture
def beat_processes(pg_engine: Engine, redis_url: str, tmp_path: Path) -> Iterator[Beats]:
    env = {
        **os.environ,
        "SCHEDULER_DATABASE_URL": pg_engine.url.render_as_string(hide_password=False),
        "SCHEDULER_REDIS_URL": redis_url,
        "SCHEDULER_EXTRA_JOB_TYPES": json.dumps(["beat_fake_types:FAKE"]),
        "SCHEDULER_DATA_DIR": str(tmp_path / "data"),
        "SCHEDULER_LOG_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join([str(TESTS_BEAT), os.environ.get("PYTHONPATH", "")]),
    }
    client = redis.Redis.from_url(redis_url)
    client.delete(f"dramatiq:{FAKE.queue}", f"dramatiq:{FAKE.queue}.msgs")
    processes = []
    for n in range(2):
        log_path = tmp_path / f"beat-{n}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "beat"], cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        processes.append((process, log_path))
    yield processes
    for process, _ in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    client.delete(f"dramatiq:{FAKE.queue}", f"dramatiq:{FAKE.queue}.msgs")
    client.close()


def test_two_beat_processes_make_exactly_one_run_per_tick(
    beat_processes: Beats, pg_engine: Engine, redis_url: str
) -> None:
    # Given two beats, one of which leads
    logs = [path for _, path in beat_processes]
    deadline = time.monotonic() + 60
    while not any("is now the leader" in p.read_text(errors="replace") for p in logs):
        assert time.monotonic() < deadline, "no beat became leader:\n" + "\n".join(p.read_text() for p in logs)
        assert all(p.poll() is None for p, _ in beat_processes), "a beat exited:\n" + "\n".join(
            p.read_text() for p in logs
        )
        time.sleep(0.1)

    # When a job firing every second is created (and beat woken)
    first_tick = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    with Session(pg_engine) as session:
        job = Job(
            name="every second",
            job_type=FAKE.name,
            cron="* * * * * ?",
            next_fire_at=first_tick,
            # ALL: a beat stalled by a loaded machine catches up instead of coalescing, so a gap
            # can only mean a lost tick
            misfire_policy=MisfirePolicy.ALL,
            overlap_policy=OverlapPolicy.ALLOW,  # no worker runs here: runs stay CREATED
        )
        session.add(job)
        session.commit()
        job_id = job.id
    publisher = redis.Redis.from_url(redis_url)
    publisher.publish(WAKE_CHANNEL, b"1")
    publisher.close()
    time.sleep(6.5)
    assert all(p.poll() is None for p, _ in beat_processes), "a beat crashed"
    for process, _ in beat_processes:
        process.send_signal(signal.SIGTERM)
    for process, _ in beat_processes:
        assert process.wait(15) == 0

    # Then every tick from the first on has exactly one run, sent within the grace period
    with Session(pg_engine) as session:
        runs = list(session.scalars(select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.scheduled_for)))  # type: ignore[arg-type]
    ticks = [r.scheduled_for for r in runs if r.scheduled_for is not None]
    assert len(ticks) >= 5
    assert len(set(ticks)) == len(ticks)
    assert ticks[0] == first_tick
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
    assert {r.status for r in runs} == {RunStatus.CREATED}
    for run in runs:
        assert run.enqueued_at is not None and run.scheduled_for is not None
        assert run.enqueued_at - run.scheduled_for < timedelta(seconds=5)
    leaders = [p for p in logs if "is now the leader" in p.read_text(errors="replace")]
    assert 1 <= len(leaders) <= 2  # the standby may take over during shutdown
    assert len({r.created_by for r in runs}) == 1
