"""Redis stopped while an every-second job ticks: the leader keeps its lease and records a run for every
tick (ledger and outbox), says so once, shows it in its metrics, and sends every recorded run within
30 s of Redis being back."""

from __future__ import annotations

import itertools
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from faultkit import (
    ManualRuns,
    PrivateRedis,
    Processes,
    beat_argv,
    free_port,
    lease_holder,
    rows,
    scalar,
    scheduler_env,
    time_limit,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from scheduler.jobs import JobCreate

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults, time_limit(240)]

SEND_LIMIT = 30.0
OUTAGE_TICKS = 8


def beat_metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return next((s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name), None)


def test_a_leader_without_redis_keeps_recording_and_sends_everything_when_it_is_back(
    fault_db: Engine, fault_db_url: str, private_redis: PrivateRedis, processes: Processes, tmp_path: Path,
    figures: list[str],
) -> None:
    # Given a beat leading on an every-second job
    port = free_port()
    env = scheduler_env(database_url=fault_db_url, redis_url=private_redis.url, data_dir=tmp_path / "data",
                        beat_metrics_port=port)
    manual = ManualRuns(fault_db, private_redis.url)
    job_id = manual.job(JobCreate.model_validate({
        "name": "every second", "job_type": "faults_tick", "cron": "* * * * * ?",
        "overlap_policy": "ALLOW", "misfire_policy": "ALL"}))
    manual.close()
    beat = processes.start("beat", beat_argv(), env)

    def runs() -> int:
        return int(scalar(fault_db, "SELECT COUNT(*) FROM job_run WHERE job_id = :j", j=job_id))

    def unsent() -> int:
        return int(scalar(fault_db, "SELECT COUNT(*) FROM job_run WHERE job_id = :j AND enqueued_at IS NULL",
                          j=job_id))

    wait_for(lambda: runs() >= 3 and unsent() == 0, "beat to schedule and send", timeout=60,
             processes=processes, must_live=[beat])
    leader = lease_holder(fault_db)

    # When Redis stops for several ticks
    private_redis.kill()
    before = runs()
    wait_for(lambda: runs() >= before + OUTAGE_TICKS, "ticks recorded while Redis is down", timeout=60,
             processes=processes, must_live=[beat])
    # Then the leader keeps its lease, records the runs unsent, and its metrics say so
    assert lease_holder(fault_db) == leader
    assert unsent() >= OUTAGE_TICKS - 2
    assert beat_metric(port, "scheduler_broker_up") == 0
    assert beat_metric(port, "scheduler_beat_leader") == 1
    # (read by the leader every 5 s, so it catches up with the ledger within one reading)
    wait_for(lambda: (beat_metric(port, "scheduler_outbox_backlog") or 0) >= OUTAGE_TICKS,
             "the outbox backlog gauge to show the unsent runs", timeout=20, processes=processes, must_live=[beat])
    assert (beat_metric(port, "scheduler_outbox_oldest_seconds") or 0) >= 5

    # When Redis is back (empty), every recorded run is sent within 30 s
    peak = unsent()
    private_redis.start()
    back = time.monotonic()
    wait_for(lambda: unsent() == 0, "every run recorded during the outage to be sent", timeout=SEND_LIMIT + 30,
             processes=processes, must_live=[beat])
    took = time.monotonic() - back
    assert took <= SEND_LIMIT, f"the backlog was sent {took:.1f} s after Redis came back"
    wait_for(lambda: beat_metric(port, "scheduler_broker_up") == 1, "scheduler_broker_up back to 1", timeout=20,
             processes=processes, must_live=[beat])

    # And the ledger has one run for every tick, none missing, none twice, all under the same lease
    ticks = [r.scheduled_for for r in rows(fault_db, "SELECT scheduled_for FROM job_run WHERE job_id = :j "
                                                     "ORDER BY scheduled_for", j=job_id)]
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks)), ticks
    assert lease_holder(fault_db) == leader
    queued = redis.Redis.from_url(private_redis.url).llen("dramatiq:faults_tick")
    assert queued >= OUTAGE_TICKS
    log = beat.log()
    assert log.count("Redis unreachable (SCHEDULER_REDIS_URL)") == 1, log[-3000:]
    assert log.count("Redis reachable again") == 1
    figures.append(f"Redis down: the leader kept its lease and recorded every tick ({peak} runs unsent when "
                   f"Redis came back); all were sent {took:.1f} s after")
