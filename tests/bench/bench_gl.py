"""GL collector benchmark on PostgreSQL: documents collected per second, against a row-at-a-time baseline.

Seeds ``--documents`` billing documents set-based (half invoices, a third payments, late fees and
write-offs) in a fresh database, then runs one GL collector run through the executor (plan, evaluate
and apply of every chunk, ``--workers`` threads sharing the steps as a worker pool would) and checks
the posted journal against totals computed straight from the documents. The baseline collects a
sample of the same documents one at a time (a query per document and per line) and rolls back.

    python tests/bench/bench_gl.py --documents 1000000

The database is ``SCHEDULER_BENCH_POSTGRES_URL`` or ``SCHEDULER_TEST_POSTGRES_URL`` (a server URL; a
scratch database is created there and dropped afterwards unless ``--keep``).
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from benchkit import BackendCpu, Figure, MemoryDispatcher, Report, scratch_database, server_url, versions
from sqlalchemy import Engine, event, text

from cli.migrations import migrate_billing_database
from scheduler.clock import SystemClock
from scheduler.db import make_engine
from scheduler.dispatch import RunStep
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import load_registry
from scheduler.migrate import upgrade
from scheduler.models import JobRun, RunStatus
from scheduler.runs import RunCreate, create_manual_run, send_run
from scheduler.settings import Settings
from workers.runtime.env import WorkerEnv, build_env
from workers.runtime.executor import execute_step

ACCOUNTS = 20_000
# Shares of the documents by kind: invoices, payments, late fees, write-offs.
MIX = {"invoices": 0.50, "payments": 0.35, "late_fees": 0.10, "write_offs": 0.05}


class StepQueue(MemoryDispatcher):
    """A dispatcher that hands run steps to in-process worker threads."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: queue.Queue[RunStep] = queue.Queue()

    def send_step(self, queue_name: str, step: RunStep) -> None:
        self.steps.put(step)


@dataclass
class Timings:
    by_phase: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, phase: str, seconds: float) -> None:
        with self.lock:
            self.by_phase[phase] = self.by_phase.get(phase, 0.0) + seconds


class StatementTimes:
    """Wall and PostgreSQL backend CPU time per SQL statement shape (``--trace``): where a run spends its
    time, and what it costs the database whatever else loads the machine (CPU from ``/proc``, local server)."""

    def __init__(self, engine: Engine) -> None:
        self.totals: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    @staticmethod
    def _backend_cpu(conn: Any, cursor: Any) -> float:
        if "backend_pid" not in conn.info:
            conn.info["backend_pid"] = cursor.connection.info.backend_pid
        try:
            with open(f"/proc/{conn.info['backend_pid']}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info.setdefault("started", []).append((time.perf_counter(), self._backend_cpu(conn, cursor)))

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        wall, cpu = conn.info["started"].pop()
        elapsed, used = time.perf_counter() - wall, self._backend_cpu(conn, cursor) - cpu
        shape = " ".join(statement.split())[:110]
        with self.lock:
            entry = self.totals.setdefault(shape, [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += elapsed
            entry[2] += used

    def top(self, n: int = 12) -> list[tuple[str, int, float, float]]:
        rows = sorted(((k, int(v[0]), v[1], v[2]) for k, v in self.totals.items()), key=lambda r: -r[3])
        return rows[:n]


def seed(engine: Engine, documents: int, now: datetime) -> dict[str, int]:
    """Accounts and ``documents`` documents, generated set-based in the database."""
    counts = {kind: int(documents * share) for kind, share in MIX.items()}
    counts["invoices"] += documents - sum(counts.values())
    day0 = (now - timedelta(days=400)).date()
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO accounts (account_number, name) "
            "SELECT 'ACC' || lpad(i::text, 8, '0'), 'Customer ' || i FROM generate_series(1, :n) i"
        ), {"n": ACCOUNTS})
        # Invoices and late fees interleave in id order, as they would in real life.
        conn.execute(text(
            "INSERT INTO invoices (account_id, number, issued_on, due_on, amount, balance, status, kind) "
            "SELECT 1 + i % :accounts, 'N' || i, CAST(:day0 AS date) + i % 365, CAST(:day0 AS date) + i % 365 + 30, "
            "  a, a, CASE WHEN i % 3 = 0 THEN 'PAID' ELSE 'OPEN' END, "
            "  CASE WHEN i % (:inv + :fees) < :fees THEN 'LATE_FEE' ELSE 'INVOICE' END "
            "FROM (SELECT i, round((5 + (i::bigint * 7919) % 50000 / 100.0)::numeric, 2) AS a "
            "      FROM generate_series(1, :inv + :fees) i) g"
        ), {"accounts": ACCOUNTS, "day0": day0, "inv": counts["invoices"], "fees": counts["late_fees"]})
        conn.execute(text(
            "INSERT INTO payments (account_id, amount, received_at) "
            "SELECT 1 + i % :accounts, round((1 + (i::bigint * 104729) % 30000 / 100.0)::numeric, 2), "
            "  CAST(:t0 AS timestamptz) + (i % 34000000) * interval '1 second' "
            "FROM generate_series(1, :n) i"
        ), {"accounts": ACCOUNTS, "t0": now - timedelta(days=400), "n": counts["payments"]})
        conn.execute(text(
            "INSERT INTO dunning_actions (run_id, account_id, from_tier, to_tier, actions, write_off_amount, "
            "  applied_at) "
            "SELECT 1000000 + i / :accounts, 1 + i % :accounts, 3, 4, '[\"write_off\"]', "
            "  round((10 + (i::bigint * 31) % 90000 / 100.0)::numeric, 2), "
            "  CAST(:t0 AS timestamptz) + i * interval '1 minute' "
            "FROM generate_series(1, :n) i"
        ), {"accounts": ACCOUNTS, "t0": now - timedelta(days=300), "n": counts["write_offs"]})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
        conn.execute(text("CHECKPOINT"))
    return counts


def expected_totals(engine: Engine) -> dict[str, Decimal]:
    """Per GL account under the default mapping, computed from the documents themselves."""
    with engine.connect() as conn:
        inv = conn.execute(text("SELECT kind, SUM(amount) FROM invoices GROUP BY kind")).all()
        pay = conn.execute(text("SELECT SUM(amount) FROM payments")).scalar_one()
        wo = conn.execute(text("SELECT SUM(write_off_amount) FROM dunning_actions")).scalar_one()
    by_kind = {k: Decimal(v) for k, v in inv}
    invoices, fees = by_kind.get("INVOICE", Decimal(0)), by_kind.get("LATE_FEE", Decimal(0))
    return {
        "1000 debit": Decimal(pay), "1200 debit": invoices + fees, "1200 credit": Decimal(pay) + Decimal(wo),
        "4000 credit": invoices, "4100 credit": fees, "6100 debit": Decimal(wo),
    }


def posted_totals(engine: Engine) -> tuple[int, dict[str, Decimal]]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT gl_account, COUNT(*), SUM(debit), SUM(credit) FROM gl_entries GROUP BY gl_account")).all()
    lines = sum(r[1] for r in rows)
    totals: dict[str, Decimal] = {}
    for account, _, debit, credit in rows:
        if debit:
            totals[f"{account} debit"] = Decimal(debit)
        if credit:
            totals[f"{account} credit"] = Decimal(credit)
    return lines, totals


def baseline(engine: Engine, sample: int, now: datetime) -> float:
    """Row at a time: per document a read, an existence check and an insert per line; rolled back."""
    per_kind = {
        "INVOICE": ("SELECT id, account_id, amount, issued_on FROM invoices WHERE id = :id AND kind = 'INVOICE'",
                    "1200", "4000"),
        "PAYMENT": ("SELECT id, account_id, amount, CAST(received_at AT TIME ZONE 'UTC' AS date) FROM payments "
                    "WHERE id = :id", "1000", "1200"),
    }
    with engine.connect() as conn:
        ids = {
            "INVOICE": list(conn.execute(text(
                "SELECT id FROM invoices WHERE kind = 'INVOICE' ORDER BY id LIMIT :n"), {"n": sample // 2}).scalars()),
            "PAYMENT": list(conn.execute(text(
                "SELECT id FROM payments ORDER BY id LIMIT :n"), {"n": sample - sample // 2}).scalars()),
        }
    insert = text(
        "INSERT INTO gl_entries (run_id, source_type, source_id, line_no, account_id, gl_account, debit, credit, "
        "entry_date, posted_at) VALUES (0, :st, :sid, :line, :acct, :gl, :debit, :credit, :day, :now)"
    )
    exists = text("SELECT 1 FROM gl_entries WHERE source_type = :st AND source_id = :sid LIMIT 1")
    started = time.perf_counter()
    done = 0
    with engine.connect() as conn:
        trans = conn.begin()
        for source_type, (select_doc, debit_gl, credit_gl) in per_kind.items():
            for doc_id in ids[source_type]:
                doc = conn.execute(text(select_doc), {"id": doc_id}).first()
                if doc is None or conn.execute(exists, {"st": source_type, "sid": doc_id}).first():
                    continue
                amount = Decimal(doc[2])
                common = {"st": source_type, "sid": doc_id, "acct": doc[1], "day": doc[3], "now": now}
                conn.execute(insert, {**common, "line": 1, "gl": debit_gl, "debit": amount, "credit": 0})
                conn.execute(insert, {**common, "line": 2, "gl": credit_gl, "debit": 0, "credit": amount})
                done += 1
        elapsed = time.perf_counter() - started
        trans.rollback()
    return done / elapsed


def sql_floor(engine: Engine, sample: int, now: datetime) -> tuple[int, float, float | None]:
    """The raw SQL floor of posting: ``sample`` documents (invoices, then payments) written as two lines each
    by one plain ``INSERT … SELECT`` per document table into a copy of ``gl_entries`` with its indexes (no
    uncollected check, no totals, no chunks, no run). Returns lines, seconds and PostgreSQL CPU seconds."""
    lines = "(VALUES (1, '1200', 1), (2, '4000', 2)) l(line_no, gl_account, side)"
    insert = (
        "INSERT INTO gl_floor (run_id, source_type, source_id, line_no, account_id, gl_account, debit, credit, "
        "entry_date, posted_at) SELECT 0, :st, d.id, l.line_no, d.account_id, l.gl_account, "
        "CASE l.side WHEN 1 THEN d.amount ELSE 0 END, CASE l.side WHEN 2 THEN d.amount ELSE 0 END, d.day, :now "
        "FROM ({docs}) d CROSS JOIN {lines} ORDER BY d.id, l.line_no"
    )
    documents = {
        "INVOICE": "SELECT id, account_id, amount, issued_on AS day FROM invoices WHERE kind = 'INVOICE' "
                   "ORDER BY id LIMIT :n",
        "PAYMENT": "SELECT id, account_id, amount, CAST(received_at AT TIME ZONE 'UTC' AS date) AS day FROM payments "
                   "ORDER BY id LIMIT :n",
    }
    cpu = BackendCpu(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE gl_floor (LIKE gl_entries INCLUDING ALL)"))
    try:
        start, started, written = cpu.sample(), time.perf_counter(), 0
        for source_type, docs in documents.items():
            with engine.begin() as conn:
                n = sample // 2 if source_type == "INVOICE" else sample - sample // 2
                written += conn.execute(text(insert.format(docs=docs, lines=lines)),
                                        {"st": source_type, "n": n, "now": now}).rowcount
        elapsed, used = time.perf_counter() - started, cpu.since(start)
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("DROP TABLE IF EXISTS gl_floor"))
            conn.execute(text("CHECKPOINT"))
    return written, elapsed, used


def run_collector(env: WorkerEnv, dispatcher: StepQueue, run_id: int, workers: int, timings: Timings) -> float:
    """Drain the run's steps with ``workers`` threads; returns the wall time until the run is final."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        while not stop.is_set():
            try:
                step = dispatcher.steps.get(timeout=0.05)
            except queue.Empty:
                continue
            began = time.perf_counter()
            try:
                execute_step(env, step.run_id, step.phase, step.chunk_no)
            except BaseException as exc:
                errors.append(exc)
            finally:
                timings.add(step.phase, time.perf_counter() - began)
                dispatcher.steps.task_done()

    started = time.perf_counter()
    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    final = {RunStatus.COMPLETED, RunStatus.INCOMPLETE, RunStatus.FAILED}
    while True:
        dispatcher.steps.join()
        with env.factory() as session:
            run = session.get(JobRun, run_id)
            assert run is not None
            if run.status in final:
                break
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop.set()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="worker threads sharing the run's steps")
    parser.add_argument("--baseline-sample", type=int, default=5_000)
    parser.add_argument("--floor-sample", type=int, default=200_000, help="documents the raw SQL floor writes")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--trace", action="store_true", help="print the statements the run spent most time in")
    parser.add_argument("--smoke", action="store_true", help="small size for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.documents, args.chunk_size, args.baseline_sample, args.floor_sample = 50_000, 10_000, 1_000, 50_000
    with scratch_database(server_url(), "bench_gl", keep=args.keep) as url:
        try:
            return bench(url, args)
        finally:
            if args.keep:
                print(f"kept {url}", file=sys.stderr)


def bench(url: str, args: argparse.Namespace) -> int:
    engine = make_engine(url, pool_size=args.workers + 4)
    upgrade(engine)
    migrate_billing_database(engine, load_registry(Settings()).all())
    clock = SystemClock()
    now = clock.now()
    t0 = time.perf_counter()
    counts = seed(engine, args.documents, now)
    seeded = time.perf_counter() - t0
    expected = expected_totals(engine)

    baseline_rate = baseline(engine, args.baseline_sample, now)
    floor_lines, floor_seconds, floor_cpu = sql_floor(engine, min(args.floor_sample, args.documents), now)

    settings = Settings(database_url=url, chunk_size=args.chunk_size)
    dispatcher = StepQueue()
    env = build_env(settings, dispatcher=dispatcher, registry=load_registry(settings), clock=clock, engine=engine,
                    billing_engine=engine, worker_id="bench", heartbeat=False)
    with env.factory() as session:
        job = create_job(session=session, registry=env.registry, actor="bench", clock=clock,
                         job_in=JobCreate(name="GL bench", job_type="gl_collector", properties={}))
        job_id = job.id or 0

    def start_run() -> int:
        with env.factory() as session:
            run, _ = create_manual_run(session=session, registry=env.registry, actor="bench", clock=clock,
                                       run_in=RunCreate(job_id=job_id))
            new_id = run.id or 0
        send_run(factory=env.factory, dispatcher=dispatcher, registry=env.registry, run_id=new_id, clock=clock)
        return new_id

    run_id = start_run()
    traced = StatementTimes(engine) if args.trace else None
    timings = Timings()
    cpu = BackendCpu(engine)
    cpu_start = cpu.sample()
    elapsed = run_collector(env, dispatcher, run_id, args.workers, timings)
    cpu_seconds = cpu.since(cpu_start)
    # The next run finds nothing new: what planning costs once the history is collected.
    again = run_collector(env, dispatcher, start_run(), args.workers, Timings())

    with env.factory() as session:
        done = session.get(JobRun, run_id)
        assert done is not None
    lines, totals = posted_totals(engine)
    checks = {
        "status": done.status,
        "lines_posted": lines,
        "lines_expected": 2 * args.documents,
        "totals_match": totals == expected,
        "balanced": sum(v for k, v in totals.items() if k.endswith("debit"))
        == sum(v for k, v in totals.items() if k.endswith("credit")),
    }
    rate = args.documents / elapsed
    floor_rate = floor_lines / floor_seconds
    per_cpu = lines / cpu_seconds if cpu_seconds else None
    floor_per_cpu = floor_lines / floor_cpu if floor_cpu else None
    result = {
        "benchmark": "gl_collector",
        "documents": args.documents,
        "documents_by_kind": counts,
        "chunk_size": args.chunk_size,
        "chunks": done.chunks_total,
        "workers": args.workers,
        "seed_seconds": round(seeded, 2),
        "run_seconds": round(elapsed, 2),
        "step_seconds": {k: round(v, 2) for k, v in timings.by_phase.items()},
        "docs_per_second": round(rate),
        "next_run_seconds": round(again, 2),
        "postgres_cpu_seconds": round(cpu_seconds, 2) if cpu_seconds is not None else None,
        "docs_per_postgres_cpu_second": round(args.documents / cpu_seconds) if cpu_seconds else None,
        "lines_per_postgres_cpu_second": round(per_cpu) if per_cpu else None,
        "floor_lines": floor_lines,
        "floor_seconds": round(floor_seconds, 2),
        "floor_lines_per_second": round(floor_rate),
        "floor_lines_per_postgres_cpu_second": round(floor_per_cpu) if floor_per_cpu else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "baseline_sample": args.baseline_sample,
        "baseline_docs_per_second": round(baseline_rate),
        "speedup": round(rate / baseline_rate, 1) if baseline_rate else None,
        "target_docs_per_second": 50_000,
        "meets_target": rate >= 50_000,
        "checks": checks,
        "summary": {k: done.summary.get(k) for k in ("documents", "lines", "debit_total", "credit_total", "balanced")},
    }
    print(f"{'method':<34} {'documents':>10} {'seconds':>9} {'docs/s':>10}")
    print(f"{'row at a time (baseline, sample)':<34} {args.baseline_sample:>10} "
          f"{args.baseline_sample / baseline_rate:>9.2f} {baseline_rate:>10.0f}")
    print(f"{'raw SQL floor (INSERT … SELECT)':<34} {floor_lines // 2:>10} {floor_seconds:>9.2f} "
          f"{floor_rate / 2:>10.0f}")
    print(f"{'gl_collector run (set-based)':<34} {args.documents:>10} {elapsed:>9.2f} {rate:>10.0f}")
    print(f"{'next run (nothing new)':<34} {0:>10} {again:>9.2f} {'':>10}")
    print(f"speed-up {result['speedup']}x; target 50,000 docs/s: {'met' if result['meets_target'] else 'NOT met'}")
    if cpu_seconds:
        print(f"PostgreSQL CPU {cpu_seconds:.2f}s ({args.documents / cpu_seconds:.0f} docs, {per_cpu:.0f} lines per "
              f"CPU-second; raw SQL floor {floor_per_cpu or 0:.0f} lines per CPU-second); "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if traced is not None:
        print(f"{'wall':>8} {'db cpu':>8} {'calls':>6}  statement (by database CPU)", file=sys.stderr)
        for shape, calls, seconds, used in traced.top():
            print(f"{seconds:7.2f}s {used:7.2f}s {calls:6d}x  {shape}", file=sys.stderr)
    ok = done.status == RunStatus.COMPLETED and checks["totals_match"] and lines == 2 * args.documents
    report = Report(benchmark="gl_collector", size=f"{args.documents:,} documents, {args.workers} threads",
                    versions=versions(engine), details=result)
    report.add(Figure(scenario="journal lines collected", figure=lines / elapsed, unit="lines/s",
                      baseline=2 * baseline_rate, baseline_label="row at a time", goal="≥ 400,000 lines/s",
                      met=ok and lines / elapsed >= 400_000,
                      note=f"{args.documents:,} documents in {elapsed:.2f} s ({rate:,.0f}/s), {lines:,} lines, "
                           f"{'balanced' if checks['balanced'] else 'NOT balanced'}, totals "
                           f"{'match' if checks['totals_match'] else 'DO NOT match'}; next run (nothing new) "
                           f"{again:.2f} s; raw SQL floor {floor_rate:,.0f} lines/s on {floor_lines:,} lines "
                           f"(one plain INSERT … SELECT per table) = {lines / elapsed / floor_rate:.2f}x of it"
                           + (f"; PostgreSQL CPU {per_cpu:,.0f} lines/s (floor {floor_per_cpu:,.0f})"
                              if per_cpu and floor_per_cpu else "")))
    report.emit()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
