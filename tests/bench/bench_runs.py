"""Tiny runs end to end: create → Redis → worker → every status write, against raw Dramatiq in the same run.

    python tests/bench/bench_runs.py --runs 20000 --processes 2 --threads 8

A scratch PostgreSQL database and a private redis-server. The runs are of a no-op job type (it plans no
chunk), so what is measured is the scheduler's own path: the runs are recorded in batches, sent, taken by
a real ``scheduler worker`` pool (``--processes`` x ``--threads``) and moved through every status with its
audit row. The baseline is Dramatiq alone on the same broker with the same pool shape: a no-op actor.
Figures: runs/s against raw messages/s (goal ≥ 0.3x), status lag p99 (message sent → status written),
transactions and CPU milliseconds per run (worker pool + PostgreSQL), which hold still on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from bench_raw_actor import COUNTER, QUEUE
from bench_types import NOOP, NOOP_REF
from benchkit import (
    REPO,
    BackendCpu,
    Figure,
    Report,
    bench_env,
    percentile,
    private_redis,
    process_cpu,
    scratch_database,
    server_url,
    versions,
)
from runkit import RunProducer, process_tree
from sqlalchemy import Engine, text

from scheduler.clock import SystemClock
from scheduler.db import make_engine, make_session_factory
from scheduler.dispatch import make_broker
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import JobTypeRegistry
from scheduler.migrate import upgrade
from scheduler.models import RunStatus
from workers.runtime.worker import worker_command

GOAL_RATIO = 0.3


def start_pool(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def stop_pool(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def raw_dramatiq(redis_url: str, messages: int, processes: int, threads: int, log: Path) -> dict[str, float]:
    """Dramatiq alone: ``messages`` no-op messages through a pool of the same shape; messages/s."""
    from dramatiq import Message

    env = bench_env(BENCH_REDIS_URL=redis_url)
    pool = start_pool([sys.executable, "-m", "dramatiq", "bench_raw_actor", "--processes", str(processes),
                       "--threads", str(threads), "--queues", QUEUE], env, log)
    client = redis.Redis.from_url(redis_url)
    broker = make_broker(redis_url)
    try:
        warm = 50
        for n in range(warm):
            broker.enqueue(Message(queue_name=QUEUE, actor_name="noop", args=(n,), kwargs={}, options={}))
        _wait(lambda: int(client.get(COUNTER) or 0) >= warm, pool, log, "raw warm-up")
        client.set(COUNTER, 0)
        pids = process_tree(pool.pid)
        cpu0 = process_cpu(pids)
        started = time.perf_counter()
        for n in range(messages):
            broker.enqueue(Message(queue_name=QUEUE, actor_name="noop", args=(n,), kwargs={}, options={}))
        _wait(lambda: int(client.get(COUNTER) or 0) >= messages, pool, log, "raw messages")
        elapsed = time.perf_counter() - started
        cpu = process_cpu(pids) - cpu0
    finally:
        stop_pool(pool)
        broker.close()
        client.close()
    return {"seconds": elapsed, "per_second": messages / elapsed, "pool_cpu_ms_per_message": 1000 * cpu / messages}


def _wait(check: Any, process: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process.poll() is not None:
            raise SystemExit(f"the pool exited ({process.returncode}) during {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out during {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def count_status(engine: Engine, status: str, first_id: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM job_run WHERE status = :s AND id >= :first"),
                                {"s": status, "first": first_id}).scalar_one())


def commits(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")).scalar_one())


def paced_lag(engine: Engine, producer: RunProducer, *, rate: float, seconds: float) -> dict[str, Any]:
    """Send runs at ``rate`` per second for ``seconds``, a small batch every 100 ms; when each was sent."""
    per_tick = max(1, round(rate / 10))
    sent_at: dict[int, datetime] = {}
    ids: list[int] = []
    started = time.perf_counter()
    tick = 0
    while time.perf_counter() - started < seconds:
        new = producer.produce(per_tick, batch=per_tick)
        sent_at.update(dict.fromkeys(new, datetime.now(UTC)))
        ids += new
        tick += 1
        time.sleep(max(0.0, started + tick * 0.1 - time.perf_counter()))
    return {"first": ids[0], "runs": len(ids), "sent_at": sent_at, "rate": per_tick * 10}


def ours(url: str, redis_url: str, runs: int, batch: int, processes: int, threads: int, log: Path,
         lag_seconds: float) -> dict[str, Any]:
    """The scheduler's run path: runs recorded in batches, sent, taken by a real worker pool until COMPLETED."""
    engine = make_engine(url)
    registry = JobTypeRegistry([NOOP])
    factory = make_session_factory(engine)
    with factory() as session:
        job = create_job(session=session, registry=registry, actor="bench", clock=SystemClock(),
                         job_in=JobCreate(name="bench noop", job_type=NOOP.name, properties={},
                                          overlap_policy="ALLOW"))
        job_id = job.id or 0
    env = bench_env(SCHEDULER_DATABASE_URL=url, SCHEDULER_REDIS_URL=redis_url,
                    SCHEDULER_EXTRA_JOB_TYPES=json.dumps([NOOP_REF]), SCHEDULER_WORKER_METRICS_PORT="0",
                    SCHEDULER_DATA_DIR=str(log.parent / "worker-data"),
                    SCHEDULER_DB_POOL_SIZE=str(threads + 1))  # a connection per thread plus the heartbeat's
    pool = start_pool(worker_command([NOOP.queue], processes, threads), env, log)
    broker = make_broker(redis_url)
    producer = RunProducer(engine=engine, broker=broker, registry=registry, job_id=job_id)
    try:
        first = producer.produce(20, batch=20)[0]
        _wait(lambda: count_status(engine, RunStatus.COMPLETED, first) >= 20, pool, log, "warm-up")
        _wait(lambda: len(process_tree(pool.pid)) >= processes + 1, pool, log, "worker processes")
        pids = process_tree(pool.pid)
        backends = BackendCpu(engine)
        cpu0, pg0, xacts0 = process_cpu(pids), backends.sample(), commits(engine)
        started = time.perf_counter()
        ids = producer.produce(runs, batch=batch)
        first = ids[0]
        _wait(lambda: count_status(engine, RunStatus.COMPLETED, first) >= runs, pool, log, "the runs")
        elapsed = time.perf_counter() - started
        pool_cpu, pg_cpu = process_cpu(pids) - cpu0, backends.since(pg0) or 0.0
        transactions = commits(engine) - xacts0
        with engine.connect() as conn:
            events = int(conn.execute(text("SELECT COUNT(*) FROM run_event WHERE run_id >= :first"),
                                      {"first": first}).scalar_one())
        # Status lag at half the throughput just measured: what a run waits when the pool keeps up.
        paced = paced_lag(engine, producer, rate=runs / elapsed / 2, seconds=lag_seconds)
        _wait(lambda: count_status(engine, RunStatus.COMPLETED, paced["first"]) >= paced["runs"], pool, log,
              "the paced runs")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, started_at, finished_at FROM job_run WHERE id >= :first"),
                                {"first": paced["first"]}).all()
    finally:
        stop_pool(pool)
        broker.close()
        engine.dispose()
    sent_at = paced["sent_at"]
    start_lag = [(r[1] - sent_at[r[0]]).total_seconds() for r in rows if r[0] in sent_at]
    end_lag = [(r[2] - sent_at[r[0]]).total_seconds() for r in rows if r[0] in sent_at]
    return {
        "seconds": elapsed, "per_second": runs / elapsed, "events_per_run": events / runs,
        "paced_rate": paced["rate"],
        "transactions_per_run": transactions / runs, "pool_cpu_ms_per_run": 1000 * pool_cpu / runs,
        "postgres_cpu_ms_per_run": 1000 * pg_cpu / runs,
        "start_lag_p50": percentile(start_lag, 50), "start_lag_p99": percentile(start_lag, 99),
        "status_lag_p50": percentile(end_lag, 50), "status_lag_p99": percentile(end_lag, 99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="runs recorded and sent together")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="alternate ours and raw this often; best of each")
    parser.add_argument("--lag-seconds", type=float, default=10.0, help="paced phase measuring status lag")
    parser.add_argument("--smoke", action="store_true", help="small size for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.repeat, args.lag_seconds = 1000, 1, 2.0
    report = Report(benchmark="run_path", size=f"{args.runs:,} runs, {args.processes}x{args.threads} workers")
    log = REPO / "bench-results" / "run_path.log"
    log.parent.mkdir(exist_ok=True)
    log.write_bytes(b"")
    with scratch_database(server_url(), "bench_runs") as url, private_redis() as redis_url:
        engine = make_engine(url)
        upgrade(engine)
        report.versions = versions(engine, redis_url)
        engine.dispose()
        best_ours: dict[str, Any] | None = None
        best_raw: dict[str, float] | None = None
        for _ in range(args.repeat):
            raw = raw_dramatiq(redis_url, args.runs, args.processes, args.threads, log)
            mine = ours(url, redis_url, args.runs, args.batch, args.processes, args.threads, log,
                        lag_seconds=args.lag_seconds)
            if best_raw is None or raw["per_second"] > best_raw["per_second"]:
                best_raw = raw
            if best_ours is None or mine["per_second"] > best_ours["per_second"]:
                best_ours = mine
    assert best_ours is not None and best_raw is not None
    ratio = best_ours["per_second"] / best_raw["per_second"]
    report.add(Figure(scenario="tiny runs end to end", figure=best_ours["per_second"], unit="runs/s",
                      baseline=best_raw["per_second"], baseline_label="raw Dramatiq no-op msgs",
                      goal=f"≥ {GOAL_RATIO}x raw Dramatiq", met=ratio >= GOAL_RATIO,
                      note=f"{best_ours['transactions_per_run']:.1f} transactions, {best_ours['events_per_run']:.1f} "
                           f"audit rows per run; CPU per run: pool {best_ours['pool_cpu_ms_per_run']:.2f} ms + "
                           f"PostgreSQL {best_ours['postgres_cpu_ms_per_run']:.2f} ms (raw Dramatiq: "
                           f"{best_raw['pool_cpu_ms_per_message']:.2f} ms per message)"))
    report.add(Figure(scenario="status lag p99 (sent → COMPLETED written)", figure=best_ours["status_lag_p99"],
                      unit="s", higher_is_better=False,
                      note=f"at {best_ours['paced_rate']} runs/s (half the throughput): p50 "
                           f"{best_ours['status_lag_p50']:.3f} s; sent → PROCESSING p99 "
                           f"{best_ours['start_lag_p99']:.3f} s"))
    report.details = {"ours": best_ours, "raw_dramatiq": best_raw, "processes": args.processes,
                      "threads": args.threads, "batch": args.batch}
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
