"""The beat leader killed, killed between commit and send, frozen inside a transaction, and stopped: three
replicas keep exactly one run per tick of an every-second job, and a standby takes over within 10 s.

``tests/beat/test_beat_process.py`` freezes a leader between ticks; here the leader is frozen while its
tick's transaction holds the lease row, the ledger runs through a real worker, and takeovers are timed.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from faultkit import (
    HAPPY_PATH,
    Pool,
    PrivateRedis,
    Proc,
    Processes,
    Scale,
    add_every_second_job,
    beat_argv,
    lease_holder,
    rows,
    scalar,
    scheduler_env,
    time_limit,
    transitions,
    wait_for,
    worker_argv,
)
from sqlalchemy import Engine

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults, time_limit(400)]

LEASE = 8.0
TAKEOVER_LIMIT = 10.0
def test_leader_faults_lose_no_tick_duplicate_none_and_hand_over_within_ten_seconds(
    fault_db: Engine, fault_db_url: str, private_redis: PrivateRedis, processes: Processes, tmp_path: Path,
    scale: Scale, figures: list[str],
) -> None:
    kill_file, freeze_file = tmp_path / "kill-before-send", tmp_path / "freeze-in-tick"
    env = scheduler_env(database_url=fault_db_url, redis_url=private_redis.url, data_dir=tmp_path / "data",
                        beat_lease_seconds=LEASE)
    env.update(FAULT_KILL_BEFORE_SEND=str(kill_file), FAULT_FREEZE_IN_TICK=str(freeze_file))
    beats: list[Proc] = [processes.start("beat", beat_argv(shim=True), env) for _ in range(3)]
    pool = Pool(processes, "pool", worker_argv(["faults_tick"]), env)

    def by_pid(holder: str) -> Proc | None:
        pid = int(holder.rsplit("-", 2)[1])
        return next((b for b in beats if b.pid == pid), None)

    def leader(previous: str | None = None) -> Callable[[], tuple[str, Proc] | None]:
        def check() -> tuple[str, Proc] | None:
            held = lease_holder(fault_db)
            if held is None or held[0] == previous:
                return None
            proc = by_pid(held[0])
            return (held[0], proc) if proc is not None else None

        return check

    def take_over(previous: str, faulted_at: float) -> tuple[str, Proc, float]:
        holder, proc = wait_for(leader(previous), "a standby to take over", timeout=40, processes=processes,
                                every=0.02, tick=pool.supervise)
        return holder, proc, time.monotonic() - faulted_at

    def replace(dead: Proc) -> None:
        beats.remove(dead)
        beats.append(processes.start("beat", beat_argv(shim=True), env))

    def runs_by(holder: str) -> int:
        return int(scalar(fault_db, "SELECT COUNT(*) FROM job_run WHERE created_by = :b", b=holder))

    def scheduling(holder: str, count: int = 2) -> None:
        wait_for(lambda: runs_by(holder) >= count, f"runs by {holder}", timeout=30, processes=processes)

    # Given three beats, one leading, scheduling an every-second job that a worker runs
    holder, current = wait_for(leader(), "a leader", timeout=60, processes=processes)
    wake = redis.Redis.from_url(private_redis.url)
    job_id, first_tick = add_every_second_job(fault_db, wake)
    wake.close()
    scheduling(holder, 3)
    takeovers: dict[str, list[float]] = {}

    # When the leader is killed -9 at a random moment
    for _ in range(scale.beat_kills):
        current.kill9()
        holder, new, took = take_over(holder, time.monotonic())
        takeovers.setdefault("kill -9", []).append(took)
        replace(current)
        current = new
        scheduling(holder)

    # When the leader is killed -9 after committing a tick's runs, before sending them
    kill_file.write_text(str(current.pid))
    wait_for(lambda: not current.alive(), "the leader to die before sending", timeout=30, processes=processes)
    died_at = time.monotonic()
    kill_file.unlink()
    killed_holder = holder
    holder, new, took = take_over(holder, died_at)
    takeovers.setdefault("kill -9 between commit and send", []).append(took)
    replace(current)
    current = new
    scheduling(holder)

    # When the leader freezes inside a tick's transaction (lease row locked), past its lease
    freeze_file.write_text(str(current.pid))
    wait_for(lambda: not freeze_file.exists(), "the leader to freeze", timeout=30, processes=processes)
    frozen_at, frozen_wall = time.monotonic(), datetime.now(UTC)
    frozen, frozen_holder = current, holder
    holder, current, took = take_over(holder, frozen_at)
    takeovers.setdefault("SIGSTOP inside a tick", []).append(took)
    scheduling(holder)
    # and then wakes up, still believing it leads
    frozen.signal_group(signal.SIGCONT)
    wait_for(lambda: "is no longer the leader" in frozen.log(), "the woken ex-leader to step down", timeout=30,
             processes=processes, must_live=[frozen])

    # When the leader is stopped (SIGTERM): it releases the lease
    stopped_at, stopped_wall = time.monotonic(), datetime.now(UTC)
    assert current.terminate() == 0, processes.logs()
    holder, current, took = take_over(holder, stopped_at)
    takeovers["SIGTERM (lease released)"] = [took]
    scheduling(holder)

    # Then, once every beat is stopped and the worker has run everything:
    for beat in beats:
        if beat.alive():
            assert beat.terminate() == 0, processes.logs()
    next_fire = scalar(fault_db, "SELECT next_fire_at FROM job WHERE id = :j", j=job_id)
    wait_for(lambda: not scalar(fault_db, "SELECT COUNT(*) FROM job_run WHERE status <> 'COMPLETED'"),
             "every run to complete", timeout=60, processes=processes, tick=pool.supervise)
    runs = rows(fault_db, "SELECT id, scheduled_for, created_by, created_at FROM job_run ORDER BY scheduled_for")
    # every tick from the first to the last scheduled has exactly one run: none lost, none twice
    expected = int((next_fire - first_tick).total_seconds())
    ticks = [r.scheduled_for for r in runs]
    assert ticks == [first_tick + timedelta(seconds=n) for n in range(expected)], "a tick is missing or doubled"
    # each run went through the happy path once
    history = transitions(fault_db)
    assert all(history[r.id] == HAPPY_PATH for r in runs), {r.id: history[r.id] for r in runs}
    # the frozen ex-leader wrote nothing from its freeze until the lease was free again (it may lead after
    # the SIGTERM); the runs the leader killed before sending never sent were sent by the outbox
    late = [r for r in runs if r.created_by == frozen_holder and frozen_wall < r.created_at < stopped_wall]
    assert not late, f"the frozen ex-leader wrote runs: {late}"
    orphans = rows(fault_db, "SELECT e.run_id FROM run_event e JOIN job_run r ON r.id = e.run_id "
                             "WHERE r.created_by = :b AND e.note LIKE 're-sent from the outbox: never sent%'",
                   b=killed_holder)
    assert orphans, "no run committed by the leader killed before sending was sent by the outbox"
    # and every take-over took at most one lease period plus one sleep
    assert all(t <= TAKEOVER_LIMIT for times in takeovers.values() for t in times), takeovers
    figures.append(
        f"{len(ticks)} ticks, each with one COMPLETED run; take-over with a {LEASE:.0f} s lease: "
        + "; ".join(f"{what} {', '.join(f'{t:.1f} s' for t in times)}" for what, times in takeovers.items())
        + f"; {len(orphans)} run(s) committed but unsent by the killed leader sent by the outbox"
    )
