"""Managed Redis as operators run it, with real beat and worker processes on PostgreSQL:

- Redis over TLS only (``rediss://`` and the CA that signed the server's certificate): runs flow; a client
  without the CA, or without TLS, is refused.
- Redis Sentinel: a primary, a replica and a sentinel; the primary is switched (``SENTINEL FAILOVER``)
  while an every-second job runs, and every tick still has exactly one run, each COMPLETED.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from faultkit import (
    HAPPY_PATH,
    Proc,
    Processes,
    add_every_second_job,
    beat_argv,
    rows,
    scheduler_env,
    time_limit,
    transitions,
    wait_for,
    worker_argv,
)
from managed_redis import SentinelGroup, TlsRedis, make_certificates
from sqlalchemy import Engine, text

from scheduler.redis_client import redis_client
from scheduler.settings import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults, time_limit(240)]

def start_ticking(
    engine: Engine, settings: Settings, env: dict[str, str], processes: Processes
) -> tuple[Proc, Proc, int, datetime]:
    """Beat and a worker pool on ``env``'s Redis, and an every-second job: the processes, the job, its first tick."""
    beat = processes.start("beat", beat_argv(), env)
    pool = processes.start("pool", worker_argv(["faults_tick"]), env)
    wake = redis_client(settings, str(settings.redis_url))
    job_id, first_tick = add_every_second_job(engine, wake)
    wake.close()
    return beat, pool, job_id, first_tick


def completed_since(engine: Engine, since: datetime) -> int:
    return len(rows(engine, "SELECT id FROM job_run WHERE status = 'COMPLETED' AND created_at >= :s", s=since))


def stop_and_check_ledger(engine: Engine, job_id: int, first_tick: datetime, processes: Processes,
                          must_live: list[Proc]) -> int:
    """Stop the job's ticks, let every run finish, and check each tick from the first has one COMPLETED run."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE job SET status = 'PAUSED', next_fire_at = NULL WHERE id = :j"), {"j": job_id})
    wait_for(lambda: not rows(engine, "SELECT id FROM job_run WHERE status <> 'COMPLETED'"),
             "every run to complete", timeout=90, processes=processes, must_live=must_live)
    runs = rows(engine, "SELECT id, scheduled_for FROM job_run ORDER BY scheduled_for")
    assert [r.scheduled_for for r in runs] == [first_tick + timedelta(seconds=n) for n in range(len(runs))], \
        "a tick is missing or doubled"
    history = transitions(engine)
    assert all(history[r.id] == HAPPY_PATH for r in runs), {r.id: history[r.id] for r in runs}
    return len(runs)


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def tls_redis(tmp_path: Path, certs: dict[str, Path]) -> Iterator[TlsRedis]:
    server = TlsRedis(tmp_path / "tls-redis", certs)
    yield server
    server.stop()


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path / "sentinel-group")
    yield group
    group.stop()


def test_runs_flow_over_tls_and_a_client_without_the_ca_or_tls_is_refused(
    fault_db: Engine, fault_db_url: str, tls_redis: TlsRedis, certs: dict[str, Path], processes: Processes,
    tmp_path: Path, figures: list[str],
) -> None:
    # Given a Redis that speaks only TLS: neither plain TCP nor TLS without our CA gets through
    settings = Settings(database_url=fault_db_url, redis_url=tls_redis.url, redis_ssl_ca_certs=certs["ca"])
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis_client(Settings(redis_url=tls_redis.url), tls_redis.url).ping()
    with pytest.raises(redis.RedisError):
        redis.Redis(host="127.0.0.1", port=tls_redis.tls_port, socket_timeout=2).ping()
    assert redis_client(settings, tls_redis.url).ping()

    # When beat and a worker pool run on it with the CA as a setting
    env = scheduler_env(database_url=fault_db_url, redis_url=tls_redis.url, data_dir=tmp_path / "data",
                        redis_ssl_ca_certs=certs["ca"])
    beat, pool, job_id, first_tick = start_ticking(fault_db, settings, env, processes)
    started = datetime.now(UTC)

    # Then runs flow: each tick one run, each COMPLETED
    wait_for(lambda: completed_since(fault_db, started) >= 5, "five runs over TLS", timeout=90,
             processes=processes, must_live=[beat, pool])
    runs = stop_and_check_ledger(fault_db, job_id, first_tick, processes, [beat, pool])
    figures.append(f"Redis over TLS only: {runs} ticks, each with one COMPLETED run")


def test_a_sentinel_fail_over_loses_no_run_and_runs_keep_flowing(
    fault_db: Engine, fault_db_url: str, sentinel_group: SentinelGroup, processes: Processes, tmp_path: Path,
    figures: list[str],
) -> None:
    # Given beat and a worker pool that find the primary through Sentinel, and an every-second job
    url = f"redis://{SentinelGroup.SERVICE}/0"
    settings = Settings(database_url=fault_db_url, redis_url=url, redis_sentinels=sentinel_group.sentinels)
    env = scheduler_env(database_url=fault_db_url, redis_url=url, data_dir=tmp_path / "data",
                        redis_sentinels=sentinel_group.sentinels, outbox_resend_after=5, run_heartbeat_timeout=5)
    beat, pool, job_id, first_tick = start_ticking(fault_db, settings, env, processes)
    started = datetime.now(UTC)
    wait_for(lambda: completed_since(fault_db, started) >= 3, "runs through the first primary", timeout=90,
             processes=processes, must_live=[beat, pool])

    # When Sentinel switches the primary to the replica
    old, new = sentinel_group.primary.port, sentinel_group.replica.port
    switched_wall, switched = datetime.now(UTC), time.monotonic()
    sentinel_group.fail_over()
    wait_for(lambda: sentinel_group.primary_port() == new, "the replica to become the primary", timeout=60,
             processes=processes)
    assert sentinel_group.primary_port() != old

    # Then runs keep flowing through the new primary
    wait_for(lambda: completed_since(fault_db, switched_wall + timedelta(seconds=1)) >= 3,
             "runs through the new primary", timeout=90, processes=processes, must_live=[beat, pool])
    flowing = time.monotonic() - switched
    assert sentinel_group.replica.client().info("replication")["role"] == "master"
    # and, once the ticks stop, every tick has had exactly one run, each COMPLETED: nothing lost, nothing twice
    runs = stop_and_check_ledger(fault_db, job_id, first_tick, processes, [beat, pool])
    figures.append(f"Sentinel fail-over: 3 runs completed through the new primary {flowing:.1f} s after "
                   f"SENTINEL FAILOVER; {runs} ticks, each with one COMPLETED run")
