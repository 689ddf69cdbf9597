"""``scheduler up``: api, beat and one worker for all queues on the embedded defaults."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from cli.embedded import EmbeddedRedis
from scheduler.clock import SystemClock
from scheduler.db import make_engine, make_session_factory
from scheduler.errors import SchedulerError
from scheduler.settings import Settings


def child_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process the same settings as this one."""
    env = dict(os.environ)
    env["SCHEDULER_DATA_DIR"] = str(settings.data_dir.resolve())
    env["SCHEDULER_DATABASE_URL"] = settings.resolved_database_url
    env["SCHEDULER_BILLING_DATABASE_URL"] = settings.resolved_billing_database_url
    env["SCHEDULER_FILES_ROOT"] = str(settings.resolved_files_root.resolve())
    if settings.redis_url:
        env["SCHEDULER_REDIS_URL"] = settings.redis_url
    return env


def seed_demo(settings: Settings, *, accounts: int, with_jobs: bool = True) -> dict[str, Any]:
    """Demo billing data and demo jobs, each new job with a first manual run so every type shows a run at once.

    Data already seeded is left as it is. The first runs are sent at once when Redis is configured (as
    ``scheduler up`` has it), like any manual run; else they are recorded and beat's outbox sends them.
    """
    from cli.demo import DEMO_JOBS, seed_demo_data
    from scheduler.jobs import JobCreate, create_job
    from scheduler.jobtypes import load_registry
    from scheduler.models import Job, JobStatus
    from scheduler.runs import RunCreate, create_manual_run

    counts = seed_demo_data(make_engine(settings.resolved_billing_database_url), settings.resolved_files_root,
                            accounts=accounts)
    if not with_jobs:
        return counts
    factory = make_session_factory(make_engine(settings.resolved_database_url))
    registry = load_registry(settings)
    created = 0
    run_ids: list[int] = []
    with factory() as session:
        for definition in DEMO_JOBS:
            exists = session.scalar(
                select(func.count()).select_from(Job).where(
                    col(Job.name) == definition["name"], col(Job.status) != JobStatus.ARCHIVED
                )
            )
            if exists:
                continue
            job = create_job(session=session, registry=registry, job_in=JobCreate.model_validate(definition),
                             actor="demo", clock=SystemClock(), settings=settings)
            assert job.id is not None
            run, _ = create_manual_run(session=session, registry=registry, run_in=RunCreate(job_id=job.id),
                                       actor="demo", clock=SystemClock())
            assert run.id is not None
            run_ids.append(run.id)
            created += 1
    counts["jobs"] = created
    if settings.redis_url and run_ids:
        from scheduler.dispatch import make_dispatcher
        from scheduler.runs import send_run

        dispatcher = make_dispatcher(settings)
        for run_id in run_ids:
            send_run(factory=factory, dispatcher=dispatcher, registry=registry, run_id=run_id, clock=SystemClock())
    return counts


INITIAL_KEY_NAME = "initial-admin"
INITIAL_KEY_FILE = "initial-admin-key"


def initial_admin_key(settings: Settings) -> str | None:
    """On the very first start (no key has ever existed), mint the admin key; later starts mint none.

    The token is returned to be printed once, and kept in ``<data dir>/initial-admin-key`` (mode 0600)
    for the operator of this all-in-one installation; only its hash is in the database.
    """
    from scheduler import auth

    factory = make_session_factory(make_engine(settings.resolved_database_url))
    with factory() as session:
        if auth.keys_exist(session):
            return None
        try:
            _, token = auth.create_key(session, INITIAL_KEY_NAME, "admin", actor="scheduler up")
        except auth.DuplicateKeyName:
            return None  # another first start won the race
    path = settings.data_dir / INITIAL_KEY_FILE
    try:
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
    except OSError as exc:
        print(f"warning: could not keep the initial admin key in {path.name}: {exc.strerror}", file=sys.stderr)
    return token


def _print_login(settings: Settings, url: str, token: str | None) -> None:
    key_file = (settings.data_dir / INITIAL_KEY_FILE).resolve()
    if token:
        print(f"Log in at {url} with this admin API key (shown once; also kept in {key_file}, mode 0600):\n"
              f"    {token}", flush=True)
    elif key_file.exists():
        print(f"Log in at {url} with the admin API key kept in {key_file}", flush=True)
    else:
        print(f"Log in at {url} with an API key (create one with: scheduler keys create --name NAME --role admin)",
              flush=True)


class PortInUse(SchedulerError):
    """The API's port is taken: ``scheduler up`` says so before it starts, seeds or creates anything."""

    code = "port_in_use"

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {host}:{port} ({reason}): stop what uses it, or choose another port "
                         "with --port or SCHEDULER_API_PORT")


def check_port(host: str, port: int) -> None:
    """Bind the API's address once, as the server will (address reuse on), and let it go; :class:`PortInUse`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise PortInUse(host, port, f"unknown host: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise PortInUse(host, port, exc.strerror or str(exc)) from exc


def run_all_in_one(settings: Settings, *, host: str | None, port: int | None, demo: bool) -> int:
    from cli.migrations import migrate_all
    from scheduler.api.app import create_app
    from scheduler.api.server import serve_api

    host = host or settings.api_host
    port = port or settings.api_port
    check_port(host, port)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedded: EmbeddedRedis | None = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(settings.data_dir)
        settings = settings.model_copy(update={"redis_url": embedded.start()})
    children: list[subprocess.Popen[bytes]] = []
    try:
        migrate_all(settings)
        if demo:
            counts = seed_demo(settings, accounts=1000)
            print(f"demo data ready: {counts}", flush=True)
        token = initial_admin_key(settings)
        env = child_env(settings)
        children.extend(
            subprocess.Popen([sys.executable, "-m", "cli", *args], env=env)
            for args in (["beat"], ["worker", "--processes", "1", "--threads", "2"])
        )
        print(f"Billing Scheduler is up: http://{host}:{port}/  (API: http://{host}:{port}/api/v1, "
              f"docs: http://{host}:{port}/docs)", flush=True)
        _print_login(settings, f"http://{host}:{port}/", token)
        # Drains and returns on SIGTERM too, so the children and the embedded Redis below are stopped.
        serve_api(create_app(settings), settings, host=host, port=port, log_level="warning")
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded is not None:
            embedded.stop()
    return 0
