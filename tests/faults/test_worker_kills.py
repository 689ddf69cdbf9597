"""``kill -9`` worker pools mid-run, again and again: no run lost, no effect applied twice, every run final.

Two supervised worker pools (``dramatiq`` master + one worker process, two threads each) share dunning
runs of many small chunks; a beat repairs what the kills leave behind. A pool is killed (its whole
process group, SIGKILL) a moment after it is ready, so it dies holding chunks it was evaluating or
applying and messages it had prefetched. The supervisor restarts it at once. The first two kills land
at exact points of a chunk's apply (``fault_actors``): inside its transaction, and between its commit
and the chunk's mark — the half-done chunk is re-run and applies nothing twice.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import pytest
from dunning_ledger import DunningWorld, RunDriver, verify_ledger
from faultkit import (
    Pool,
    PrivateRedis,
    Processes,
    Scale,
    audit_notes,
    beat_argv,
    reclaim_delays,
    scheduler_env,
    time_limit,
    wait_for,
    worker_argv,
)
from sqlalchemy import Engine, text

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults, time_limit(600)]

HEARTBEAT_TIMEOUT = 3.0


def test_worker_pools_killed_mid_run_lose_no_run_and_apply_no_effect_twice(
    fault_db: Engine, fault_db_url: str, private_redis: PrivateRedis, processes: Processes, tmp_path: Path,
    scale: Scale, figures: list[str],
) -> None:
    # Given dunning jobs over 3 x 48 accounts in chunks of 4 (12 chunks a run), a beat that reclaims
    # runs 3 s after their last heartbeat, and two supervised worker pools
    world = DunningWorld.create(fault_db, jobs=3, accounts_per_job=48, chunk_size=4)
    env = scheduler_env(database_url=fault_db_url, redis_url=private_redis.url, data_dir=tmp_path / "data",
                        chunk_size=4, run_heartbeat_timeout=HEARTBEAT_TIMEOUT,
                        outbox_resend_after=HEARTBEAT_TIMEOUT)
    trigger = tmp_path / "kill-in-apply"
    env["FAULT_KILL_IN_APPLY"] = str(trigger)
    beat = processes.start("beat", beat_argv(), env)
    pools = [Pool(processes, f"pool-{name}", worker_argv(["dunning"], module="fault_actors"), env) for name in "AB"]
    driver = RunDriver(engine=fault_db, world=world, redis_url=private_redis.url)
    rng = random.Random(20260601)
    kills: list[float] = []
    started = time.monotonic()

    def supervise() -> None:
        for pool in pools:
            pool.supervise()
        driver.pump()

    try:
        # When a worker dies inside a chunk's apply transaction, then between its commit and its mark
        for point in ("in-transaction", "after-commit"):
            restarts = sum(p.restarts for p in pools)
            trigger.write_text(point)
            wait_for(lambda restarts=restarts: not trigger.exists() and sum(p.restarts for p in pools) > restarts,
                     f"a worker to die {point}", timeout=120, processes=processes, tick=supervise, must_live=[beat])
            kills.append(time.time())
        # and each pool in turn is killed -9 a moment after it is up, while the runs go one after another
        target = 0
        kill_at: float | None = None
        deadline = started + scale.timeout
        while len(kills) < scale.worker_kills:
            supervise()
            assert beat.alive(), "beat exited:\n" + processes.logs()
            assert time.monotonic() < deadline, f"{len(kills)} kills in {scale.timeout:.0f} s:\n" + processes.logs()
            pool = pools[target]
            if kill_at is None and pool.ready():
                kill_at = time.monotonic() + rng.uniform(0.3, 1.5)
            if kill_at is not None and time.monotonic() >= kill_at:
                pool.proc.kill9()
                kills.append(time.time())
                kill_at = None
                target = 1 - target
            time.sleep(0.05)
        # Each category ran the whole ladder at least once (7 steps take every account to its last tier)
        wait_for(lambda: driver.min_steps() >= 8, "eight runs of every job", timeout=scale.timeout,
                 processes=processes, tick=supervise, must_live=[beat])
        driver.creating = False
        wait_for(lambda: not driver.unfinished(), "every run to finish", timeout=120, processes=processes,
                 tick=supervise, must_live=[beat])
        elapsed = time.monotonic() - started
    finally:
        driver.close()

    # Then every run completed exactly once and every effect exists exactly once
    counts = verify_ledger(fault_db, driver)
    # (and the ledger is not blind: one late fee charged twice fails it)
    with fault_db.begin() as conn:
        conn.execute(text(
            "INSERT INTO invoices (account_id, number, issued_on, due_on, amount, balance, status, disputed, kind) "
            "SELECT account_id, number || '-again', issued_on, due_on, amount, balance, status, disputed, kind "
            "FROM invoices WHERE kind = 'LATE_FEE' ORDER BY id LIMIT 1"
        ))
    with pytest.raises(AssertionError, match="late fees"):
        verify_ledger(fault_db, driver)
    reclaims = audit_notes(fault_db, "stale (no heartbeat)%")
    resends = audit_notes(fault_db, "re-sent from the outbox%")
    assert reclaims, "no run was ever reclaimed: the kills hit nothing"
    # and each run was reclaimed once its heartbeat was older than the timeout, not before, and within
    # beat's one-second sleep and a tick after that
    delays = reclaim_delays(fault_db, [beat])
    assert delays and min(delays) >= HEARTBEAT_TIMEOUT and max(delays) <= HEARTBEAT_TIMEOUT + 3, sorted(delays)
    after_kill = []
    for note in reclaims:
        before = [k for k in kills if k <= note.at.timestamp()]
        if before and note.at.timestamp() - before[-1] <= 3 * HEARTBEAT_TIMEOUT:
            after_kill.append(note.at.timestamp() - before[-1])
    figures.append(
        f"{len(kills)} kill -9 of a worker pool (2 at exact points of a chunk's apply) survived in {elapsed:.0f} s: "
        f"{counts['runs']} runs x "
        f"{world.chunks_per_run} chunks all COMPLETED once, {counts['escalations']} escalations and "
        f"{counts['late_fees']} late fees each applied once; {len(reclaims)} stale-run reclaims "
        f"(last heartbeat to reclaim: median {statistics.median(delays):.1f} s, max {max(delays):.1f} s with a "
        f"{HEARTBEAT_TIMEOUT:.0f} s heartbeat timeout; kill to next reclaim: max {max(after_kill, default=0):.1f} s), "
        f"{len(resends)} outbox re-sends, "
        f"{sum(p.restarts for p in pools)} pool restarts"
    )
