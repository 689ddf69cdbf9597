"""ERP transfer to a local HTTP sink: records delivered per second, against one request per record.

    python tests/bench/bench_erp.py --records 1000000

A scratch PostgreSQL database with ``--records`` invoices, and a real HTTP server process (``bench_erp_sink.py``,
HTTP/1.1 keep-alive) as the ERP. One manual ERP transfer run of the invoices dataset (JSON batches of
``--batch-size``) goes through the executor (plan, evaluate, apply) with ``--threads`` threads, exactly as a
worker runs it. Baselines of the same run: one POST per record on a new connection (a sample, scaled), and the
transport floor: the same records, already read, posted in the same batches over one kept-alive connection.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

from bench_dunning import drain
from benchkit import (
    BENCH_DIR,
    BackendCpu,
    Figure,
    QueueDispatcher,
    Report,
    free_port,
    scratch_database,
    server_url,
    versions,
)
from sqlalchemy import Engine, text

from cli.migrations import migrate_billing_database
from scheduler.clock import SystemClock
from scheduler.db import make_engine
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import load_registry
from scheduler.migrate import upgrade
from scheduler.models import JobRun
from scheduler.runs import RunCreate, create_manual_run, send_run
from scheduler.settings import Settings
from workers.runtime.env import build_env

DAY0 = date(2025, 1, 1)
ACCOUNTS = 10_000


def seed(engine: Engine, records: int) -> None:
    """``ACCOUNTS`` accounts and ``records`` invoices issued over a year, set-based."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO accounts (account_number, name) "
            "SELECT 'ACC' || lpad(i::text, 8, '0'), 'Customer ' || i FROM generate_series(1, :n) i"), {"n": ACCOUNTS})
        conn.execute(text(
            "INSERT INTO invoices (account_id, number, issued_on, due_on, amount, balance, status, kind) "
            "SELECT 1 + i % :accounts, 'N' || i, CAST(:day0 AS date) + i % 365, CAST(:day0 AS date) + i % 365 + 30, "
            "  a, a, 'OPEN', 'INVOICE' "
            "FROM (SELECT i, round((5 + (i::bigint * 7919) % 50000 / 100.0)::numeric, 2) AS a "
            "      FROM generate_series(1, :n) i) g"), {"accounts": ACCOUNTS, "day0": DAY0, "n": records})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def sink_count(url: str) -> int:
    with urllib.request.urlopen(url.rsplit("/", 2)[0] + "/count") as answer:
        return int(json.load(answer)["records"])


def one_per_record(engine: Engine, url: str, sample: int) -> float:
    """The baseline: each record read on its own and POSTed on a new connection; records/s."""
    with engine.connect() as conn:
        ids = list(conn.execute(text("SELECT id FROM invoices ORDER BY id LIMIT :n"), {"n": sample}).scalars())
    started = time.perf_counter()
    with engine.connect() as conn:
        for record_id in ids:
            row = conn.execute(text(
                "SELECT r.id, r.number, a.account_number, r.amount FROM invoices r JOIN accounts a "
                "ON a.id = r.account_id WHERE r.id = :id"), {"id": record_id}).one()
            body = json.dumps({"records": [{"id": str(row.id), "number": row.number,
                                            "account_number": row.account_number, "amount": str(row.amount)}]})
            request = urllib.request.Request(url, data=body.encode(), method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "Idempotency-Key": f"one-{record_id}"})
            with urllib.request.urlopen(request) as answer:
                answer.read()
    return sample / (time.perf_counter() - started)


def transport_floor(engine: Engine, port: int, batch_size: int) -> float:
    """The floor: every record already read, JSON batches over one kept-alive connection; records/s."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT r.id, r.number, a.account_number, r.kind, r.status, r.issued_on, r.due_on, r.amount, r.balance "
            "FROM invoices r JOIN accounts a ON a.id = r.account_id ORDER BY r.id")).all()
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port)
    for n, start in enumerate(range(0, len(rows), batch_size)):
        records = [{"id": str(r.id), "number": r.number, "account_number": r.account_number, "kind": r.kind,
                    "status": r.status, "issued_on": str(r.issued_on), "due_on": str(r.due_on),
                    "amount": str(r.amount), "balance": str(r.balance)} for r in rows[start:start + batch_size]]
        connection.request("POST", "/erp/batches", body=json.dumps({"records": records}),
                           headers={"Content-Type": "application/json", "Idempotency-Key": f"floor-{n}"})
        connection.getresponse().read()
    connection.close()
    return len(rows) / (time.perf_counter() - started)


def _per_record(client_cpu: float, pg_cpu: float | None, records: int) -> str:
    """CPU per record, this process + PostgreSQL: holds still on a shared machine where records/s does not."""
    pg = f"{pg_cpu / records * 1e6:.0f}" if pg_cpu is not None else "?"
    return f"({client_cpu / records * 1e6:.0f} + {pg} µs a record)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sample", type=int, default=1_000, help="records in the one-per-record baseline")
    parser.add_argument("--smoke", action="store_true", help="small size for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.records, args.sample = 30_000, 200
    report = Report(benchmark="erp_transfer", size=f"{args.records:,} records, batches of {args.batch_size:,}")
    port = free_port()
    sink = subprocess.Popen([sys.executable, str(BENCH_DIR / "bench_erp_sink.py"), str(port)])
    url = f"http://127.0.0.1:{port}/erp/batches"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                sink_count(url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with scratch_database(server_url(), "bench_erp") as db_url:
            engine = make_engine(db_url, pool_size=args.threads + 4)
            upgrade(engine)
            migrate_billing_database(engine, load_registry(Settings()).all())
            report.versions = versions(engine)
            seed(engine, args.records)
            settings = Settings(database_url=db_url, data_dir=Path(".scheduler"),
                                erp_allowed_hosts=[f"127.0.0.1:{port}"])
            dispatcher = QueueDispatcher()
            env = build_env(settings, dispatcher=dispatcher, registry=load_registry(settings), engine=engine,
                            billing_engine=engine, clock=SystemClock(), heartbeat=False)
            with env.factory() as session:
                job = create_job(session=session, registry=env.registry, actor="bench", clock=env.clock,
                                 job_in=JobCreate(name="ERP bench", job_type="erp_transfer", properties={
                                     "dataset": "invoices", "target": {"kind": "http", "url": url},
                                     "batch_size": args.batch_size}))
                run, _ = create_manual_run(session=session, registry=env.registry, actor="bench", clock=env.clock,
                                           run_in=RunCreate(job_id=job.id or 0, run_properties={
                                               "date_from": DAY0.isoformat(),
                                               "date_to": (DAY0 + timedelta(days=400)).isoformat()}))
                run_id = run.id or 0
            before_sink = sink_count(url)
            cpu = BackendCpu(engine)
            pg0, cpu0 = cpu.sample(), time.process_time()
            send_run(factory=env.factory, dispatcher=dispatcher, registry=env.registry, run_id=run_id,
                     clock=env.clock)
            seconds = drain(env, dispatcher, args.threads)
            client_cpu, pg_cpu = time.process_time() - cpu0, cpu.since(pg0)
            delivered = sink_count(url) - before_sink
            with env.factory() as session:
                done = session.get(JobRun, run_id)
                assert done is not None
                status, summary = done.status, done.summary
            floor = transport_floor(engine, port, args.batch_size)
            baseline = one_per_record(engine, url, args.sample)
            engine.dispose()
    finally:
        sink.terminate()
        sink.wait(10)
    rate = args.records / seconds
    report.add(Figure(scenario="invoices to a local HTTP sink", figure=rate, unit="records/s", baseline=baseline,
                      baseline_label="one POST per record", goal="≥ 20,000 records/s",
                      met=rate >= 20_000 and delivered == args.records and status == "COMPLETED",
                      note=f"run {status}, {delivered:,} records taken by the sink in {seconds:.1f} s; transport "
                           f"floor (records already read, one kept-alive connection) {floor:,.0f}/s = "
                           f"{rate / floor:.2f}x of it; CPU: this process {client_cpu:.1f} s, PostgreSQL "
                           f"{pg_cpu or 0:.1f} s {_per_record(client_cpu, pg_cpu, args.records)}"))
    report.details = {"records": args.records, "batch_size": args.batch_size, "threads": args.threads,
                      "seconds": seconds, "client_cpu_seconds": client_cpu, "postgres_cpu_seconds": pg_cpu,
                      "status": status, "delivered": delivered,
                      "transport_floor": floor, "one_per_record": baseline, "summary": summary}
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
