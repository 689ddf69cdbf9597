"""PostgreSQL unreachable for a while, twice, during ticks and mid-run: beat and workers ride it out.

The shared server is never restarted: a TCP proxy between the processes and PostgreSQL closes every
connection and refuses new ones for a few seconds, then lets them through again — what clients see
when the server restarts. Beat and the worker must stay up (no crash loop), say so in one line per
outage, resume, duplicate nothing, apply each missed tick's misfire policy, and finish every run.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from dunning_ledger import DunningWorld, RunDriver, verify_ledger
from faultkit import (
    ManualRuns,
    Pool,
    PrivateRedis,
    Proc,
    Processes,
    Scale,
    TcpProxy,
    beat_argv,
    iter_logs,
    lease_holder,
    rows,
    scalar,
    scheduler_env,
    time_limit,
    wait_for,
    worker_argv,
)
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import Session

from scheduler.dispatch import WAKE_CHANNEL
from scheduler.jobs import JobCreate
from scheduler.models import Job, MisfirePolicy, OverlapPolicy

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults, time_limit(300)]

OUTAGE_SECONDS = 6.0
POLICIES = (MisfirePolicy.ALL, MisfirePolicy.ONCE, MisfirePolicy.SKIP)
_MISSED_ONE = re.compile(r"job (\d+) \(.*\): tick \S+ not run: (\w+)")
_MISSED_MORE = re.compile(r"job (\d+) \(.*\): (?:at least )?(\d+) more tick\(s\) up to \S+ not run: (\w+)")


def add_tick_jobs(engine: Engine, redis_url: str) -> tuple[dict[str, int], datetime]:
    """One every-second job per misfire policy."""
    first_tick = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    ids: dict[str, int] = {}
    with Session(engine) as session:
        for policy in POLICIES:
            job = Job(name=f"every second, misfire {policy}", job_type="faults_tick", cron="* * * * * ?",
                      next_fire_at=first_tick, misfire_policy=policy, max_catchup_runs=1000,
                      overlap_policy=OverlapPolicy.ALLOW)
            session.add(job)
            session.flush()
            assert job.id is not None
            ids[policy] = job.id
        session.commit()
    client = redis.Redis.from_url(redis_url)
    client.publish(WAKE_CHANNEL, b"1")
    client.close()
    return ids, first_tick


class BusyWorker(ManualRuns):
    """Manual runs of the suite's slow type, so the pool is inside a step when PostgreSQL goes away.

    Dunning chunks of four accounts take milliseconds and beat cannot schedule ticks during an outage,
    so without this the pool may finish everything it holds just before the cut and never notice it.
    A slow chunk sleeps first and writes after, well inside the outage.
    """

    def __init__(self, engine: Engine, redis_url: str) -> None:
        super().__init__(engine, redis_url)
        self.engine = engine
        self.job_id = self.job(JobCreate(name="busy across the outage", job_type="faults_slow",
                                         properties={"chunks": 1, "seconds": 2.0}))

    def evaluating(self, run_id: int) -> bool:
        """The run's one chunk is planned and not yet evaluated: a worker thread sleeps in it."""
        return bool(scalar(self.engine, "SELECT COUNT(*) FROM run_chunk WHERE run_id = :r AND evaluated_at IS NULL",
                           r=run_id))


def missed_ticks(beats: list[Proc]) -> Counter[tuple[int, str]]:
    """Ticks beat logged as not run, by (job, reason)."""
    missed: Counter[tuple[int, str]] = Counter()
    for _, line in iter_logs(beats):
        if more := _MISSED_MORE.search(line):
            missed[(int(more.group(1)), more.group(3))] += int(more.group(2))
        elif one := _MISSED_ONE.search(line):
            missed[(int(one.group(1)), one.group(2))] += 1
    return missed


def test_database_outages_are_ridden_out_without_crash_duplicate_or_silent_miss(
    fault_db: Engine, fault_db_url: str, private_redis: PrivateRedis, processes: Processes, tmp_path: Path,
    scale: Scale, figures: list[str],
) -> None:
    # Given beat (two replicas) and a worker pool that reach PostgreSQL through a proxy
    url = make_url(fault_db_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    env = scheduler_env(database_url=proxy.url(fault_db_url), redis_url=private_redis.url,
                        data_dir=tmp_path / "data", chunk_size=4)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # each process writes its metrics there
    beats = [processes.start("beat", beat_argv(), env) for _ in range(2)]
    pool = Pool(processes, "pool", worker_argv(["dunning", "faults_tick", "faults_slow"], threads=3), env)
    world = DunningWorld.create(fault_db, jobs=2, accounts_per_job=40, chunk_size=4)
    driver = RunDriver(engine=fault_db, world=world, redis_url=private_redis.url)
    busy = BusyWorker(fault_db, private_redis.url)
    outages: list[tuple[float, float]] = []
    must_live = [*beats, pool.proc]

    def running() -> int:
        return int(scalar(fault_db, "SELECT COUNT(*) FROM job_run WHERE job_type = 'dunning' AND status IN "
                                    "('PROCESSING', 'SUBMITTED')"))

    def recoveries(proc: Proc) -> int:
        return proc.log().count("database reachable again")

    def last_tick_run() -> datetime:
        latest = scalar(fault_db, "SELECT MAX(created_at) FROM job_run WHERE job_type = 'faults_tick'")
        return latest or datetime.min.replace(tzinfo=UTC)

    try:
        wait_for(lambda: lease_holder(fault_db), "a leader", timeout=60, processes=processes, must_live=must_live)
        jobs, first_tick = add_tick_jobs(fault_db, private_redis.url)
        for _ in range(scale.db_outages):
            # When PostgreSQL goes away while dunning runs are mid-chunk, a worker thread is inside a step
            # and ticks are due
            scheduled = last_tick_run()
            wait_for(lambda scheduled=scheduled: pool.ready() and running() >= 1 and last_tick_run() > scheduled,
                     "dunning runs in progress and ticks scheduled", timeout=120, processes=processes,
                     tick=driver.pump, must_live=must_live)
            slow_run = busy.start(busy.job_id)
            wait_for(lambda slow_run=slow_run: busy.evaluating(slow_run), "a slow chunk under way", timeout=30,
                     processes=processes, tick=driver.pump, must_live=must_live)
            cut = time.monotonic()
            proxy.cut()
            time.sleep(OUTAGE_SECONDS)  # the outage itself: nothing can reach the database meanwhile
            proxy.restore()
            outages.append((cut, time.monotonic()))
            # Then beat resumes scheduling, and every process says it is back (beat's backoff is 8 s at most
            # after an outage this short; a worker step retries every 5 s at most)
            before, count = last_tick_run(), len(outages)
            wait_for(lambda before=before: last_tick_run() > before, "beat to schedule again", timeout=30,
                     processes=processes, tick=driver.pump, must_live=must_live)
            try:
                wait_for(lambda count=count: all(recoveries(p) == count for p in must_live),
                         f"every process to say 'database reachable again' {count} time(s)",
                         timeout=30, processes=processes, tick=driver.pump, must_live=must_live)
            except AssertionError as exc:
                said = {p.name: (p.log().count("database unreachable"), recoveries(p)) for p in must_live}
                raise AssertionError(f"(unreachable, reachable again) lines by process: {said}\n{exc}") from None
        driver.creating = False
        wait_for(lambda: not driver.unfinished(), "every dunning run to finish", timeout=120, processes=processes,
                 must_live=must_live)
    finally:
        driver.close()
        busy.close()
    # Stop new ticks (next_fire_at stays the first tick not scheduled) while beat still runs, so its outbox
    # sends a run whose tick was committed but not yet sent, then stop beat.
    with fault_db.begin() as conn:
        conn.execute(text("UPDATE job SET status = 'PAUSED'"))
    wait_for(lambda: not scalar(fault_db, "SELECT COUNT(*) FROM job_run WHERE status <> 'COMPLETED'"),
             "every tick's run to complete", timeout=90, processes=processes, must_live=[pool.proc])
    for beat in beats:
        assert beat.terminate() == 0, processes.logs()
    proxy.close()

    # No crash loop: the same processes all along, each saying once per outage that the database is gone
    assert pool.restarts == 0 and pool.proc.alive(), processes.logs()
    for beat in beats:
        lines = [line for line in beat.log().splitlines() if "database unreachable" in line]
        assert len(lines) == len(outages), f"{beat.name}: {lines}"
        assert "SCHEDULER_DATABASE_URL" in lines[0]
    worker_lines = [line for line in pool.proc.log().splitlines() if "database unreachable" in line]
    assert len(worker_lines) == len(outages), worker_lines
    assert "Traceback" not in pool.proc.log(), pool.proc.log()[-5000:]

    # Every run of the dunning jobs completed once, with every effect once
    counts = verify_ledger(fault_db, driver)

    # Every tick of every job either has one run or was logged as not run, by its misfire policy, and
    # counted in scheduler_missed_ticks_total
    missed = missed_ticks(beats)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    for reason in ("coalesced", "skipped"):
        logged = sum(n for (_, why), n in missed.items() if why == reason)
        labels = {"job_type": "faults_tick", "reason": reason}
        counted = registry.get_sample_value("scheduler_missed_ticks_total", labels)
        assert counted == logged > 0, f"{reason}: {counted} counted, {logged} logged"
    summary = []
    for policy, job_id in jobs.items():
        next_fire = scalar(fault_db, "SELECT next_fire_at FROM job WHERE id = :j", j=job_id)
        due = int((next_fire - first_tick).total_seconds())
        ticks = [r.scheduled_for for r in rows(fault_db, "SELECT scheduled_for FROM job_run WHERE job_id = :j "
                                                         "ORDER BY scheduled_for", j=job_id)]
        assert len(set(ticks)) == len(ticks), f"{policy}: a tick ran twice"
        assert all(first_tick <= t < next_fire for t in ticks)
        not_run = {reason: n for (job, reason), n in missed.items() if job == job_id}
        assert len(ticks) + sum(not_run.values()) == due, f"{policy}: {len(ticks)} runs + {not_run} != {due} ticks"
        if policy == MisfirePolicy.ALL:
            assert not not_run, not_run
        else:
            reason = "coalesced" if policy == MisfirePolicy.ONCE else "skipped"
            assert set(not_run) == {reason} and not_run[reason] >= len(outages), not_run
        summary.append(f"{policy} {len(ticks)} runs + {sum(not_run.values())} logged misses = {due} ticks")
    figures.append(
        f"{len(outages)} PostgreSQL outages of {OUTAGE_SECONDS:.0f} s (proxy cut): no process restarted; one "
        f"'database unreachable' line per outage in each beat and in the worker; {counts['runs']} "
        f"dunning runs COMPLETED with effects once; every missed tick logged (job, tick, reason) and counted in "
        f"scheduler_missed_ticks_total; " + "; ".join(summary)
    )
