"""``scheduler runs``: list, show, create (``--wait``), follow, submit, delete, cancel, retry, items.

``create --wait`` and ``follow`` poll the run until it stops (or waits at PREVIEW), drawing its progress in
records on the terminal, and exit by how it ended (see the README's exit codes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from cli.commands.base import Db, emit, enum_values, limit, parse_json, positive_int, registry, seconds, table, when
from scheduler.clock import SystemClock
from scheduler.models import ItemOutcome, RunStatus
from scheduler.settings import Settings

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_TIMEOUT = 124
FAILED = {RunStatus.FAILED, RunStatus.INCOMPLETE, RunStatus.CANCELLED, RunStatus.DELETED}
STOPPED = FAILED | {RunStatus.COMPLETED, RunStatus.PREVIEW}
POLL_SECONDS = 0.5
BAR = 30


def add(sub: Any, common: argparse.ArgumentParser) -> None:
    runs = sub.add_parser("runs", help="list, show, create, follow and act on runs", parents=[common])
    runs.set_defaults(handler=run)
    actions = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="runs, newest first")
    listing.add_argument("--status", type=enum_values(RunStatus, many=True),
                         help="comma-separated statuses, any case (e.g. failed,incomplete)")
    listing.add_argument("--job", type=positive_int, help="only this job's runs")
    listing.add_argument("--limit", type=limit, default=50, help="at most this many (1-1000, default 50)")
    for name, help_ in (("show", "a run with its summary and audit trail"), ("submit", "apply a preview"),
                        ("delete", "drop a preview (nothing applied)"), ("cancel", "cancel a run not started"),
                        ("retry", "a new run for a failed or incomplete run's failed items")):
        actions.add_parser(name, parents=[common], help=help_).add_argument("id", type=positive_int)
    items = actions.add_parser("items", parents=[common], help="a run's items")
    items.add_argument("id", type=positive_int)
    items.add_argument("--outcome", type=enum_values(ItemOutcome), help="planned, ok, error or skipped")
    items.add_argument("--limit", type=limit, default=100, help="at most this many (1-1000, default 100)")
    create = actions.add_parser("create", parents=[common], help="a manual run of a job")
    create.add_argument("--job", type=positive_int, required=True)
    create.add_argument("--preview", action="store_true", help="stop at PREVIEW for review")
    create.add_argument("--properties", help="run properties as JSON (see `scheduler job-types NAME`)")
    create.add_argument("--idempotency-key")
    create.add_argument("--wait", action="store_true", help="follow the run until it stops; exit 1 if it fails")
    create.add_argument("--timeout", type=seconds, help="with --wait: give up after this many seconds (exit 124)")
    follow = actions.add_parser("follow", parents=[common],
                                help="show a run's progress until it stops; exit 1 if it fails")
    follow.add_argument("id", type=positive_int)
    follow.add_argument("--timeout", type=seconds, help="give up after this many seconds (exit 124)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler import runs as R
    from scheduler.lifecycle import item_counts

    db = Db(settings)
    clock = SystemClock()
    if args.action == "list":
        with db.session() as session:
            rows, _ = R.list_runs(session, R.RunFilter(status=args.status, job_id=args.job), limit=args.limit)
        emit(args, [{**r.model_dump(), "outcome": _outcome(r)} for r in rows], lambda: table(
            ["ID", "STATUS", "TYPE", "TRIGGER", "CREATED (UTC)", "FINISHED (UTC)", "OUTCOME"],
            [[r.id, r.status, r.job_type, r.trigger, r.created_at, r.finished_at, _outcome(r)] for r in rows],
            empty="no runs match"))
    elif args.action == "show":
        with db.session() as session:
            found = R.get_run(session, args.id)
            events = R.run_events(session, args.id)
            records = R.chunk_records(session, [args.id]).get(args.id)
            data = {**found.model_dump(), "outcome": _outcome(found), "progress": R.progress(found, records),
                    "item_counts": item_counts(session, args.id), "events": [e.model_dump() for e in events]}
        emit(args, data, lambda: show_lines(data, events))
    elif args.action == "items":
        with db.session() as session:
            items, _ = R.list_items(session, args.id, outcome=args.outcome, limit=args.limit)
        emit(args, [i.model_dump() for i in items], lambda: table(
            ["KEY", "OUTCOME", "APPLIED (UTC)", "DETAIL"],
            [[i.item_key, i.outcome, i.applied_at, json.dumps(i.detail, default=str)] for i in items],
            empty="no items"))
    elif args.action == "create":
        types = registry(settings)
        run_in = R.RunCreate(job_id=args.job, preview=args.preview,
                             run_properties=parse_json(args.properties, "the run properties"))
        with db.session() as session:
            created, _ = R.create_manual_run(session=session, registry=types, run_in=run_in, actor="cli", clock=clock,
                                             idempotency_key=args.idempotency_key, settings=settings)
            record = created.model_dump()
        run_id = int(record["id"])
        sent = _send(settings, lambda d: R.send_run(factory=db.factory, dispatcher=d, registry=types, run_id=run_id,
                                                    clock=clock))
        if args.wait:
            print(f"run {run_id} created" + ("" if sent else " (queued for re-send)"), file=sys.stderr)
            return follow(db, run_id, args)
        emit(args, record, lambda: [f"run {run_id} created" + ("" if sent else " (queued for re-send)")])
    elif args.action in ("submit", "delete", "cancel"):
        with db.session() as session:
            acted = R.act_on_run(session=session, run_id=args.id, action=args.action, actor="cli", clock=clock,
                                 settings=settings).model_dump()
        if args.action == "submit":
            _send(settings, lambda d: R.send_apply(factory=db.factory, dispatcher=d, registry=registry(settings),
                                                   run_id=args.id))
        emit(args, acted, lambda: [f"run {acted['id']} is {acted['status']}"])
    elif args.action == "retry":
        with db.session() as session:
            retried = R.retry_run(session=session, run_id=args.id, actor="cli", clock=clock).model_dump()
        _send(settings, lambda d: R.send_run(factory=db.factory, dispatcher=d, registry=registry(settings),
                                             run_id=int(retried["id"]), clock=clock))
        emit(args, retried, lambda: [f"run {retried['id']} created as a retry of run {args.id}"])
    elif args.action == "follow":
        return follow(db, args.id, args)
    return 0


def _outcome(run: Any) -> str:
    """The run's one-line outcome (as the API and the page say it)."""
    from scheduler.outcomes import outcome_line

    return outcome_line(run.status, run.summary or {}, run.error)


def _send(settings: Settings, send: Any) -> bool:
    """Send through Redis when configured (or a `scheduler up` runs here); without it beat's outbox sends later."""
    from scheduler.dispatch import make_dispatcher

    return bool(settings.redis_url) and bool(send(make_dispatcher(settings)))


def show_lines(data: dict[str, Any], events: list[Any]) -> list[str]:
    p = data["progress"]
    counts = ", ".join(f"{n} {o}" for o, n in sorted(data["item_counts"].items())) or "none"
    rows = [("Job", f"{data['job_id']} ({data['job_type']})"), ("Status", data["status"]),
            ("Trigger", data["trigger"]), ("Outcome", data["outcome"]), ("Progress", progress_text(p)),
            ("Items", counts),
            ("Created", f"{when(data['created_at'])} UTC by {data['created_by']}"),
            ("Started", when(data["started_at"])), ("Finished", when(data["finished_at"])),
            ("Error", data["error"] or "-")]
    width = max(len(k) for k, _ in rows)
    summary = json.dumps(data["summary"], indent=2, default=str).splitlines()
    return [f"Run {data['id']}", *(f"  {k.ljust(width)}  {v}" for k, v in rows), "  Summary",
            *(f"    {line}" for line in summary), "  Audit trail",
            *(f"    {when(e.at)}  {e.from_status or '-'} -> {e.to_status}  by {e.actor}  {e.note}".rstrip()
              for e in events)]


def progress_text(p: dict[str, Any]) -> str:
    phase = {"staging": " staged", "applying": " applied"}.get(p.get("phase") or "", "")
    if p.get("records_total") is not None:
        return f"{p['records_done']:,} of {p['records_total']:,} records{phase} ({p['percent']:.0f}%)"
    if p.get("records_done"):
        return f"{p['records_done']:,} records{phase} so far ({p['percent']:.0f}%)"
    return f"{p['percent']:.0f}%"


def follow(db: Db, run_id: int, args: argparse.Namespace) -> int:
    """Poll the run until it stops, drawing a progress bar on a terminal (one line per change otherwise)."""
    from scheduler import runs as R

    deadline = time.monotonic() + args.timeout if getattr(args, "timeout", None) else None
    tty = sys.stderr.isatty()
    last = ""
    while True:
        with db.session() as session:
            found = R.get_run(session, run_id)
            p = R.progress(found, R.chunk_records(session, [run_id]).get(run_id))
            status, error, record = RunStatus(found.status), found.error, found.model_dump()
        line = f"run {run_id} {status:<10} {_bar(p['percent'])} {progress_text(p)}"
        if line != last:
            print(("\r\033[K" if tty else "") + line, end="" if tty else "\n", file=sys.stderr, flush=True)
            last = line
        if status in STOPPED:
            break
        if deadline is not None and time.monotonic() > deadline:
            print(("\n" if tty else "") + f"error: run {run_id} is still {status} after {args.timeout:g} s",
                  file=sys.stderr)
            return EXIT_TIMEOUT
        time.sleep(POLL_SECONDS)
    if tty:
        print(file=sys.stderr)
    emit(args, record, lambda: [f"run {run_id} is {status}" + (f": {error}" if error else "")])
    return EXIT_RUN_FAILED if status in FAILED else EXIT_OK


def _bar(percent: float) -> str:
    filled = round(BAR * min(max(percent, 0.0), 100.0) / 100)
    return "[" + "#" * filled + "-" * (BAR - filled) + "]"
