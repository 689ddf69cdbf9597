"""``scheduler jobs``: list, show, create, pause, resume, archive, next-fires."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pydantic import ValidationError

from cli.commands.base import Db, emit, json_default, parse_json, positive_int, registry, table, when
from scheduler.clock import SystemClock
from scheduler.errors import InvalidInput
from scheduler.settings import Settings


def add(sub: Any, common: argparse.ArgumentParser) -> None:
    jobs = sub.add_parser("jobs", help="list, show, create, pause, resume, archive jobs", parents=[common])
    jobs.set_defaults(handler=run)
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="the jobs, oldest first")
    listing.add_argument("--all", action="store_true", help="include archived jobs")
    for name, help_ in (("show", "a job's definition, schedule and next fire"), ("pause", "stop firing"),
                        ("resume", "fire again"), ("archive", "hide it for good (history kept)"),
                        ("next-fires", "its next fire times in UTC and its zone")):
        p = actions.add_parser(name, parents=[common], help=help_)
        p.add_argument("id", type=positive_int)
        if name in ("pause", "resume", "archive"):
            p.add_argument("--note", default="", help="why, for the audit trail")
        if name == "next-fires":
            p.add_argument("--count", type=positive_int, default=10)
    create = actions.add_parser("create", parents=[common], help="a job from its JSON definition")
    create.add_argument("definition", help="the job as JSON (the API's job create body; see `scheduler job-types`)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler import jobs as J

    db = Db(settings)
    with db.session() as session:
        if args.action == "list":
            rows = [J.JobPublic.of(j) for j in J.list_jobs(session, include_archived=args.all, limit=1000)]
            emit(args, rows, lambda: table(["ID", "STATUS", "TYPE", "SCHEDULE", "NEXT FIRE (UTC)", "NAME"], [
                [j.id, j.status, j.job_type, j.cron or "manual only", when(j.next_fire_at), j.name] for j in rows
            ], empty="no jobs yet: create one with `scheduler jobs create JSON`"))
        elif args.action == "show":
            shown = J.JobPublic.of(J.get_job(session, args.id))
            emit(args, shown, lambda: describe(shown))
        elif args.action == "create":
            data = parse_json(args.definition, "the job definition")
            try:
                job_in = J.JobCreate.model_validate(data)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise InvalidInput(f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from exc
            out = J.JobPublic.of(J.create_job(session=session, registry=registry(settings), job_in=job_in,
                                              actor="cli", clock=SystemClock(), settings=settings))
            emit(args, out, lambda: [f"created job {out.id} ({out.name}); next fire {when(out.next_fire_at)} UTC"])
        elif args.action in ("pause", "resume", "archive"):
            changed = J.change_job_status(session=session, job_id=args.id, action=args.action, actor="cli",
                                          clock=SystemClock(), note=args.note or "")
            emit(args, J.JobPublic.of(changed), lambda: [f"job {changed.id} is {changed.status}"])
        elif args.action == "next-fires":
            found = J.get_job(session, args.id)
            schedule = J.job_schedule(found)
            if schedule is None:
                raise InvalidInput(f"job {found.id} has no schedule (it runs manually only)")
            fires = schedule.next_fires(SystemClock().now(), args.count)
            data = {"description": schedule.describe(), "cron_expanded": schedule.expanded,
                    "fires": [{"utc": f.utc, "local": f.local.isoformat(), "dst_change": f.dst_change} for f in fires]}
            emit(args, data, lambda: [schedule.describe(), *table(["UTC", f"LOCAL ({found.timezone})", ""], [
                [json_default(f.utc), f.local.isoformat(), "DST change" if f.dst_change else ""] for f in fires])])
    return 0


def describe(job: Any) -> list[str]:
    """A job as a person reads it: what it is, when it fires, what it does, then its properties."""
    schedule = (f"{job.schedule_description} ({job.cron}, {job.timezone})" if job.cron else "manual runs only")
    notify = (f"{', '.join(job.notify_emails)} on {', '.join(str(e) for e in job.notify_on) or 'nothing'}"
              if job.notify_emails else "nobody")
    rows = [
        ("Type", job.job_type), ("Status", str(job.status)), ("Description", job.description or "-"),
        ("Schedule", schedule), ("Next fire", f"{when(job.next_fire_at)} UTC" if job.next_fire_at else "-"),
        ("Manual runs", "allowed" if job.can_run_manual else "not allowed"),
        ("Review", "every run stops at PREVIEW" if job.requires_review else "not required"),
        ("Missed ticks", f"{job.misfire_policy} (window {job.catchup_window} s, at most {job.max_catchup_runs} runs)"),
        ("Overlap", str(job.overlap_policy)),
        ("Max runtime", f"{job.max_runtime} s" if job.max_runtime else "-"),
        ("Notify", notify), ("Created", f"{when(job.created_at)} UTC by {job.created_by}"),
    ]
    width = max(len(k) for k, _ in rows)
    properties = json.dumps(job.properties, indent=2, default=str).splitlines()
    return [f"Job {job.id}: {job.name}", *(f"  {k.ljust(width)}  {v}" for k, v in rows), "  Properties",
            *(f"    {line}" for line in properties)]
