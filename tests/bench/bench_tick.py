"""Beat's tick: a burst of jobs due in the same second, tick cost against the number of jobs, and fire lag.

    python tests/bench/bench_tick.py --burst 10000 --jobs 100000 --lag-seconds 120

A scratch PostgreSQL database and a private redis-server; jobs of a no-op type, written straight into the
job table. No worker runs: the runs wait in Redis. Three scenarios:

- burst: ``--burst`` jobs due in the same second; seconds until every run is recorded and sent (goal ≤ 2 s);
- scale: one tick with 10 due jobs among ``--small`` and among ``--jobs`` active jobs; the ratio of the two
  tick times (goal ≤ 1.5: a tick costs by the due jobs, not by all jobs);
- fire lag: beat's own loop for ``--lag-seconds`` over ``--jobs`` jobs of which 1 % fall due each minute
  (hourly jobs at random seconds); fire lag = sent - scheduled tick, p99 (goal ≤ 250 ms).

The baseline, measured in the same run on the same jobs, is a beat that loads and checks every job each tick
and records and sends each due run on its own (three transactions and a send per run).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench_types import NOOP
from benchkit import Figure, Report, percentile, private_redis, scratch_database, server_url, versions
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from beat.scheduling import schedule_of
from beat.service import Beat
from scheduler.clock import SystemClock
from scheduler.db import make_engine
from scheduler.dispatch import Dispatcher, Phase, RunStep, make_dispatcher
from scheduler.jobtypes import JobTypeRegistry
from scheduler.migrate import upgrade
from scheduler.models import Job, JobRun, JobStatus, RunEvent, RunStatus, RunTrigger
from scheduler.settings import Settings

REGISTRY = JobTypeRegistry([NOOP])
DUE_PER_TICK = 10


# -- jobs -------------------------------------------------------------------------------------------


def insert_jobs(engine: Engine, jobs: list[dict[str, Any]]) -> None:
    """Write jobs straight into the table (``cron``, ``next_fire_at``, ``last_scheduled_for`` given)."""
    now = datetime.now(UTC).isoformat()
    for start in range(0, len(jobs), 50_000):
        rows = [{**job, "next_fire_at": job["next_fire_at"].isoformat(),
                 "last_scheduled_for": job["last_scheduled_for"].isoformat()} for job in jobs[start:start + 50_000]]
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO job (name, name_key, job_type, status, description, cron, timezone, properties, "
                "notify_emails, notify_on, can_run_manual, requires_review, misfire_policy, catchup_window, "
                "max_catchup_runs, overlap_policy, created_at, created_by, next_fire_at, last_scheduled_for) "
                "SELECT name, lower(name), :type, 'ACTIVE', '', cron, 'UTC', '{}', '[]', '[]', true, false, 'ONCE', "
                "3600, 10, overlap, CAST(:now AS timestamptz), 'bench', next_fire_at, last_scheduled_for "
                "FROM json_to_recordset(CAST(:rows AS json)) AS j(name text, cron text, overlap text, "
                "next_fire_at timestamptz, last_scheduled_for timestamptz)"),
                {"type": NOOP.name, "now": now, "rows": json.dumps(rows)})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE job"))


def hourly(name: str, at: datetime, *, overlap: str = "SKIP") -> dict[str, Any]:
    """A job firing every hour at ``at``'s minute and second; next fire ``at``."""
    return {"name": name, "cron": f"{at.second} {at.minute} * * * ?", "overlap": overlap, "next_fire_at": at,
            "last_scheduled_for": at - timedelta(hours=1)}


def every_second(name: str, at: datetime) -> dict[str, Any]:
    return {"name": name, "cron": "* * * * * ?", "overlap": "ALLOW", "next_fire_at": at,
            "last_scheduled_for": at - timedelta(seconds=1)}


def reset(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE run_event, job_run, job, beat_lease RESTART IDENTITY CASCADE"))


def queued(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.llen(f"dramatiq:{NOOP.queue}"))
    finally:
        client.flushdb()
        client.close()


def make_beat(url: str, engine: Engine, dispatcher: Dispatcher) -> Beat:
    """A beat as ``scheduler beat`` makes it (its default batch size). No worker takes the runs here, so the
    outbox would send every run again after ``outbox_resend_after`` and overwrite the ``enqueued_at`` the
    fire lag is measured by: it waits an hour instead."""
    settings = Settings(database_url=url, redis_url=dispatcher.url, outbox_resend_after=3600)
    return Beat(settings, engine, REGISTRY, dispatcher, SystemClock())


# -- the baseline: a beat that loads and checks every job ---------------------------------------------


def naive_tick(engine: Engine, dispatcher: Dispatcher, now: datetime) -> int:
    """Load every active job, check each against its schedule, record and send each due run on its own."""
    with Session(engine) as session:
        jobs = list(session.scalars(select(Job).where(Job.status == JobStatus.ACTIVE)))  # type: ignore[arg-type]
        session.expunge_all()
    due: list[tuple[Job, datetime]] = []
    for job in jobs:
        assert job.cron is not None
        tick = schedule_of(job.cron, job.timezone, job.name).next_after(job.last_scheduled_for or job.created_at)
        if tick <= now:
            due.append((job, tick))
    for job, tick in due:
        with Session(engine) as session:
            run = JobRun(job_id=job.id or 0, job_type=job.job_type, trigger=RunTrigger.SCHEDULED, scheduled_for=tick,
                         created_by="naive", created_at=now)
            session.add(run)
            session.flush()
            session.add(RunEvent(run_id=run.id or 0, to_status=RunStatus.CREATED, at=now, actor="naive"))
            session.execute(update(Job).where(Job.id == job.id).values(last_scheduled_for=tick))  # type: ignore[arg-type]
            session.commit()
            run_id = run.id or 0
        dispatcher.send_step(NOOP.queue, RunStep(run_id=run_id, phase=Phase.PLAN))
        with Session(engine) as session:
            session.execute(update(JobRun).where(JobRun.id == run_id).values(enqueued_at=datetime.now(UTC)))  # type: ignore[arg-type]
            session.commit()
    return len(due)


# -- scenarios --------------------------------------------------------------------------------------


def burst(url: str, engine: Engine, redis_url: str, count: int, sample: int) -> dict[str, Any]:
    """``count`` jobs due in the same second: beat's ticks until all are recorded and sent; the naive beat on
    ``sample`` of them (scaled to ``count``)."""
    reset(engine)
    at = datetime.now(UTC).replace(microsecond=0)
    insert_jobs(engine, [hourly(f"burst {n}", at) for n in range(count)])
    dispatcher = make_dispatcher(Settings(redis_url=redis_url))
    beat = make_beat(url, engine, dispatcher)
    started = time.perf_counter()
    ticks = 0
    while True:
        ticks += 1
        if not beat.tick().more_due:
            break
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        sent = int(conn.execute(text("SELECT COUNT(*) FROM job_run WHERE enqueued_at IS NOT NULL")).scalar_one())
    in_redis = queued(redis_url)

    reset(engine)
    later = at + timedelta(minutes=30)
    insert_jobs(engine, [hourly(f"burst {n}", at if n < sample else later) for n in range(count)])
    naive_started = time.perf_counter()
    naive_due = naive_tick(engine, dispatcher, datetime.now(UTC))
    naive_seconds = time.perf_counter() - naive_started
    queued(redis_url)
    dispatcher.broker.close()
    return {"jobs": count, "seconds": seconds, "ticks": ticks, "runs_sent": sent, "in_redis": in_redis,
            "naive_sample": naive_due, "naive_sample_seconds": naive_seconds,
            "naive_seconds": naive_seconds * count / max(1, naive_due)}


def tick_times(run_tick: Callable[[], Any], ticks: int) -> list[float]:
    """Seconds per tick, one tick a second (the due jobs fire every second)."""
    times: list[float] = []
    for _ in range(ticks):
        time.sleep(1.0 - time.time() % 1.0 + 0.05)
        started = time.perf_counter()
        run_tick()
        times.append(time.perf_counter() - started)
    return times


def scale(url: str, engine: Engine, redis_url: str, small: int, large: int, ticks: int) -> dict[str, Any]:
    """Tick seconds with 10 due jobs among ``small`` and among ``large`` active jobs; ours and the naive beat's."""
    result: dict[str, Any] = {}
    dispatcher = make_dispatcher(Settings(redis_url=redis_url))
    for total in (small, large):
        reset(engine)
        now = datetime.now(UTC).replace(microsecond=0)
        rng = random.Random(total)
        idle = [hourly(f"idle {n}", now + timedelta(minutes=10, seconds=rng.randrange(3000)))
                for n in range(total - DUE_PER_TICK)]
        insert_jobs(engine, [*(every_second(f"due {n}", now) for n in range(DUE_PER_TICK)), *idle])
        beat = make_beat(url, engine, dispatcher)
        beat.tick()  # the lease, the first runs, warm caches
        ours = tick_times(beat.tick, ticks)
        naive = tick_times(lambda: naive_tick(engine, dispatcher, datetime.now(UTC)), max(3, ticks // 2))
        with engine.connect() as conn:
            runs = int(conn.execute(text("SELECT COUNT(*) FROM job_run")).scalar_one())
        result[str(total)] = {"ours_median": statistics.median(ours), "naive_median": statistics.median(naive),
                              "ours": ours, "naive": naive, "runs": runs}
        queued(redis_url)
    dispatcher.broker.close()
    ours_ratio = result[str(large)]["ours_median"] / result[str(small)]["ours_median"]
    naive_ratio = result[str(large)]["naive_median"] / result[str(small)]["naive_median"]
    return {"by_jobs": result, "ours_ratio": ours_ratio, "naive_ratio": naive_ratio}


def fire_lag(url: str, engine: Engine, redis_url: str, jobs: int, seconds: float) -> dict[str, Any]:
    """Beat's own loop over ``jobs`` jobs, 1 % due per minute (60 % hourly at random seconds, 40 % later)."""
    reset(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(11)
    hour = now.replace(minute=0, second=0)
    rows = []
    for n in range(jobs):
        if n % 5 < 3:  # hourly at a random second: 0.6 x jobs / 60 per minute = 1 % per minute
            at = hour + timedelta(seconds=rng.randrange(3600))
            at = at + timedelta(hours=1) if at <= now + timedelta(seconds=2) else at
            rows.append(hourly(f"lag {n}", at))
        else:
            rows.append(hourly(f"later {n}", now + timedelta(hours=2, seconds=rng.randrange(3600))))
    insert_jobs(engine, rows)
    dispatcher = make_dispatcher(Settings(redis_url=redis_url))
    beat = make_beat(url, engine, dispatcher)
    stop = threading.Event()
    loop = threading.Thread(target=beat.run_forever, args=(stop,), daemon=True)
    window_start = datetime.now(UTC) + timedelta(seconds=2)
    loop.start()
    time.sleep(seconds + 2)
    window_end = datetime.now(UTC) - timedelta(seconds=1)
    stop.set()
    loop.join(30)
    with engine.connect() as conn:
        found = [r[0] for r in conn.execute(text(
            "SELECT EXTRACT(EPOCH FROM enqueued_at - scheduled_for) FROM job_run "
            "WHERE scheduled_for >= :a AND scheduled_for < :b"), {"a": window_start, "b": window_end})]
    lags = [float(x) for x in found if x is not None]
    queued(redis_url)
    dispatcher.broker.close()
    return {"jobs": jobs, "seconds": seconds, "runs": len(lags), "runs_per_minute": len(lags) / seconds * 60,
            "p50": percentile(lags, 50), "p99": percentile(lags, 99), "max": max(lags, default=0.0),
            "unsent": len(found) - len(lags)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=10_000, help="jobs due in the same second")
    parser.add_argument("--naive-sample", type=int, default=1_000, help="due jobs the naive beat is timed on")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--lag-seconds", type=float, default=120.0)
    parser.add_argument("--smoke", action="store_true", help="small size for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.burst, args.naive_sample, args.small, args.jobs, args.ticks, args.lag_seconds = 1000, 200, 100, 5000, 3, 8
    report = Report(benchmark="beat_tick", size=f"burst {args.burst:,}; {args.small:,} vs {args.jobs:,} jobs")
    with scratch_database(server_url(), "bench_tick") as url, private_redis() as redis_url:
        engine = make_engine(url)
        upgrade(engine)
        report.versions = versions(engine, redis_url)
        b = burst(url, engine, redis_url, args.burst, min(args.naive_sample, args.burst))
        s = scale(url, engine, redis_url, args.small, args.jobs, args.ticks)
        lag = fire_lag(url, engine, redis_url, args.jobs, args.lag_seconds)
        engine.dispose()
    report.add(Figure(scenario=f"{args.burst:,} jobs due in the same second", figure=b["seconds"], unit="s",
                      baseline=b["naive_seconds"], baseline_label="naive beat", higher_is_better=False,
                      goal="≤ 2 s", met=b["seconds"] <= 2.0 and b["runs_sent"] == args.burst,
                      note=f"{b['runs_sent']:,} runs sent in {b['ticks']} ticks ({args.burst / b['seconds']:,.0f} "
                           f"runs/s), {b['in_redis']:,} messages in Redis; naive beat timed on "
                           f"{b['naive_sample']:,} due jobs ({b['naive_sample_seconds']:.1f} s), scaled"))
    small, large = s["by_jobs"][str(args.small)], s["by_jobs"][str(args.jobs)]
    report.add(Figure(scenario=f"tick with 10 due, {args.jobs:,} vs {args.small:,} jobs", figure=s["ours_ratio"],
                      unit="x", baseline=s["naive_ratio"], baseline_label="naive beat", higher_is_better=False,
                      goal="≤ 1.5", met=s["ours_ratio"] <= 1.5,
                      note=f"median tick {1000 * large['ours_median']:.1f} ms vs {1000 * small['ours_median']:.1f} ms "
                           f"(naive {1000 * large['naive_median']:.0f} ms vs {1000 * small['naive_median']:.1f} ms)"))
    report.add(Figure(scenario=f"fire lag p99, {args.jobs:,} jobs, 1 %/min due", figure=lag["p99"], unit="s",
                      higher_is_better=False, goal="≤ 0.25 s", met=lag["p99"] <= 0.25 and lag["runs"] > 0,
                      note=f"{lag['runs']:,} runs in {args.lag_seconds:.0f} s ({lag['runs_per_minute']:,.0f}/min), "
                           f"p50 {lag['p50']:.3f} s, max {lag['max']:.3f} s"))
    report.details = {"burst": b, "scale": s, "fire_lag": lag}
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
