"""Usage mediation throughput on PostgreSQL, next to a row-at-a-time baseline measured in the same run.

    python tests/bench/bench_mediation.py --records 1000000
    (database: --database-url, else SCHEDULER_BENCH_POSTGRES_URL or SCHEDULER_TEST_POSTGRES_URL)

A fresh database is created and dropped. The file (CSV or JSON lines) has ~0.1% bad lines and ~0.1%
duplicate event ids. The mediation run goes through the executor (plan, evaluate, apply) exactly as a
worker runs it; records/s = records / (evaluate + apply). The baseline posts a sample of records one
statement per record (the account looked up in a Python dict, so it is generous to the baseline) and
is scaled to the full count. The raw SQL floor is what storing the mediated events costs PostgreSQL
at the least: one plain ``INSERT … SELECT`` of them into a copy of ``usage_events`` with its primary
key (no reading, checking, deduplicating, rating or daily totals). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchkit import BackendCpu, Figure, QueueDispatcher, Report, scratch_database, server_url, versions
from sqlalchemy import Engine, text

from cli.migrations import migrate_billing_database
from scheduler.clock import SystemClock
from scheduler.db import make_engine
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import JobTypeRegistry, load_registry
from scheduler.migrate import upgrade
from scheduler.models import JobRun
from scheduler.runs import RunCreate, create_manual_run, send_run
from scheduler.settings import Settings
from workers.mediation import JOB_TYPE
from workers.mediation.properties import FileFormat
from workers.mediation.reader import ReadStats, read_records
from workers.mediation.records import Normalizer, StagedRow
from workers.runtime.env import build_env
from workers.runtime.executor import execute_step

METERS = [
    {"meter": "data_gb", "unit": "GB", "price_per_unit": "0.10"},
    {"meter": "voice_min", "unit": "min", "price_per_unit": "0.015"},
    {"meter": "sms", "unit": "msg", "price_per_unit": "0.05"},
]
BAD_LINES = [
    "{id},{acct},data_gb,-1,{at}",
    "{id},{acct},data_gb,abc,{at}",
    "{id},{acct},data_gb,1,2026-05-01T10:00:00",
    "{id},{acct},unknown_meter,1,{at}",
    "{id},,data_gb,1,{at}",
]


def records(count: int, accounts: int, *, fmt: str, prefix: str, seed: int) -> Iterator[str]:
    """A day of usage lines (without the CSV header): ~0.1% bad, ~0.07% repeating an earlier event id."""
    rng = random.Random(seed)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    meters = [m["meter"] for m in METERS]
    recent: deque[str] = deque(maxlen=8)
    for n in range(count):
        # Random ids, as event ids usually are (UUIDs); now and then one repeats an id a few lines up.
        event_id = recent[0] if n % 1499 == 1498 else f"{prefix}{rng.getrandbits(128):032x}"
        recent.append(event_id)
        acct = f"BA-{rng.randrange(accounts):06d}"
        at = (start + timedelta(seconds=rng.randrange(86400))).strftime("%Y-%m-%dT%H:%M:%SZ")
        quantity = f"{rng.randrange(1, 100_000) / 1000:.3f}"
        meter = meters[n % 3]
        if fmt == "jsonl":
            if n % 997 == 996:
                yield f'{{"event_id": "{event_id}", "account_number": "{acct}", "meter": "{meter}", "quantity": -1, ' \
                      f'"occurred_at": "{at}"}}'
            else:
                yield f'{{"event_id": "{event_id}", "account_number": "{acct}", "meter": "{meter}", ' \
                      f'"quantity": {quantity}, "occurred_at": "{at}"}}'
        elif n % 997 == 996:
            yield BAD_LINES[(n // 997) % len(BAD_LINES)].format(id=event_id, acct=acct, at=at)
        else:
            yield f"{event_id},{acct},{meter},{quantity},{at}"


def write_file(path: Path, count: int, accounts: int, *, fmt: str, prefix: str, seed: int) -> int:
    with path.open("w", buffering=1 << 20) as out:
        if fmt == "csv":
            out.write("event_id,account_number,meter,quantity,occurred_at\n")
        for line in records(count, accounts, fmt=fmt, prefix=prefix, seed=seed):
            out.write(line)
            out.write("\n")
    return path.stat().st_size


def seed_accounts(engine: Engine, count: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO accounts (account_number, name, status) "
            "SELECT 'BA-' || lpad(CAST(i AS text), 6, '0'), 'Bench ' || CAST(i AS text), "
            "CASE WHEN i % 500 = 7 THEN 'SUSPENDED' ELSE 'ACTIVE' END FROM generate_series(0, :n - 1) AS i"
        ), {"n": count})
        conn.execute(text("ANALYZE accounts"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_mediation(engine: Engine, settings: Settings, fmt: str) -> dict[str, Any]:
    """One manual run through the executor, timing each phase (wall, this process's CPU, PostgreSQL's CPU)."""
    dispatcher = QueueDispatcher()
    clock = SystemClock()
    env = build_env(settings, dispatcher=dispatcher, registry=JobTypeRegistry([JOB_TYPE]), clock=clock,
                    engine=engine, billing_engine=engine, worker_id="bench", heartbeat=False)
    with env.factory() as session:
        job = create_job(session=session, registry=env.registry, actor="bench", clock=clock, job_in=JobCreate(
            name="Bench mediation", job_type="usage_mediation",
            properties={"source_dir": "usage/incoming", "pattern": f"*.{fmt}", "format": fmt, "meters": METERS}))
        run, _ = create_manual_run(session=session, registry=env.registry, actor="bench", clock=clock,
                                   run_in=RunCreate(job_id=job.id or 0))
        run_id = run.id or 0
    send_run(factory=env.factory, dispatcher=dispatcher, registry=env.registry, run_id=run_id, clock=clock)
    seconds = {"plan": 0.0, "evaluate": 0.0, "apply": 0.0}
    client_cpu = dict.fromkeys(seconds, 0.0)
    server_cpu: dict[str, float | None] = dict.fromkeys(seconds, 0.0)
    backends = BackendCpu(engine)
    while dispatcher.steps:
        step = dispatcher.steps.popleft()
        before = backends.sample()
        started, started_cpu = time.perf_counter(), time.process_time()
        execute_step(env, step.run_id, step.phase, step.chunk_no)
        seconds[step.phase] += time.perf_counter() - started
        client_cpu[step.phase] += time.process_time() - started_cpu
        used = backends.since(before)
        server = server_cpu[step.phase]
        server_cpu[step.phase] = None if used is None or server is None else server + used
    with env.factory() as session:
        done = session.get(JobRun, run_id)
        assert done is not None
        status, summary = done.status, done.summary
    return {"status": status, "summary": summary, "seconds": seconds, "client_cpu": client_cpu,
            "server_cpu": server_cpu}


def baseline(engine: Engine, path: Path, fmt: str) -> dict[str, Any]:
    """Row at a time: parse and check each record, then one INSERT … ON CONFLICT statement per record."""
    with engine.connect() as conn:
        account_ids = {r.account_number: (r.id, r.status) for r in conn.execute(
            text("SELECT id, account_number, status FROM accounts"))}
        file_id = conn.execute(text(
            "INSERT INTO usage_files (checksum, name, size_bytes, format, job_id, run_id, records, mediated, filtered, "
            "failed, amount, processed_at) VALUES ('baseline', 'baseline', 0, 'csv', 0, 0, 0, 0, 0, 0, 0, now()) "
            "RETURNING id")).scalar_one()
        conn.commit()
    prices = {m["meter"]: Decimal(m["price_per_unit"]) for m in METERS}
    normalizer = Normalizer(prices, exact=True)
    statement = text(
        "WITH ins AS (INSERT INTO usage_events (event_id, account_id, meter, quantity, amount, occurred_at, "
        "usage_day, file_id, line_no, run_id) VALUES (:event_id, :account_id, :meter, CAST(:quantity AS numeric), "
        "CAST(:amount AS numeric), CAST(:occurred_at AS timestamptz), CAST(:usage_day AS date), :file_id, :line_no, 0) "
        "ON CONFLICT (event_id) DO NOTHING RETURNING account_id, meter, usage_day, quantity, amount) "
        "INSERT INTO usage_daily (account_id, meter, usage_day, events, quantity, amount) "
        "SELECT account_id, meter, usage_day, 1, quantity, amount FROM ins "
        "ON CONFLICT (account_id, meter, usage_day) DO UPDATE SET events = usage_daily.events + 1, "
        "quantity = usage_daily.quantity + excluded.quantity, amount = usage_daily.amount + excluded.amount"
    )
    count = posted = 0
    started = time.perf_counter()
    with engine.begin() as conn, path.open("rb") as handle:

        def post(row: StagedRow) -> None:
            nonlocal count, posted
            count += 1
            line_no, event_id, account, meter, quantity, amount, occurred_at, day, reason, _ = row
            found = account_ids.get(account or "")
            if reason is not None or found is None or found[1] != "ACTIVE":
                return
            conn.execute(statement, {"event_id": event_id, "account_id": found[0], "meter": meter,
                                     "quantity": quantity, "amount": amount, "occurred_at": f"{occurred_at}+00",
                                     "usage_day": day, "file_id": file_id, "line_no": line_no})
            posted += 1

        read_records(handle, FileFormat(fmt), normalizer, ReadStats(), post)
    elapsed = time.perf_counter() - started
    return {"records": count, "posted": posted, "seconds": elapsed, "records_per_second": count / elapsed}


def sql_floor(engine: Engine) -> dict[str, Any]:
    """The raw SQL floor: the run's mediated events copied by one ``INSERT … SELECT`` into a copy of
    ``usage_events`` with its indexes, in the order they were posted (event id order, as apply posts them)."""
    cpu = BackendCpu(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE usage_floor (LIKE usage_events INCLUDING ALL)"))
    try:
        start, started = cpu.sample(), time.perf_counter()
        with engine.begin() as conn:
            rows = conn.execute(text("INSERT INTO usage_floor SELECT * FROM usage_events")).rowcount
        elapsed, used = time.perf_counter() - started, cpu.since(start)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS usage_floor"))
    return {"events": rows, "seconds": round(elapsed, 3), "postgres_cpu": round(used, 3) if used is not None else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--baseline-records", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--format", choices=["csv", "jsonl", "both"], default="both")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--smoke", action="store_true", help="small size for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.records, args.baseline_records, args.accounts = 50_000, 2_000, 2_000
    report = Report(benchmark="usage_mediation", size=f"{args.records:,} records")
    formats = ["csv", "jsonl"] if args.format == "both" else [args.format]
    for fmt in formats:
        with (scratch_database(server_url(args.database_url), "bench_mediation") as url,
              tempfile.TemporaryDirectory(prefix="bench-mediation-") as tmp):
            found = _bench(args, fmt, url, Path(tmp))
        report.versions = found.pop("versions")
        rate, base = found["records_per_second"], found["baseline"]["records_per_second"]
        rss = found["peak_rss_mb"]["after"]
        report.add(Figure(scenario=f"{fmt.upper()} end to end (evaluate + apply)", figure=rate, unit="records/s",
                          baseline=base, baseline_label="row at a time", goal="≥ 150,000 records/s, RSS ≤ 500 MB",
                          met=rate >= 150_000 and rss <= 500 and found["status"] in ("COMPLETED", "INCOMPLETE"),
                          note=f"evaluate {args.records / found['seconds']['evaluate']:,.0f}/s, apply "
                               f"{args.records / found['seconds']['apply']:,.0f}/s; peak RSS {rss} MB; "
                               f"{found['records_per_cpu_second'] or 0:,} records per CPU-second (client + "
                               f"PostgreSQL); {_floor_note(found)}; run {found['status']}"))
        report.details[fmt] = found
    report.emit()
    return 0


def _floor_note(found: dict[str, Any]) -> str:
    """The raw SQL floor against ours, in records per second and per PostgreSQL CPU-second."""
    floor, records = found["sql_floor"], found["records"]
    floor_rate = records / floor["seconds"]
    note = (f"raw SQL floor (the {floor['events']:,} events by one INSERT … SELECT) {floor_rate:,.0f} records/s = "
            f"{found['records_per_second'] / floor_rate:.2f}x of it")
    if floor["postgres_cpu"] and found["cpu_seconds"]["postgres"]:
        note += (f", PostgreSQL CPU {records / found['cpu_seconds']['postgres']:,.0f} records/s (floor "
                 f"{records / floor['postgres_cpu']:,.0f})")
    return note


def _bench(args: argparse.Namespace, fmt: str, url: str, tmp: Path) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    migrate_billing_database(engine, load_registry(Settings()).all())
    seed_accounts(engine, args.accounts)
    settings = Settings(data_dir=tmp / "data", database_url=url, files_root=tmp / "files")
    incoming = settings.resolved_files_root / "usage" / "incoming"
    incoming.mkdir(parents=True)
    size = write_file(incoming / f"usage.{fmt}", args.records, args.accounts, fmt=fmt, prefix="ev-", seed=1)
    sample = tmp / f"sample.{fmt}"
    write_file(sample, args.baseline_records, args.accounts, fmt=fmt, prefix="base-", seed=2)

    rss_before = peak_rss_mb()
    result = run_mediation(engine, settings, fmt)
    rss_after = peak_rss_mb()
    mediation_seconds = result["seconds"]["evaluate"] + result["seconds"]["apply"]
    rate = args.records / mediation_seconds
    floor = sql_floor(engine)
    base = baseline(engine, sample, fmt)
    found_versions = versions(engine)
    engine.dispose()
    summary = result["summary"]
    work = ("evaluate", "apply")
    client = sum(result["client_cpu"][p] for p in work)
    server = None if any(result["server_cpu"][p] is None for p in work) else sum(
        result["server_cpu"][p] or 0.0 for p in work)
    per_cpu_second = args.records / (client + server) if server is not None else None
    return {
        "format": fmt, "records": args.records, "file_bytes": size, "status": result["status"],
        "seconds": result["seconds"], "records_per_second": round(rate),
        "cpu_seconds": {"client": round(client, 2), "postgres": round(server, 2) if server is not None else None},
        "records_per_cpu_second": round(per_cpu_second) if per_cpu_second else None,
        "baseline": {k: round(v, 3) if isinstance(v, float) else v for k, v in base.items()},
        "speedup": round(rate / base["records_per_second"], 1), "sql_floor": floor,
        "summary": {k: summary.get(k) for k in ("records_read", "mediated", "filtered", "failed", "rated_amount")},
        "peak_rss_mb": {"before": round(rss_before), "after": round(rss_after)}, "versions": found_versions,
    }


if __name__ == "__main__":
    sys.exit(main())
