"""Benchmark: a dunning preview of N demo accounts on PostgreSQL, CREATED → PREVIEW, through the executor.

Run as a script (not part of ``make test``)::

    python tests/bench/bench_dunning.py --accounts 100000

It creates a scratch PostgreSQL database, seeds the demo ledger, and runs a preview run in-process:
the executor's steps are called directly, in the order a worker pool would receive them (``--threads``
evaluates chunks concurrently, like that many worker threads). The baseline, measured in the same
run on the same data, evaluates a sample of accounts row at a time (one query per account, one insert
per staged item) and is scaled up to all accounts. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchkit import QueueDispatcher, scratch_database
from sqlalchemy import Engine, text

from scheduler.clock import SystemClock
from scheduler.db import make_engine
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import load_registry
from scheduler.migrate import upgrade
from scheduler.models import JobRun, RunStatus
from scheduler.runs import RunCreate, create_manual_run, send_run
from scheduler.settings import Settings
from workers.billing import migrate_billing
from workers.billing.demo import seed_demo
from workers.dunning.properties import DunningProperties
from workers.runtime.env import WorkerEnv, build_env
from workers.runtime.executor import execute_step

AS_OF = date(2026, 6, 1)
JOB_PROPERTIES: dict[str, Any] = {"minimum_account_due": "10.00", "strategy": "oldest_open_invoice"}


def run_preview(env: WorkerEnv, dispatcher: QueueDispatcher, threads: int) -> tuple[float, int]:
    """Record a preview run and execute its steps until it stops; returns (seconds, run id)."""
    clock = env.clock
    with env.factory() as session:
        job = create_job(session=session, registry=env.registry, actor="bench", clock=clock,
                         job_in=JobCreate(name=f"bench {uuid.uuid4().hex[:6]}", job_type="dunning",
                                          properties=JOB_PROPERTIES))
        assert job.id is not None
        run, _ = create_manual_run(
            session=session, registry=env.registry, actor="bench", clock=clock,
            run_in=RunCreate(job_id=job.id, preview=True, run_properties={"as_of": AS_OF.isoformat()}),
        )
        assert run.id is not None
        run_id = run.id
    send_run(factory=env.factory, dispatcher=dispatcher, registry=env.registry, run_id=run_id, clock=clock)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        while dispatcher.steps:
            batch = list(dispatcher.steps)
            dispatcher.steps.clear()
            # Steps sent together (one evaluate per chunk) run concurrently, like a worker pool would.
            list(pool.map(lambda s: execute_step(env, s.run_id, s.phase, s.chunk_no), batch))
    elapsed = time.perf_counter() - started
    with env.factory() as session:
        finished = session.get(JobRun, run_id)
        assert finished is not None
        if finished.status != RunStatus.PREVIEW:
            raise SystemExit(f"run {run_id} ended {finished.status}: {finished.error}")
    return elapsed, run_id


def row_at_a_time(engine: Engine, sample: int, run_id: int) -> tuple[float, int, int]:
    """The baseline: per account, one query for its dues and one insert per staged item."""
    props = DunningProperties.model_validate(JOB_PROPERTIES)
    with engine.connect() as conn:
        in_scope = conn.execute(text("SELECT COUNT(*) FROM accounts WHERE status <> 'CLOSED'")).scalar_one()
        ids = conn.execute(
            text("SELECT id, account_number, dunning_tier FROM accounts WHERE status <> 'CLOSED' "
                 "ORDER BY id LIMIT :n"), {"n": sample}
        ).all()
    staged = 0
    started = time.perf_counter()
    with engine.begin() as conn:
        for account_id, number, tier in ids:
            oldest, due = conn.execute(
                text("SELECT MIN(due_on), COALESCE(SUM(balance), 0) FROM invoices WHERE account_id = :id "
                     "AND status = 'OPEN' AND balance > 0 AND NOT disputed AND due_on < :as_of"),
                {"id": account_id, "as_of": AS_OF},
            ).one()
            days = (AS_OF - oldest).days if oldest else 0
            target = props.target_tier(Decimal(due), days)
            if target > tier or (due == 0 and tier > 0):
                conn.execute(
                    text("INSERT INTO run_item (run_id, chunk_no, item_key, outcome, detail) "
                         "VALUES (:run_id, 0, :key, 'planned', CAST(:detail AS json))"),
                    {"run_id": run_id, "key": f"baseline-{number}", "detail": json.dumps(
                        {"account_id": account_id, "from_tier": tier, "to_tier": target, "days_past_due": days,
                         "amount_due": str(due)})},
                )
                staged += 1
        elapsed = time.perf_counter() - started
        conn.rollback()
    return elapsed, len(ids), int(in_scope) or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--postgres-url", default=os.environ.get("SCHEDULER_TEST_POSTGRES_URL",
                                                                  "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--chunk-size", type=int, default=Settings().chunk_size)
    parser.add_argument("--threads", type=int, default=1, help="chunks evaluated concurrently (default 1)")
    parser.add_argument("--sample", type=int, default=2000, help="accounts in the row-at-a-time baseline")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)

    with scratch_database(args.postgres_url, "bench_dunning", keep=args.keep) as url:
        engine = make_engine(url, pool_size=max(5, args.threads + 2))
        try:
            upgrade(engine)
            migrate_billing(engine)
            t0 = time.perf_counter()
            counts = seed_demo(engine, accounts=args.accounts, seed=7, as_of=AS_OF)
            seed_seconds = time.perf_counter() - t0
            settings = Settings(database_url=url, chunk_size=args.chunk_size, data_dir=Path(".scheduler"))
            dispatcher = QueueDispatcher()
            env = build_env(settings, dispatcher=dispatcher, registry=load_registry(settings), engine=engine,
                            billing_engine=engine, clock=SystemClock(), heartbeat=False)
            seconds, run_id = run_preview(env, dispatcher, args.threads)
            with env.factory() as session:
                run = session.get(JobRun, run_id)
                assert run is not None
                summary, chunks = run.summary, run.chunks_total
            base_seconds, base_accounts, in_scope = row_at_a_time(engine, args.sample, run_id)
            baseline = base_seconds * in_scope / max(1, base_accounts)
        finally:
            engine.dispose()

    result = {
        "benchmark": "dunning_preview",
        "database": "postgresql",
        "accounts": args.accounts,
        "accounts_evaluated": summary.get("accounts_evaluated"),
        "items_staged": summary.get("escalated", 0) + summary.get("cleared", 0),
        "chunks": chunks,
        "chunk_size": args.chunk_size,
        "threads": args.threads,
        "seed_seconds": round(seed_seconds, 2),
        "created_to_preview_seconds": round(seconds, 3),
        "baseline_row_at_a_time_seconds": round(baseline, 2),
        "baseline_sample_accounts": base_accounts,
        "speedup": round(baseline / seconds, 1) if seconds else None,
        "target_seconds": 5.0,
        "meets_target": seconds < 5.0,
        "ledger": counts,
    }
    rows = [
        ("set-based executor (CREATED → PREVIEW)", f"{seconds:.2f} s", f"{chunks} chunks, {args.threads} thread(s)"),
        ("row at a time (scaled from sample)", f"{baseline:.2f} s", f"{base_accounts} accounts measured"),
        ("speedup", f"{result['speedup']}x", f"target < 5 s: {'met' if result['meets_target'] else 'MISSED'}"),
    ]
    print(f"\nDunning preview of {args.accounts:,} demo accounts on PostgreSQL "
          f"(seeded in {seed_seconds:.1f} s: {counts['invoices']:,} invoices)")
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        print(f"  {label:<{width}}  {value:>10}  {note}")
    print(json.dumps(result))
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
