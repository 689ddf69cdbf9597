"""Benchmark: the beat leader's cluster-wide gauges at 100,000 jobs (PostgreSQL).

Seeds ``--jobs`` scheduled jobs (a few hundred distinct schedules, as hashed crons spread them) with
``--runs`` runs each (most COMPLETED, some active, some stale, some unsent), then times one reading of
the cheap gauges (every 5 s), one with the last successes (every 30 s), and the first reading of a new
leader (which also computes every schedule's expected interval). The baseline, measured in the same
run, is one idle beat tick (nothing due) on the same database; Redis is a stub (the benchmark times
the database).

    python tests/bench/bench_cluster_metrics.py --jobs 100000 --runs 10
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from benchkit import QueueDispatcher, scratch_database
from sqlalchemy import text

from beat.cluster_metrics import ClusterMetrics
from beat.service import Beat
from scheduler.clock import FrozenClock
from scheduler.db import make_engine, make_session_factory
from scheduler.dispatch import make_broker
from scheduler.jobtypes import load_registry
from scheduler.migrate import upgrade
from scheduler.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def seed(engine: object, jobs: int, runs: int) -> None:
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(text("""
            INSERT INTO job (name, name_key, job_type, status, description, cron, timezone, properties, notify_emails,
                             notify_on, can_run_manual, requires_review, misfire_policy, catchup_window,
                             max_catchup_runs, overlap_policy, max_runtime, created_at, created_by, next_fire_at,
                             pause_on_failure)
            SELECT 'job ' || g, 'job ' || g, 'dunning', 'ACTIVE', '', (g % 60) || ' ' || (g % 6) || ' * * *',
                   'UTC', '{}', '[]', '[]', true, false, 'ONCE', 3600, 10, 'SKIP', NULL, :now, 'bench',
                   :now + interval '1 hour', NULL
            FROM generate_series(1, :jobs) AS g"""), {"jobs": jobs, "now": NOW})
        conn.execute(text("""
            INSERT INTO job_run (job_id, job_type, trigger, status, preview, run_properties, created_by,
                                 created_at, enqueued_at, started_at, finished_at, heartbeat_at, attempt,
                                 chunks_total, chunks_done, summary, scheduled_for)
            SELECT j.id, 'dunning', 'SCHEDULED',
                   CASE WHEN r < :runs - 1 THEN 'COMPLETED' WHEN j.id % 50 = 0 THEN 'PROCESSING'
                        WHEN j.id % 7 = 0 THEN 'CREATED' ELSE 'FAILED' END,
                   false, '{}', 'bench', :now - (r || ' days')::interval,
                   CASE WHEN j.id % 14 = 0 AND r = :runs - 1 THEN NULL ELSE :now - (r || ' days')::interval END,
                   :now - (r || ' days')::interval,
                   :now - (r || ' days')::interval - ((j.id % 1440) || ' minutes')::interval,
                   :now - (r || ' days')::interval, 1, 0, 0, '{}', :now - (r || ' days')::interval
            FROM job j CROSS JOIN generate_series(0, :runs - 1) AS r"""), {"runs": runs, "now": NOW})
        conn.execute(text("ANALYZE"))


class StubRedis:
    """Answers the few commands a tick and a reading send, at once: the benchmark times the database."""

    def set(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def info(self, section: str) -> dict[str, str]:
        return {"run_id": "bench"}

    def pipeline(self, transaction: bool = False) -> StubRedis:
        self.calls = 0
        return self

    def __getattr__(self, name: str) -> Callable[..., None]:
        def count(*args: Any) -> None:
            self.calls += 1

        return count

    def execute(self) -> list[int]:
        return [0] * self.calls


def timed(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the first ticks log every run they re-send
    server = os.environ.get("SCHEDULER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    with scratch_database(server, "bench_cluster") as url:
        engine = make_engine(url)
        upgrade(engine)
        seed(engine, args.jobs, args.runs)
        settings = Settings(database_url=url, redis_url="redis://127.0.0.1:1/0")
        factory = make_session_factory(engine)
        clock = FrozenClock(NOW)
        registry = load_registry(settings)
        dispatcher = QueueDispatcher()
        dispatcher.broker = make_broker("redis://127.0.0.1:1/0")  # never reached: steps stay in memory
        beat = Beat(settings, factory, registry, dispatcher, clock, "bench")
        beat.broker_watch.client = StubRedis()

        def metrics() -> ClusterMetrics:
            return ClusterMetrics(factory=factory, redis_client=StubRedis(), job_types=registry.names,
                                  queues=registry.queues, clock=clock, heartbeat_timeout=timedelta(seconds=30),
                                  unsent_grace=timedelta(seconds=2))

        started = time.perf_counter()
        first = metrics()
        reading = first.refresh()
        new_leader = time.perf_counter() - started
        fast = timed(first.refresh, args.repeat)  # within 30 s: last successes kept from the first reading

        def slow_reading() -> None:  # the jobs listed again and the runs completed since the last reading
            first._slow_at = 0.0
            first.refresh()

        slow = timed(slow_reading, args.repeat)
        for _ in range(100):  # the first ticks re-send the unsent and reclaim the stale runs, a batch each
            result = beat.tick()
            if not (result.resent or result.reclaimed or result.more_due):
                break
        tick = timed(beat.tick, args.repeat)
        engine.dispose()
    rows = [("idle beat tick (baseline)", tick), ("gauges every 5 s", fast),
            ("with jobs and new successes (30 s)", slow), ("first reading of a new leader", new_leader)]
    print(f"{args.jobs} jobs, {args.jobs * args.runs} runs; {len(reading.last_success)} last successes, "
          f"{reading.outbox_backlog} unsent")
    for name, seconds in rows:
        print(f"{name:<36} {seconds * 1000:9.1f} ms  {seconds / tick:7.1f}x baseline")
    print(json.dumps({name: round(seconds, 4) for name, seconds in rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
