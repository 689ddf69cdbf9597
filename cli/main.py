"""The ``scheduler`` command: parses the command line and runs api, beat, workers and the admin commands.

Job types, beat and workers are imported only inside the commands that need them, so the core
stays free of them. Every command prints one clear line on a known error and exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydantic import ValidationError

from cli.commands import job_types, jobs, keys, runs
from cli.commands.base import Handler, emit, positive_int
from cli.embedded import settings_for
from cli.migrations import migrate_all, schema_gaps
from scheduler.errors import SchedulerError
from scheduler.settings import Settings

EXIT_BROKEN_PIPE = 141
"""Exit code when the reader of our output went away (``| head``), as other Unix tools end (128 + SIGPIPE)."""


class Parser(argparse.ArgumentParser):
    """Bad options are one line and exit 2: ``error: scheduler runs list: argument --status: 'x' is not one of …``."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="scheduler", description="Billing Scheduler (exit codes: see the README)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    # `--json` is accepted anywhere on the line; SUPPRESS keeps a later parser from resetting an earlier one.
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def add(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, parents=[common])
        p.set_defaults(handler=handler)
        return p

    up = add("up", cmd_up, "api + beat + one worker on the embedded defaults")
    up.add_argument("--host", default=None)
    up.add_argument("--port", type=port, default=None)
    up.add_argument("--demo", action="store_true", help="also load demo billing data and demo jobs")
    api = add("api", cmd_api, "serve the REST API and the page")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=port, default=None)
    api.add_argument("--workers", type=positive_int, default=None,
                     help="worker processes (default SCHEDULER_API_WORKERS, else one per core)")
    add("beat", cmd_beat, "run the beat service")
    worker = add("worker", cmd_worker, "run a worker pool")
    worker.add_argument("--queues", nargs="*", help="queues to consume (default: all job types)")
    worker.add_argument("--processes", type=positive_int, default=None)
    worker.add_argument("--threads", type=positive_int, default=None)
    migrate = add("migrate", cmd_migrate, "apply database migrations")
    migrate.add_argument("--check", action="store_true",
                         help="change nothing; exit 1 unless every migration tree is at head")

    for noun in (jobs, runs, keys, job_types):
        noun.add(sub, common)

    demo = add("demo", cmd_demo_seed, "demo data")
    demo_sub = demo.add_subparsers(dest="action", required=True)
    ds = demo_sub.add_parser("seed", parents=[common])
    ds.add_argument("--accounts", type=positive_int, default=1000)
    ds.add_argument("--no-jobs", action="store_true", help="seed billing data only")
    return parser


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a reader gone before the last lines is a broken pipe too
        return code
    except BrokenPipeError:
        # The reader (`| head`) has gone: end quietly; point stdout at /dev/null so the exit flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
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
