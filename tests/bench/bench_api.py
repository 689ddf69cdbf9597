"""Manual runs through the HTTP API and through Dramatiq's ``request_run``, with API keys on every request.

    python tests/bench/bench_api.py --seconds 20 --api-workers 2

A scratch PostgreSQL database and a private redis-server; ``scheduler api`` started as in production (with
``--workers``, ``SCHEDULER_API_WORKERS``) and an operator key sent on every request. A small asyncio client
(:mod:`loadgen`, HTTP/1.1 keep-alive) runs in this process: its CPU counts against the same cores and is
printed. Scenarios: ``POST /api/v1/runs`` with 1 and with 16 clients (each request its own idempotency key),
``POST /api/v1/runs/batch`` (1,000 runs a request), and ``request_run`` messages taken by a real worker pool.
The baseline is the same server's floor: ``GET /healthz`` with 16 clients (no database, no key).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from bench_types import NOOP, NOOP_REF
from benchkit import REPO, Figure, Report, bench_env, free_port, private_redis, scratch_database, server_url, versions
from loadgen import LoadResult, json_body, load
from runkit import process_tree
from sqlalchemy import Engine, text

from scheduler.auth import create_key
from scheduler.clock import SystemClock
from scheduler.db import make_engine, make_session_factory
from scheduler.dispatch import REQUEST_RUN_ACTOR, SCHEDULER_QUEUE, make_broker
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import JobTypeRegistry
from scheduler.migrate import upgrade
from workers.runtime.worker import worker_command

BATCH = 1_000


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def runs_recorded(engine: Engine) -> tuple[int, int]:
    """Runs recorded, and of those, sent (``enqueued_at`` set)."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT COUNT(*), COUNT(enqueued_at) FROM job_run")).one()
    return int(row[0]), int(row[1])


def request_runs(engine: Engine, env: dict[str, str], redis_url: str, job_id: int, count: int,
                 log: Path) -> dict[str, Any]:
    """``count`` ``request_run`` messages on the scheduler queue, taken by a real pool (2 x 8); runs/s."""
    from dramatiq import Message

    before, _ = runs_recorded(engine)
    pool = start(worker_command([SCHEDULER_QUEUE], 2, 8), env, log)
    broker = make_broker(redis_url)
    try:
        started = time.perf_counter()
        for n in range(count):
            broker.enqueue(Message(queue_name=SCHEDULER_QUEUE, actor_name=REQUEST_RUN_ACTOR, args=(job_id,),
                                   kwargs={"idempotency_key": f"dramatiq-{n}"}, options={}))
        deadline = time.monotonic() + 600
        while runs_recorded(engine)[0] - before < count:
            if pool.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"request_run pool stopped or timed out:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    finally:
        stop(pool)
        broker.close()
    return {"runs": count, "seconds": seconds, "per_second": count / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="per scenario")
    parser.add_argument("--api-workers", type=int, default=0, help="API worker processes (0: the default)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--request-runs", type=int, default=5_000, help="request_run messages")
    parser.add_argument("--smoke", action="store_true", help="small size for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.request_runs = 3.0, 300
    report = Report(benchmark="api_runs", size=f"{args.seconds:.0f} s per scenario")
    log = REPO / "bench-results" / "api_runs.log"
    log.parent.mkdir(exist_ok=True)
    log.write_bytes(b"")
    with scratch_database(server_url(), "bench_api") as url, private_redis() as redis_url:
        engine = make_engine(url)
        upgrade(engine)
        report.versions = versions(engine, redis_url)
        with make_session_factory(engine)() as session:
            job = create_job(session=session, registry=JobTypeRegistry([NOOP]), actor="bench", clock=SystemClock(),
                             job_in=JobCreate(name="bench manual", job_type=NOOP.name, properties={},
                                              overlap_policy="ALLOW"))
            job_id = job.id or 0
            _, token = create_key(session, "bench operator", "operator", actor="bench")
        port = free_port()
        env = bench_env(SCHEDULER_DATABASE_URL=url, SCHEDULER_REDIS_URL=redis_url,
                        SCHEDULER_EXTRA_JOB_TYPES=json.dumps([NOOP_REF]), SCHEDULER_WORKER_METRICS_PORT="0",
                        SCHEDULER_DATA_DIR=str(log.parent / "api-data"), SCHEDULER_LOG_LEVEL="WARNING")
        if args.api_workers:
            env["SCHEDULER_API_WORKERS"] = str(args.api_workers)
        api = start([sys.executable, "-m", "cli.main", "api", "--host", "127.0.0.1", "--port", str(port)], env, log)
        results: dict[str, Any] = {}
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if api.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the API did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
            processes = len(process_tree(api.pid))
            auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            common = {"host": "127.0.0.1", "port": port}
            one_run = json_body(lambda n: {"job_id": job_id}, "single")
            load(**common, method="POST", path="/api/v1/runs", headers=auth, clients=4, seconds=1.0,
                 body=json_body(lambda n: {"job_id": job_id}, "warm"))  # every worker process warmed up
            scenarios: dict[str, LoadResult] = {
                "floor": load(**common, method="GET", path="/healthz", headers={}, clients=args.clients,
                              seconds=args.seconds),
                "one": load(**common, method="POST", path="/api/v1/runs", headers=auth, clients=1,
                            seconds=args.seconds, body=json_body(lambda n: {"job_id": job_id}, "one")),
                "many": load(**common, method="POST", path="/api/v1/runs", headers=auth, clients=args.clients,
                             seconds=args.seconds, body=one_run),
            }
            batch = json_body(lambda n: {"runs": [{"job_id": job_id, "idempotency_key": f"b{n}-{k}"}
                                                  for k in range(BATCH)]}, "batch")
            scenarios["batch"] = load(**common, method="POST", path="/api/v1/runs/batch", headers=auth, clients=2,
                                      seconds=args.seconds, body=batch)
            results = {name: r.summary() for name, r in scenarios.items()}
            time.sleep(1.0)
            results["recorded"], results["sent"] = runs_recorded(engine)
        finally:
            stop(api)
        results["request_run"] = request_runs(engine, env, redis_url, job_id, args.request_runs, log)
        engine.dispose()

    floor = results["floor"]["per_second"]
    for name, label, goal, check in (
        ("one", "POST /runs, 1 client", "-", None),
        ("many", f"POST /runs, {args.clients} clients", "≥ 1,000 runs/s, p99 ≤ 50 ms",
         lambda r: r["per_second"] >= 1000 and r["p99_ms"] <= 50),
    ):
        r = results[name]
        report.add(Figure(scenario=label, figure=r["per_second"], unit="runs/s", baseline=floor,
                          baseline_label="GET /healthz", goal=goal, met=None if check is None else check(r),
                          note=f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; statuses {r['statuses']}; client CPU "
                               f"{r['client_cpu_seconds']} s {r['sample_error']}".rstrip()))
    b = results["batch"]
    batch_rate = b["per_second"] * BATCH if b["statuses"].get(201) or b["statuses"].get(200) else 0.0
    report.add(Figure(scenario=f"POST /runs/batch ({BATCH:,} a request)", figure=batch_rate, unit="runs/s",
                      baseline=results["many"]["per_second"], baseline_label="POST /runs", goal="≥ 10,000 runs/s",
                      met=batch_rate >= 10_000,
                      note=f"{b['requests']} requests, p50 {b['p50_ms']} ms; statuses {b['statuses']} "
                           f"{b['sample_error'][:120]}".rstrip()))
    rr = results["request_run"]
    report.add(Figure(scenario="request_run messages (pool 2 x 8)", figure=rr["per_second"], unit="runs/s",
                      baseline=results["many"]["per_second"], baseline_label="POST /runs",
                      note=f"{rr['runs']:,} runs in {rr['seconds']:.1f} s"))
    report.details = {**results, "api_processes": processes, "api_workers": args.api_workers or "default",
                      "clients": args.clients,
                      "note": "the load generator runs on the same cores; its CPU is in client_cpu_seconds"}
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
