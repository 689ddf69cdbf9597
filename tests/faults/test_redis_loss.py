"""Redis killed and restarted empty while runs are queued and running: every run still completes, within
45 s of Redis being back, with the default timeouts, and no effect is applied twice.

The queues live only in Redis; the database knows which runs are active. Beat notices that Redis lost
its data and re-sends what the lost messages carried; workers reconnect by themselves.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from dunning_ledger import DunningWorld, RunDriver, verify_ledger
from faultkit import (
    Pool,
    PrivateRedis,
    Processes,
    Scale,
    beat_argv,
    scalar,
    scheduler_env,
    time_limit,
    wait_for,
    worker_argv,
)
from sqlalchemy import Engine

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults, time_limit(300)]

# Beat re-sends at once what it sees Redis lost (about 10 s end to end on an idle machine); a run whose loss it
# misses on a busy one is reclaimed by the 30 s heartbeat timeout, then redone: 30 s plus the work.
RECOVERY_LIMIT = 45.0


def queued(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.llen("dramatiq:dunning"))
    except redis.RedisError:
        return 0
    finally:
        client.close()


def test_runs_queued_and_running_when_redis_restarts_empty_all_complete(
    fault_db: Engine, fault_db_url: str, private_redis: PrivateRedis, processes: Processes, tmp_path: Path,
    scale: Scale, figures: list[str],
) -> None:
    # Given six jobs' dunning runs of 8 chunks each, more than two worker pools of two threads take at
    # once, with the default timeouts
    world = DunningWorld.create(fault_db, jobs=6, accounts_per_job=32, chunk_size=4)
    env = scheduler_env(database_url=fault_db_url, redis_url=private_redis.url, data_dir=tmp_path / "data",
                        chunk_size=4)
    beat = processes.start("beat", beat_argv(), env)
    pools = [Pool(processes, f"pool-{name}", worker_argv(["dunning"]), env) for name in "AB"]
    driver = RunDriver(engine=fault_db, world=world, redis_url=private_redis.url)
    recoveries: list[float] = []
    lost_messages: list[tuple[int, int, int]] = []
    """At each loss: steps queued, runs sent but not started, runs running."""

    def supervise() -> None:
        for pool in pools:
            pool.supervise()
        driver.pump()

    def active() -> int:
        return int(scalar(fault_db, "SELECT COUNT(*) FROM job_run WHERE status IN ('PROCESSING', 'SUBMITTED')"))

    def waiting() -> int:
        sql = "SELECT COUNT(*) FROM job_run WHERE status = 'CREATED' AND enqueued_at IS NOT NULL"
        return int(scalar(fault_db, sql))

    try:
        for _ in range(scale.redis_losses):
            # When Redis dies (kill -9, no persistence) while runs are running and steps are queued
            driver.creating = True
            wait_for(lambda: all(p.ready() for p in pools) and active() >= 2 and waiting() >= 1
                     and queued(private_redis.url) >= 5, "runs running and runs sent, with steps queued",
                     timeout=120, processes=processes, tick=supervise, must_live=[beat])
            lost_messages.append((queued(private_redis.url), waiting(), active()))
            private_redis.kill()
            driver.pump()  # a run recorded while Redis is down is sent by the outbox later
            driver.creating = False
            time.sleep(2)  # Redis stays down a moment: workers and beat meet a dead broker
            private_redis.start()
            back = time.monotonic()
            # Then every run completes soon after Redis is back
            wait_for(lambda: not driver.unfinished(), "every run to finish after Redis came back",
                     timeout=RECOVERY_LIMIT + 60, processes=processes, tick=supervise, must_live=[beat])
            recoveries.append(time.monotonic() - back)
    finally:
        driver.close()

    counts = verify_ledger(fault_db, driver)
    assert max(recoveries) <= RECOVERY_LIMIT, f"runs completed {recoveries} s after Redis was back"
    assert all(p.restarts == 0 for p in pools), "a worker pool died with Redis:\n" + processes.logs()
    figures.append(
        f"Redis killed and restarted empty {len(recoveries)} time(s) with (steps queued, runs waiting, runs running) "
        f"{lost_messages}: "
        f"all {counts['runs']} runs COMPLETED {', '.join(f'{r:.1f}' for r in recoveries)} s after Redis was back "
        f"(default 30 s timeouts); {counts['escalations']} escalations and {counts['late_fees']} late fees once each"
    )
