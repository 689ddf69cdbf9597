"""Two real beat processes on one PostgreSQL database: exactly one run per tick, no gaps, even when
the leader is paused past its lease (``SIGSTOP``) and resumes after a standby took over."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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
def start_beats(pg_engine: Engine, redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Beats]]:
    """Start two ``python -m beat`` processes on the test database; killed at teardown if still up."""
    client = redis.Redis.from_url(redis_url)
    client.delete(f"dramatiq:{FAKE.queue}", f"dramatiq:{FAKE.queue}.msgs")
    processes: Beats = []

    def start(lease_seconds: float = 10.0) -> Beats:
        env = {
            **os.environ,
            "SCHEDULER_DATABASE_URL": pg_engine.url.render_as_string(hide_password=False),
            "SCHEDULER_REDIS_URL": redis_url,
            "SCHEDULER_EXTRA_JOB_TYPES": json.dumps(["beat_fake_types:FAKE"]),
            "SCHEDULER_DATA_DIR": str(tmp_path / "data"),
            "SCHEDULER_LOG_LEVEL": "INFO",
            "SCHEDULER_BEAT_LEASE_SECONDS": str(lease_seconds),
            "PYTHONPATH": os.pathsep.join([str(TESTS_BEAT), os.environ.get("PYTHONPATH", "")]),
        }
        for n in range(2):
            log_path = tmp_path / f"beat-{n}.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "beat"], cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT
                )
            processes.append((process, log_path))
        return processes

    yield start
    for process, _ in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait(10)
    client.delete(f"dramatiq:{FAKE.queue}", f"dramatiq:{FAKE.queue}.msgs")
    client.close()


def _logs(beats: Beats) -> str:
    return "\n".join(f"--- beat {n} ---\n" + path.read_text(errors="replace") for n, (_, path) in enumerate(beats))


def wait_for_leader(beats: Beats, *, among: list[int], timeout: float = 60) -> int:
    """The index of the first of ``among`` whose log says it became the leader."""
    deadline = time.monotonic() + timeout
    while True:
        for n in among:
            if "is now the leader" in beats[n][1].read_text(errors="replace"):
                return n
        assert time.monotonic() < deadline, "no beat became leader:\n" + _logs(beats)
        assert all(p.poll() is None for p, _ in beats), "a beat exited:\n" + _logs(beats)
        time.sleep(0.1)


def add_every_second_job(engine: Engine, redis_url: str) -> tuple[int, datetime]:
    first_tick = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    with Session(engine) as session:
        job = Job(
            name="every second",
            job_type=FAKE.name,
            cron="* * * * * ?",
            next_fire_at=first_tick,
            # ALL: a beat stalled by a loaded machine (or a take-over) catches up instead of
            # coalescing, so a gap can only mean a lost tick
            misfire_policy=MisfirePolicy.ALL,
            overlap_policy=OverlapPolicy.ALLOW,  # no worker runs here: runs stay CREATED
        )
        session.add(job)
        session.commit()
        assert job.id is not None
        job_id = job.id
    publisher = redis.Redis.from_url(redis_url)
    publisher.publish(WAKE_CHANNEL, b"1")  # schedule it now rather than at the next poll
    publisher.close()
    return job_id, first_tick


def stop_all(beats: Beats) -> None:
    assert all(p.poll() is None for p, _ in beats), "a beat crashed:\n" + _logs(beats)
    for process, _ in beats:
        process.send_signal(signal.SIGTERM)
    for process, _ in beats:
        assert process.wait(15) == 0, _logs(beats)


def assert_one_run_per_tick(engine: Engine, job_id: int, first_tick: datetime, *, at_least: int) -> list[JobRun]:
    with Session(engine) as session:
        stmt = select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.scheduled_for)  # type: ignore[arg-type]
        runs = list(session.scalars(stmt))
    ticks = [r.scheduled_for for r in runs if r.scheduled_for is not None]
    assert len(ticks) >= at_least
    assert len(set(ticks)) == len(ticks), "a tick has two runs"
    assert ticks[0] == first_tick
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks)), "a tick has no run"
    assert {r.status for r in runs} == {RunStatus.CREATED}
    return runs


def test_two_beat_processes_make_exactly_one_run_per_tick(
    start_beats: Callable[..., Beats], pg_engine: Engine, redis_url: str
) -> None:
    # Given two beats, one of which leads
    beats = start_beats()
    wait_for_leader(beats, among=[0, 1])

    # When a job firing every second is created and the beats run for a while
    job_id, first_tick = add_every_second_job(pg_engine, redis_url)
    time.sleep(6.5)
    stop_all(beats)

    # Then every tick from the first on has exactly one run, sent within the grace period
    runs = assert_one_run_per_tick(pg_engine, job_id, first_tick, at_least=5)
    for run in runs:
        assert run.enqueued_at is not None and run.scheduled_for is not None
        assert run.enqueued_at - run.scheduled_for < timedelta(seconds=5)
    assert len({r.created_by for r in runs}) == 1  # only the leader wrote


def test_leader_paused_past_its_lease_is_replaced_and_writes_nothing_twice(
    start_beats: Callable[..., Beats], pg_engine: Engine, redis_url: str
) -> None:
    # Given two beats with a 2 s lease, the leader scheduling an every-second job
    beats = start_beats(lease_seconds=2)
    leader = wait_for_leader(beats, among=[0, 1])
    standby = 1 - leader
    job_id, first_tick = add_every_second_job(pg_engine, redis_url)
    time.sleep(3)

    # When the leader is paused past its lease, the standby takes over
    beats[leader][0].send_signal(signal.SIGSTOP)
    wait_for_leader(beats, among=[standby], timeout=30)
    time.sleep(1.5)
    # and the ex-leader resumes, still believing it leads
    beats[leader][0].send_signal(signal.SIGCONT)
    time.sleep(3)
    stop_all(beats)

    # Then no tick has two runs and none is missing; both wrote, each while it held the lease
    runs = assert_one_run_per_tick(pg_engine, job_id, first_tick, at_least=6)
    assert len({r.created_by for r in runs}) == 2
    assert "is no longer the leader" in beats[leader][1].read_text(errors="replace"), _logs(beats)
