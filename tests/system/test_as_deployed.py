"""The system as deployed: every role started as its own OS process with exactly the command of
``deploy/compose.yaml`` (migrate, the API twice, beat twice, every worker pool), on a fresh PostgreSQL
database and a private Redis, each replica on ports of its own and logging JSON as in the image.

It runs a job of every type the compose file has a pool for, checks ``/metrics`` and ``/readyz`` on each
process, then stops (SIGTERM) and restarts each role once while runs flow, and shows with a ledger that
nothing was lost or done twice: every run ended (none FAILED), each through one CREATED, at most one
run per job and tick, and every run an API request made exactly once.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from faultkit import PrivateRedis, Proc, Processes, free_port, lease_holder, rows, wait_for
from sqlalchemy import Engine, text

# Every pool of the compose file (one per queue) is started and restarted once.
pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(360)]

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
SCHEDULER = str(Path(sys.executable).with_name("scheduler"))
TERMINAL = ("COMPLETED", "INCOMPLETE", "FAILED", "CANCELLED", "DELETED", "PREVIEW")


@dataclass
class Role:
    """One process of the deployment: its compose service, command and the port it answers on."""

    service: str
    command: list[str]
    port: int
    env: dict[str, str]
    proc: Proc | None = None

    @property
    def kind(self) -> str:
        return self.command[0]


def compose_roles(base_env: dict[str, str], data_root: Path) -> tuple[list[str], list[Role]]:
    """The migrate command and every long-running role of the compose file, replicas expanded."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    migrate: list[str] = []
    roles: list[Role] = []
    for name, spec in services.items():
        command = spec.get("command")
        if not command:
            continue  # PostgreSQL and Redis: the test's own
        if command[0] == "migrate":
            migrate = list(command)
            continue
        replicas = int((spec.get("deploy") or {}).get("replicas", 1))
        if command[0] == "api":
            replicas = max(replicas, 2)  # scaled out as `docker compose up --scale api=2` would
        for n in range(replicas):
            port = free_port()
            setting = {"api": "SCHEDULER_API_PORT", "beat": "SCHEDULER_BEAT_METRICS_PORT",
                       "worker": "SCHEDULER_WORKER_METRICS_PORT"}[command[0]]
            env = {**base_env, setting: str(port), "SCHEDULER_DATA_DIR": str(data_root / f"{name}-{n}")}
            roles.append(Role(f"{name}-{n}", list(command), port, env))
    return migrate, roles


def get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode(), answer.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers
    except OSError:
        return 0, "", {}


def post(port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **headers}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, json.loads(answer.read()), answer.headers


def json_lines(proc: Proc) -> list[dict[str, Any]]:
    """Every line the process logged, each of which must be a JSON object."""
    out = []
    for line in proc.log().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"{proc.name} logged a line that is not JSON: {line!r}") from None
    return out


def test_the_deployment_runs_every_job_type_and_survives_a_restart_of_every_role(
    fresh_database_url: str, fresh_engine: Engine, private_redis: PrivateRedis, processes: Processes,
    tmp_path: Path, figures: list[str],
) -> None:
    base_env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "SCHEDULER_DATABASE_URL": fresh_database_url, "SCHEDULER_REDIS_URL": private_redis.url,
        "SCHEDULER_LOG_FORMAT": "json", "SCHEDULER_FILES_ROOT": str(tmp_path / "files"),
        "SCHEDULER_CHUNK_SIZE": "25", "SCHEDULER_OUTBOX_RESEND_AFTER": "10", "SCHEDULER_RUN_HEARTBEAT_TIMEOUT": "10",
        "SCHEDULER_API_SHUTDOWN_SECONDS": "20", "SCHEDULER_WORKER_SHUTDOWN_SECONDS": "20", "PYTHONUNBUFFERED": "1",
    }
    migrate, roles = compose_roles(base_env, tmp_path / "data")
    admin_env = {**base_env, "SCHEDULER_DATA_DIR": str(tmp_path / "data" / "admin")}

    def run_once(*argv: str) -> str:
        proc = processes.start(argv[0], [SCHEDULER, *argv], admin_env)
        assert proc.popen.wait(120) == 0, proc.log()
        return proc.log()

    # Given the database migrated by the compose file's migrate command, demo data and an admin key
    run_once(*migrate)
    run_once("demo", "seed", "--accounts", "60")
    key_output = run_once("keys", "create", "--name", "system-test", "--role", "admin", "--json")
    # The command's --json answer is indented; the JSON log lines around it (key created) are one line each
    token = json.loads(key_output[key_output.index("{\n"):key_output.rindex("\n}") + 2])["token"]
    auth = {"Authorization": f"Bearer {token}"}
    engine = fresh_engine

    # When every role starts with its compose command
    def start(role: Role) -> None:
        role.proc = processes.start(role.service, [SCHEDULER, *role.command], role.env)

    def ready(role: Role) -> bool:
        return get(role.port, "/metrics")[0] == 200

    for role in roles:
        start(role)
    wait_for(lambda: all(ready(r) for r in roles), "every process to serve /metrics", timeout=90,
             processes=processes, must_live=[r.proc for r in roles if r.proc])
    apis = [r for r in roles if r.kind == "api"]
    beats = [r for r in roles if r.kind == "beat"]
    pools = [r for r in roles if r.kind == "worker"]
    assert len(apis) == 2 and len(beats) == 2 and pools, [r.service for r in roles]

    # Then each process serves /metrics (a pool that has handled nothing yet has no sample to show) and /readyz
    for role in roles:
        status, body, _ = get(role.port, "/metrics")
        assert status == 200 and (role.kind == "worker" or "# TYPE" in body), (role.service, status)
    for role in roles:
        assert get(role.port, "/readyz")[0] == 200, role.service

    # When a run of every job type that has a pool is requested over the API, each with a request id
    queues = {q for pool in pools for q in pool_queues(pool.command)}
    jobs = rows(engine, "SELECT DISTINCT ON (job_type) id, job_type FROM job WHERE status = 'ACTIVE' "
                        "AND can_run_manual ORDER BY job_type, id")
    requested: dict[int, str] = {}

    def request_run(job_id: int, rid: str, api: Role) -> None:
        status, run, headers = post(api.port, "/api/v1/runs", {"job_id": job_id}, {**auth, "X-Request-Id": rid})
        assert status == 201 and headers["X-Request-Id"] == rid and run["request_id"] == rid
        requested[run["id"]] = rid

    for job in jobs:
        if job.job_type in queues:
            request_run(job.id, f"system-{job.job_type}", apis[0])
    assert requested, "no job type has a pool in the compose file"

    # and each role is stopped (SIGTERM) and started again while runs flow: in two waves, so that one API
    # replica and one beat serve throughout; the leading beat and the first API replica go first
    exits: dict[str, int] = {}
    takeovers: list[float] = []
    drained = None
    dunning = next(j.id for j in jobs if j.job_type == "dunning")
    leader = leader_of(engine, beats) or beats[0]
    standby = next(b for b in beats if b is not leader)
    waves = [[apis[0], leader, *pools[::2]], [apis[1], standby, *pools[1::2]]]
    for n, wave in enumerate(waves):
        request_run(dunning, f"restart-{n}", apis[1 - n])
        for role in wave:
            assert role.proc is not None
            if role is apis[0]:
                drained = stop_api_with_a_request_in_flight(engine, role, auth)
                exits[role.service] = 0
            elif role is leader_of(engine, beats):
                leader_id = (lease_holder(engine) or ("", 0))[0]
                stopped = time.monotonic()
                role.proc.popen.send_signal(signal.SIGTERM)
                wait_for(lambda old=leader_id: (lease_holder(engine) or (old, 0))[0] != old,
                         "a standby beat to take the lease", timeout=30, processes=processes, every=0.01)
                takeovers.append(time.monotonic() - stopped)
            else:
                role.proc.popen.send_signal(signal.SIGTERM)
        for role in wave:
            assert role.proc is not None
            exits.setdefault(role.service, role.proc.popen.wait(60))
            start(role)
        wait_for(lambda w=wave: all(ready(r) for r in w), f"wave {n + 1} to serve again", timeout=120,
                 processes=processes)
    assert all(code == 0 for code in exits.values()), exits

    # Then every run ends, each COMPLETED through one CREATED, none twice
    served = sorted(queues)  # job types whose queue has a pool (the queue is named after the type)
    wait_for(lambda: not rows(engine, f"SELECT id FROM job_run WHERE status NOT IN {TERMINAL} "
                                      "AND job_type = ANY(:served)", served=served),
             "every run to end", timeout=120, processes=processes)
    runs = rows(engine, "SELECT id, job_id, job_type, trigger, status, scheduled_for, request_id, error FROM job_run "
                        "WHERE job_type = ANY(:served)", served=served)
    assert set(requested) <= {r.id for r in runs}
    # The demo usage files carry bad lines on purpose (workers/billing/demo_usage.py): those runs end INCOMPLETE.
    planted = {"usage_mediation": ("INCOMPLETE",)}
    assert all(r.status in ("COMPLETED", "PREVIEW", *planted.get(r.job_type, ())) for r in runs), [
        (r.id, r.status, r.error) for r in runs]
    created = rows(engine, "SELECT run_id, COUNT(*) AS n FROM run_event WHERE from_status IS NULL GROUP BY run_id")
    assert all(c.n == 1 for c in created) and {c.run_id for c in created} >= {r.id for r in runs}
    ticks = [(r.job_id, r.scheduled_for) for r in runs if r.scheduled_for is not None]
    assert len(ticks) == len(set(ticks)), "a tick has two runs"
    assert {r.id: r.request_id for r in runs if r.id in requested} == requested
    # and every process logged JSON lines saying who it is; the worker's lines of a run carry its request id
    for role in roles:
        assert role.proc is not None
        for old in [p for p in processes.all if p.name == role.service]:
            for line in json_lines(old):
                assert {"timestamp", "level", "message", "service", "pid", "host", "version"} <= set(line), line
    worker_lines = [line for p in processes.all if p.name.startswith("worker") for line in json_lines(p)]
    for run in runs:
        if run.id in requested and run.job_type in queues:
            mine = [w for w in worker_lines if w.get("run_id") == run.id]
            assert mine and all(w["request_id"] == requested[run.id] for w in mine), run.id
            assert all(str(w["service"]).startswith("worker:") for w in mine)
    access = [line for p in processes.all if p.name.startswith("api") for line in json_lines(p)
              if line.get("logger") == "uvicorn.access" and line.get("path") == "/api/v1/runs"]
    assert {a["request_id"] for a in access} >= set(requested.values())
    assert takeovers, "no beat leader was stopped"
    figures.append(f"{len(roles)} processes from {COMPOSE.name}; {len(runs)} runs, all ended; every role "
                   f"stopped with SIGTERM exited 0; API with a request in flight: {drained}; beat take-over "
                   f"after a graceful stop of the leader: {', '.join(f'{t:.2f} s' for t in takeovers)}")


def pool_queues(command: list[str]) -> list[str]:
    """The queues a ``worker`` command names: the arguments after ``--queues`` up to the next option."""
    after = command[command.index("--queues") + 1:]
    return after[:next((i for i, arg in enumerate(after) if arg.startswith("-")), len(after))]


def leader_of(engine: Engine, beats: list[Role]) -> Role | None:
    """The beat role whose process holds the lease (beat ids name the pid)."""
    held = lease_holder(engine)
    if held is None:
        return None
    for role in beats:
        if role.proc is not None and role.proc.alive() and f"-{role.proc.pid}-" in held[0]:
            return role
    return None


def stop_api_with_a_request_in_flight(engine: Engine, api: Role, auth: dict[str, str]) -> str:
    """SIGTERM to an API replica while a request waits on a table lock: it answers, then the replica exits 0."""
    assert api.proc is not None
    answers: list[int] = []
    with engine.connect() as conn:
        tx = conn.begin()
        conn.execute(text("LOCK TABLE job IN ACCESS EXCLUSIVE MODE"))
        thread = threading.Thread(target=lambda: answers.append(get(api.port, "/api/v1/jobs", auth, 60)[0]))
        thread.start()
        wait_for(lambda: rows(engine, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                      "AND query LIKE '%FROM job%'"), "the request to wait on the lock", timeout=30)
        api.proc.popen.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the server stops listening but waits for the request in flight
        still_draining = api.proc.alive()
        tx.rollback()
    thread.join(60)
    code = api.proc.popen.wait(60)
    assert still_draining and answers == [200] and code == 0, (still_draining, answers, code, api.proc.log()[-3000:])
    return "answered 200, then exit 0"
