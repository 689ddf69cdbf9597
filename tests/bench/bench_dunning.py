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
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchkit import BackendCpu, Figure, QueueDispatcher, Report, scratch_database, server_url, versions
from sqlalchemy import Engine, text

from cli.migrations import migrate_billing_database
from scheduler.clock import SystemClock
from scheduler.db import make_engine
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import load_registry
from scheduler.migrate import upgrade
from scheduler.models import JobRun, RunStatus
from scheduler.runs import RunCreate, act_on_run, create_manual_run, send_apply, send_run
from scheduler.settings import Settings
from workers.billing.demo import seed_demo
from workers.dunning.properties import DunningProperties
from workers.runtime.env import WorkerEnv, build_env
from workers.runtime.executor import execute_step

AS_OF = date(2026, 6, 1)
JOB_PROPERTIES: dict[str, Any] = {"minimum_account_due": "10.00", "strategy": "oldest_open_invoice"}


def drain(env: WorkerEnv, dispatcher: QueueDispatcher, threads: int) -> float:
    """Execute the sent steps until none is left, those sent together concurrently; returns the seconds."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        while dispatcher.steps:
            batch = list(dispatcher.steps)
            dispatcher.steps.clear()
            # Steps sent together (one per chunk) run concurrently, like a worker pool would.
            list(pool.map(lambda s: execute_step(env, s.run_id, s.phase, s.chunk_no), batch))
    return time.perf_counter() - started


def run_preview(env: WorkerEnv, dispatcher: QueueDispatcher, threads: int) -> tuple[float, float, int]:
    """Record a preview run, evaluate it (CREATED → PREVIEW), submit it and apply it (→ COMPLETED).

    Returns (evaluation seconds, apply seconds, run id).
    """
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
    evaluation = drain(env, dispatcher, threads)
    _expect(env, run_id, RunStatus.PREVIEW)
    with env.factory() as session:
        act_on_run(session=session, run_id=run_id, action="submit", actor="bench", clock=clock)
    send_apply(factory=env.factory, dispatcher=dispatcher, registry=env.registry, run_id=run_id)
    applying = drain(env, dispatcher, threads)
    _expect(env, run_id, RunStatus.COMPLETED)
    return evaluation, applying, run_id


def _expect(env: WorkerEnv, run_id: int, status: RunStatus) -> None:
    with env.factory() as session:
        run = session.get(JobRun, run_id)
        assert run is not None
        if run.status != status:
            raise SystemExit(f"run {run_id} is {run.status}, not {status}: {run.error}")


def sql_floor(engine: Engine) -> float:
    """The raw SQL floor of evaluation: the job type's own staging query over every account as one statement,
    its rows written to a temporary table (no executor, no chunks, no run_item indexes); seconds."""
    from scheduler.jobkit.sql import SqlDialect
    from workers.dunning.evaluate import Scope, _staging_select, typed

    select_sql, params = _staging_select(SqlDialect.of(engine), DunningProperties.model_validate(JOB_PROPERTIES),
                                         Scope(condition="a.status <> 'CLOSED'"))
    with engine.connect() as conn:
        first, last = conn.execute(text("SELECT MIN(id), MAX(id) FROM accounts")).one()
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(typed(text(f"CREATE TEMPORARY TABLE floor_items ON COMMIT DROP AS {select_sql}")),
                     {**params, "as_of": AS_OF, "first_id": first, "last_id": last})
    return time.perf_counter() - started


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
    parser.add_argument("--chunk-size", type=int, default=Settings().chunk_size)
    parser.add_argument("--threads", type=int, default=2, help="chunks executed concurrently (default 2)")
    parser.add_argument("--sample", type=int, default=2000, help="accounts in the row-at-a-time baseline")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--smoke", action="store_true", help="small size for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.accounts, args.sample, args.chunk_size = 20_000, 500, 5_000
    report = Report(benchmark="dunning", size=f"{args.accounts:,} accounts, {args.threads} threads")

    with scratch_database(server_url(), "bench_dunning", keep=args.keep) as url:
        engine = make_engine(url, pool_size=max(5, args.threads + 2))
        try:
            upgrade(engine)
            migrate_billing_database(engine, load_registry(Settings()).all())
            report.versions = versions(engine)
            t0 = time.perf_counter()
            counts = seed_demo(engine, accounts=args.accounts, seed=7, as_of=AS_OF)
            seed_seconds = time.perf_counter() - t0
            settings = Settings(database_url=url, chunk_size=args.chunk_size, data_dir=Path(".scheduler"))
            dispatcher = QueueDispatcher()
            env = build_env(settings, dispatcher=dispatcher, registry=load_registry(settings), engine=engine,
                            billing_engine=engine, clock=SystemClock(), heartbeat=False)
            # The floor first, on the data the run then evaluates (after the apply it would stage far fewer rows).
            floor = sql_floor(engine)
            cpu = BackendCpu(engine)
            before = cpu.sample()
            evaluation, applying, run_id = run_preview(env, dispatcher, args.threads)
            pg_cpu = cpu.since(before)
            with env.factory() as session:
                run = session.get(JobRun, run_id)
                assert run is not None
                summary, chunks = run.summary, run.chunks_total
            base_seconds, base_accounts, in_scope = row_at_a_time(engine, args.sample, run_id)
            baseline = base_seconds * in_scope / max(1, base_accounts)
        finally:
            engine.dispose()

    evaluated = int(summary.get("accounts_evaluated") or in_scope)
    report.add(Figure(scenario="evaluation (CREATED → PREVIEW)", figure=evaluated / evaluation, unit="accounts/s",
                      baseline=evaluated / baseline, baseline_label="row at a time", goal="≥ 150,000 accounts/s",
                      met=evaluated / evaluation >= 150_000,
                      note=f"{evaluation:.2f} s for {evaluated:,} accounts in {chunks} chunks; raw SQL floor "
                           f"{evaluated / floor:,.0f} accounts/s ({floor:.2f} s, one statement) = "
                           f"{floor / evaluation:.2f}x of it; row at a time timed on {base_accounts:,} accounts"))
    report.add(Figure(scenario="apply (SUBMITTED → COMPLETED)", figure=evaluated / applying, unit="accounts/s",
                      baseline=evaluated / evaluation, baseline_label="evaluation", goal="≥ 150,000 accounts/s",
                      met=evaluated / applying >= 150_000,
                      note=f"{applying:.2f} s; PostgreSQL CPU for both {pg_cpu or 0:.1f} s"))
    report.details = {"accounts": args.accounts, "accounts_evaluated": evaluated, "chunks": chunks,
                      "chunk_size": args.chunk_size, "threads": args.threads, "seed_seconds": round(seed_seconds, 1),
                      "evaluation_seconds": round(evaluation, 3), "apply_seconds": round(applying, 3),
                      "sql_floor_seconds": round(floor, 3), "row_at_a_time_seconds_scaled": round(baseline, 1),
                      "postgres_cpu_seconds": pg_cpu, "ledger": counts, "summary": summary}
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
