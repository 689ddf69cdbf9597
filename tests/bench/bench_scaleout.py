"""Scale-out: one run's chunks shared by 1 and by 2 worker processes of a real ``scheduler worker`` pool.

    python tests/bench/bench_scaleout.py --accounts 300000 --records 1000000

For dunning (a full run: evaluate and apply) and usage mediation (``--files`` files: one chunk each), each
configuration gets a fresh scratch database with the same data and a private redis-server; the pool runs with
one thread per process, so the processes are what is compared. Figure: speed-up from 1 to 2 processes
(goal ≥ 1.7x on 2 cores); the baseline is 1 process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from bench_mediation import METERS, seed_accounts, write_file
from benchkit import REPO, Figure, Report, bench_env, private_redis, scratch_database, server_url, versions
from runkit import process_tree
from sqlalchemy import Engine

from cli.migrations import migrate_billing_database
from scheduler.clock import SystemClock
from scheduler.db import make_engine, make_session_factory
from scheduler.dispatch import make_dispatcher
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import load_registry
from scheduler.migrate import upgrade
from scheduler.models import JobRun, RunStatus
from scheduler.runs import RunCreate, create_manual_run, send_run
from scheduler.settings import Settings
from workers.billing.demo import seed_demo
from workers.runtime.worker import worker_command

AS_OF = date(2026, 6, 1)
FINAL = (RunStatus.COMPLETED, RunStatus.INCOMPLETE, RunStatus.FAILED)


def dunning_setup(engine: Engine, settings: Settings, args: argparse.Namespace) -> tuple[str, dict[str, Any],
                                                                                        dict[str, Any]]:
    seed_demo(engine, accounts=args.accounts, seed=7, as_of=AS_OF)
    return "dunning", {"minimum_account_due": "10.00"}, {"as_of": AS_OF.isoformat()}


def mediation_setup(engine: Engine, settings: Settings, args: argparse.Namespace) -> tuple[str, dict[str, Any],
                                                                                          dict[str, Any]]:
    seed_accounts(engine, 10_000)
    incoming = settings.resolved_files_root / "usage" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    for n in range(args.files):
        write_file(incoming / f"usage-{n}.csv", args.records // args.files, 10_000, fmt="csv", prefix=f"f{n}-",
                   seed=n)
    return "usage_mediation", {"source_dir": "usage/incoming", "pattern": "*.csv", "format": "csv",
                               "meters": METERS}, {}


Setup = Callable[[Engine, Settings, argparse.Namespace], tuple[str, dict[str, Any], dict[str, Any]]]


def one_run(setup: Setup, processes: int, args: argparse.Namespace, tmp: Path, log: Path,
            found_versions: dict[str, str]) -> dict[str, Any]:
    """A fresh database and pool; the seconds from sending the run to its final status."""
    with scratch_database(server_url(), "bench_scale") as url, private_redis() as redis_url:
        engine = make_engine(url)
        upgrade(engine)
        migrate_billing_database(engine, load_registry(Settings()).all())
        found_versions.update(versions(engine, redis_url))
        files = tmp / f"files-{processes}"
        settings = Settings(database_url=url, redis_url=redis_url, files_root=files, chunk_size=args.chunk_size,
                            data_dir=tmp / "data")
        job_type, properties, run_properties = setup(engine, settings, args)
        registry = load_registry(settings)
        factory = make_session_factory(engine)
        with factory() as session:
            job = create_job(session=session, registry=registry, actor="bench", clock=SystemClock(),
                             job_in=JobCreate(name=f"scale {job_type}", job_type=job_type, properties=properties))
            run, _ = create_manual_run(session=session, registry=registry, actor="bench", clock=SystemClock(),
                                       run_in=RunCreate(job_id=job.id or 0, run_properties=run_properties))
            run_id = run.id or 0
        env = bench_env(SCHEDULER_DATABASE_URL=url, SCHEDULER_REDIS_URL=redis_url, SCHEDULER_FILES_ROOT=str(files),
                        SCHEDULER_CHUNK_SIZE=str(args.chunk_size), SCHEDULER_WORKER_METRICS_PORT="0",
                        SCHEDULER_DATA_DIR=str(tmp / "data"))
        queue = registry.get(job_type).queue
        with log.open("ab") as out:
            pool = subprocess.Popen(worker_command([queue], processes, 1), env=env, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=REPO)
        dispatcher = make_dispatcher(settings)
        try:
            while len(process_tree(pool.pid)) < processes + 1:
                time.sleep(0.1)
            time.sleep(1.0)  # the worker processes import and connect to Redis
            started = time.perf_counter()
            send_run(factory=factory, dispatcher=dispatcher, registry=registry, run_id=run_id, clock=SystemClock())
            deadline = time.monotonic() + 1800
            while True:
                with factory() as session:
                    done = session.get(JobRun, run_id)
                    assert done is not None
                    if done.status in FINAL:
                        break
                if pool.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the pool stopped or timed out:\n{log.read_text()[-3000:]}")
                time.sleep(0.05)
            seconds = time.perf_counter() - started
        finally:
            pool.terminate()
            pool.wait(60)
            dispatcher.broker.close()
            engine.dispose()
    return {"seconds": seconds, "status": done.status, "chunks": done.chunks_total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=300_000, help="dunning accounts")
    parser.add_argument("--records", type=int, default=1_000_000, help="mediation records")
    parser.add_argument("--files", type=int, default=8, help="mediation files (one chunk each)")
    parser.add_argument("--chunk-size", type=int, default=20_000, help="dunning accounts per chunk")
    parser.add_argument("--smoke", action="store_true", help="small size for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.accounts, args.records, args.files, args.chunk_size = 10_000, 20_000, 4, 1_250
    report = Report(benchmark="scale_out", size=f"dunning {args.accounts:,} accounts, mediation "
                                                 f"{args.records:,} records in {args.files} files")
    log = REPO / "bench-results" / "scale_out.log"
    log.parent.mkdir(exist_ok=True)
    log.write_bytes(b"")
    found_versions: dict[str, str] = {}
    for label, setup in (("dunning", dunning_setup), ("usage mediation", mediation_setup)):
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            one = one_run(setup, 1, args, Path(tmp), log, found_versions)
            two = one_run(setup, 2, args, Path(tmp), log, found_versions)
        speedup = one["seconds"] / two["seconds"]
        report.add(Figure(scenario=f"{label}, 1 → 2 worker processes", figure=speedup, unit="x", baseline=1.0,
                          baseline_label="1 process", goal="≥ 1.7x", met=speedup >= 1.7,
                          note=f"{one['seconds']:.1f} s → {two['seconds']:.1f} s, {two['chunks']} chunks, "
                               f"runs {one['status']} / {two['status']}"))
        report.details[label] = {"one_process": one, "two_processes": two}
    report.versions = found_versions
    report.details["args"] = json.loads(json.dumps(vars(args)))
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
