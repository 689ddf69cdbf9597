"""The ``scheduler`` command: parses the command line and runs api, beat, workers and the admin commands.

Job types, beat and workers are imported only inside the commands that need them, so the core
stays free of them. Every command prints one clear line on a known error and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from cli.embedded import settings_for
from cli.migrations import migrate_all, schema_gaps
from scheduler.clock import SystemClock
from scheduler.db import check_database, make_engine, make_session_factory
from scheduler.errors import InvalidInput, SchedulerError
from scheduler.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def emit(args: argparse.Namespace, data: Any, lines: Callable[[], list[str]]) -> None:
    """Print ``data`` as JSON with ``--json``, else the human lines."""
    if getattr(args, "json", False):
        print(json.dumps(data, default=_json_default, indent=2))
    else:
        for line in lines():
            print(line)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    if args.check:
        gaps = schema_gaps(settings)
        if gaps:
            print(f"database is not at head: {'; '.join(gaps)}; run `scheduler migrate`", file=sys.stderr)
            return 1
    else:
        migrate_all(settings)
    print("database is up to date")
    return 0


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.api.server import api_workers, serve_api, share_metrics

    workers = api_workers(settings, args.workers)
    share_metrics(settings, workers)  # before the application imports prometheus_client
    from scheduler.api.app import create_app

    return serve_api(lambda: create_app(settings), settings, host=args.host or settings.api_host,
                     port=args.port or settings.api_port, workers=workers)


def cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    from beat.service import run

    run(settings)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers.runtime.worker import run_worker

    queues = [q for part in (args.queues or []) for q in part.split(",") if q]
    return int(run_worker(settings, queues=queues, processes=args.processes, threads=args.threads))


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from cli.up import run_all_in_one

    return run_all_in_one(settings, host=args.host, port=args.port, demo=args.demo)


def cmd_demo_seed(args: argparse.Namespace, settings: Settings) -> int:
    from cli.up import seed_demo

    migrate_all(settings)
    counts = seed_demo(settings, accounts=args.accounts, with_jobs=not args.no_jobs)
    emit(args, counts, lambda: [f"seeded {k}: {v}" for k, v in counts.items()])
    return 0


def _session(settings: Settings) -> Any:
    engine = make_engine(settings.resolved_database_url)
    check_database(engine)
    return make_session_factory(engine)()


def _registry(settings: Settings) -> Any:
    from scheduler.jobtypes import load_registry

    return load_registry(settings)


def _parse_json(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler import jobs as J

    with _session(settings) as session:
        if args.action == "list":
            rows = [J.JobPublic.of(j) for j in J.list_jobs(session, include_archived=args.all, limit=1000)]
            emit(args, rows, lambda: [
                f"{j.id:>5}  {j.status:<8} {j.job_type:<16} {j.cron or '-':<20} {j.name}" for j in rows
            ])
        elif args.action == "show":
            shown = J.JobPublic.of(J.get_job(session, args.id))
            emit(args, shown, lambda: [f"{k}: {v}" for k, v in shown.model_dump().items()])
        elif args.action == "create":
            data = _parse_json(args.definition, "the job definition")
            try:
                job_in = J.JobCreate.model_validate(data)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise InvalidInput(f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from exc
            out = J.JobPublic.of(J.create_job(session=session, registry=_registry(settings), job_in=job_in,
                                              actor="cli", clock=SystemClock(), settings=settings))
            emit(args, out, lambda: [f"created job {out.id} ({out.name}); next fire {out.next_fire_at}"])
        elif args.action in ("pause", "resume", "archive"):
            changed = J.change_job_status(session=session, job_id=args.id, action=args.action, actor="cli",
                                          clock=SystemClock(), note=args.note or "")
            emit(args, J.JobPublic.of(changed), lambda: [f"job {changed.id} is {changed.status}"])
        elif args.action == "next-fires":
            found = J.get_job(session, args.id)
            schedule = J.job_schedule(found)
            if schedule is None:
                raise InvalidInput(f"job {found.id} has no schedule")
            fires = schedule.next_fires(SystemClock().now(), args.count)
            data = {"description": schedule.describe(), "cron_expanded": schedule.expanded,
                    "fires": [{"utc": f.utc, "local": f.local.isoformat(), "dst_change": f.dst_change} for f in fires]}
            emit(args, data, lambda: [schedule.describe()] + [
                f"{_json_default(f.utc)}  {f.local.isoformat()}{'  (DST change)' if f.dst_change else ''}"
                for f in fires
            ])
    return 0


@dataclass(frozen=True, kw_only=True)
class _RunsCommand:
    """What every ``scheduler runs`` action works with."""

    args: argparse.Namespace
    settings: Settings
    session: Any
    clock: SystemClock

    @property
    def factory(self) -> Any:
        return make_session_factory(self.session.get_bind())

    def dispatcher(self) -> Any:
        """Redis, when configured (or a `scheduler up` runs here); without it beat's outbox sends the run."""
        from scheduler.dispatch import make_dispatcher

        return make_dispatcher(self.settings) if self.settings.redis_url else None


def _run_line(run: Any) -> str:
    return (f"{run.id:>6}  {run.status:<10} {run.job_type:<16} {run.trigger:<9} "
            f"{_json_default(run.created_at)}  {run.error or ''}")


def _runs_list(c: _RunsCommand) -> None:
    from scheduler import runs as R

    filters = R.RunFilter(status=c.args.status.split(",") if c.args.status else None, job_id=c.args.job)
    rows, _ = R.list_runs(c.session, filters, limit=c.args.limit)
    emit(c.args, [r.model_dump() for r in rows], lambda: [_run_line(r) for r in rows])


def _runs_show(c: _RunsCommand) -> None:
    from scheduler import runs as R
    from scheduler.lifecycle import item_counts

    run_id = c.args.id
    run = R.get_run(c.session, run_id)
    events = R.run_events(c.session, run_id)
    data = {**run.model_dump(), "progress": R.progress(run), "item_counts": item_counts(c.session, run_id),
            "events": [e.model_dump() for e in events]}
    emit(c.args, data, lambda: [_run_line(run), f"summary: {json.dumps(run.summary)}"] + [
        f"  {_json_default(e.at)} {e.from_status or '-'} -> {e.to_status} by {e.actor} {e.note}" for e in events
    ])


def _runs_create(c: _RunsCommand) -> None:
    from scheduler import runs as R

    registry = _registry(c.settings)
    run_in = R.RunCreate(job_id=c.args.job, preview=c.args.preview,
                         run_properties=_parse_json(c.args.properties, "the run properties"))
    run, _ = R.create_manual_run(session=c.session, registry=registry, run_in=run_in, actor="cli", clock=c.clock,
                                 idempotency_key=c.args.idempotency_key, settings=c.settings)
    assert run.id is not None
    dispatcher = c.dispatcher()
    sent = dispatcher is not None and R.send_run(factory=c.factory, dispatcher=dispatcher, registry=registry,
                                                 run_id=run.id, clock=c.clock)
    emit(c.args, run.model_dump(), lambda: [f"run {run.id} created" + ("" if sent else " (queued for re-send)")])


def _runs_act(c: _RunsCommand) -> None:
    """submit, delete or cancel."""
    from scheduler import runs as R

    run = R.act_on_run(session=c.session, run_id=c.args.id, action=c.args.action, actor="cli", clock=c.clock,
                       settings=c.settings)
    if c.args.action == "submit" and (dispatcher := c.dispatcher()) is not None:
        R.send_apply(factory=c.factory, dispatcher=dispatcher, registry=_registry(c.settings), run_id=c.args.id)
    emit(c.args, run.model_dump(), lambda: [f"run {run.id} is {run.status}"])


def _runs_retry(c: _RunsCommand) -> None:
    from scheduler import runs as R

    run = R.retry_run(session=c.session, run_id=c.args.id, actor="cli", clock=c.clock)
    assert run.id is not None
    if (dispatcher := c.dispatcher()) is not None:
        R.send_run(factory=c.factory, dispatcher=dispatcher, registry=_registry(c.settings), run_id=run.id,
                   clock=c.clock)
    emit(c.args, run.model_dump(), lambda: [f"run {run.id} created as a retry of run {c.args.id}"])


def _runs_items(c: _RunsCommand) -> None:
    from scheduler import runs as R

    items, _ = R.list_items(c.session, c.args.id, outcome=c.args.outcome, limit=c.args.limit)
    emit(c.args, [i.model_dump() for i in items], lambda: [
        f"{i.item_key:<20} {i.outcome:<8} {json.dumps(i.detail)}" for i in items
    ])


_RUNS_ACTIONS: dict[str, Callable[[_RunsCommand], None]] = {
    "list": _runs_list, "show": _runs_show, "create": _runs_create, "submit": _runs_act, "delete": _runs_act,
    "cancel": _runs_act, "retry": _runs_retry, "items": _runs_items,
}


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        _RUNS_ACTIONS[args.action](_RunsCommand(args=args, settings=settings, session=session, clock=SystemClock()))
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Keys on the database directly: the bootstrap path before any key exists (``scheduler api`` mints none)."""
    from scheduler import auth

    with _session(settings) as session:
        if args.action == "create":
            key, token = auth.create_key(session, args.name, args.role, actor="cli")
            emit(args, {"id": key.id, "name": key.name, "role": key.role, "token": token},
                 lambda: [f"created {key.role} key {key.name!r} (id {key.id}); it is shown once:", token])
        elif args.action == "list":
            keys = auth.list_keys(session)
            emit(args, [k.model_dump(exclude={"token_hash"}) for k in keys], lambda: [
                f"{k.id:>4}  {k.role:<8} {k.name:<20} {'revoked' if k.revoked_at else 'active':<8} "
                f"created by {k.created_by}" for k in keys
            ])
        elif args.action == "revoke":
            key, ended = auth.revoke_key(session, args.id, actor="cli")
            emit(args, {"id": key.id, "revoked_at": key.revoked_at, "sessions_ended": ended},
                 lambda: [f"key {key.id} ({key.name}) revoked; {ended} page session(s) ended"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scheduler", description="Billing Scheduler")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    # `--json` is accepted anywhere on the line; SUPPRESS keeps a later parser from resetting an earlier one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, parents=[common])
        p.set_defaults(handler=handler)
        return p

    up = add("up", cmd_up, "api + beat + one worker on the embedded defaults")
    up.add_argument("--host", default=None)
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--demo", action="store_true", help="also load demo billing data and demo jobs")
    api = add("api", cmd_api, "serve the REST API and the page")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.add_argument("--workers", type=int, default=None,
                     help="worker processes (default SCHEDULER_API_WORKERS, else one per core)")
    add("beat", cmd_beat, "run the beat service")
    worker = add("worker", cmd_worker, "run a worker pool")
    worker.add_argument("--queues", nargs="*", help="queues to consume (default: all job types)")
    worker.add_argument("--processes", type=int, default=None)
    worker.add_argument("--threads", type=int, default=None)
    migrate = add("migrate", cmd_migrate, "apply database migrations")
    migrate.add_argument("--check", action="store_true",
                         help="change nothing; exit 1 unless every migration tree is at head")

    jobs = add("jobs", cmd_jobs, "list, show, create, pause, resume, archive jobs")
    jobs_sub = jobs.add_subparsers(dest="action", required=True)
    jl = jobs_sub.add_parser("list", parents=[common])
    jl.add_argument("--all", action="store_true", help="include archived jobs")
    for name in ("show", "pause", "resume", "archive", "next-fires"):
        p = jobs_sub.add_parser(name, parents=[common])
        p.add_argument("id", type=int)
        if name in ("pause", "resume", "archive"):
            p.add_argument("--note", default="")
        if name == "next-fires":
            p.add_argument("--count", type=int, default=10)
    jc = jobs_sub.add_parser("create", parents=[common])
    jc.add_argument("definition", help="the job as JSON (the API's job create body)")

    runs = add("runs", cmd_runs, "list, show, create and act on runs")
    runs_sub = runs.add_subparsers(dest="action", required=True)
    rl = runs_sub.add_parser("list", parents=[common])
    rl.add_argument("--status", help="comma-separated statuses")
    rl.add_argument("--job", type=int)
    rl.add_argument("--limit", type=int, default=50)
    for name in ("show", "submit", "delete", "cancel", "retry"):
        runs_sub.add_parser(name, parents=[common]).add_argument("id", type=int)
    ri = runs_sub.add_parser("items", parents=[common])
    ri.add_argument("id", type=int)
    ri.add_argument("--outcome")
    ri.add_argument("--limit", type=int, default=100)
    rc = runs_sub.add_parser("create", parents=[common])
    rc.add_argument("--job", type=int, required=True)
    rc.add_argument("--preview", action="store_true")
    rc.add_argument("--properties", help="run properties as JSON")
    rc.add_argument("--idempotency-key")

    keys = add("keys", cmd_keys, "manage API keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    kc = keys_sub.add_parser("create", parents=[common])
    kc.add_argument("--name", required=True)
    kc.add_argument("--role", choices=["viewer", "operator", "admin"], default="viewer")
    keys_sub.add_parser("list", parents=[common])
    keys_sub.add_parser("revoke", parents=[common]).add_argument("id", type=int)

    demo = add("demo", cmd_demo_seed, "demo data")
    demo_sub = demo.add_subparsers(dest="action", required=True)
    ds = demo_sub.add_parser("seed", parents=[common])
    ds.add_argument("--accounts", type=int, default=1000)
    ds.add_argument("--no-jobs", action="store_true", help="seed billing data only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"error: setting SCHEDULER_{str(err['loc'][0]).upper()}: {err['msg']}", file=sys.stderr)
        return 2
    from scheduler.logs import configure_logging

    configure_logging(settings, service=args.command)
    try:
        return int(args.handler(args, settings_for(args.command, settings)))
    except SchedulerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
