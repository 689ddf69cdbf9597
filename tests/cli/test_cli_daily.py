"""The `scheduler` command as an engineer uses it, each call its own process: on the embedded database next to a
real worker pool, from a subdirectory, through pipes, with bad values, waiting for and following runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # thirty-odd processes on a busy machine

SCHEDULER = [sys.executable, "-m", "cli"]
LADDER = [{"code": 1, "name": "Reminder", "min_days_past_due": 1, "actions": ["notice"]}]
DUNNING = {"name": "Daily dunning", "job_type": "dunning", "cron": "0 2 * * *", "properties": {"tiers": LADDER}}
GL = {"name": "Nightly GL", "job_type": "gl_collector", "cron": "0 3 * * *", "properties": {}}
HANG_GUARD = 25  # seconds; the embedded database's lock wait is 30 s, so a lock error could not hide under it


class Cli:
    """Runs `scheduler …` in ``cwd`` with only the Redis setting (the database is found, not named)."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env

    def __call__(self, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SCHEDULER, *args], cwd=cwd or self.cwd, env={**self.env, **env},
                              capture_output=True, text=True, timeout=HANG_GUARD)

    def json(self, *args: str) -> object:
        done = self("--json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture
def laptop(tmp_path: Path, redis_url: str) -> Iterator[Cli]:
    """A `scheduler up`-style data directory with demo billing data, a dunning pool working on it, and a shell
    in a subdirectory two levels down."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    data = tmp_path / ".scheduler"
    database = {"SCHEDULER_DATABASE_URL": f"sqlite:///{data / 'scheduler.db'}",
                "SCHEDULER_FILES_ROOT": str(data / "files"), "SCHEDULER_REDIS_URL": redis_url}
    data.mkdir()
    for args in (["migrate"], ["demo", "seed", "--accounts", "40", "--no-jobs"]):
        subprocess.run([*SCHEDULER, *args], cwd=tmp_path, env={**base, **database}, check=True, timeout=120,
                       capture_output=True)
    pool = subprocess.Popen([*SCHEDULER, "worker", "--queues", "dunning", "--processes", "1", "--threads", "1"],
                            cwd=tmp_path, env={**base, **database}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    shell = tmp_path / "work" / "deeper"
    shell.mkdir(parents=True)
    try:
        yield Cli(shell, {**base, "SCHEDULER_REDIS_URL": redis_url})
    finally:
        os.killpg(pool.pid, signal.SIGTERM)
        try:
            pool.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(pool.pid, signal.SIGKILL)


def test_a_day_on_the_command_line(laptop: Cli) -> None:
    cli = laptop
    # From a subdirectory the embedded database is found; lists are tables with headers
    dunning = cli.json("jobs", "create", json.dumps(DUNNING))
    gl = cli.json("jobs", "create", json.dumps(GL))
    assert isinstance(dunning, dict) and isinstance(gl, dict)
    listed = cli("jobs", "list")
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].split() == [
        "ID", "STATUS", "TYPE", "SCHEDULE", "NEXT", "FIRE", "(UTC)", "NAME"]
    assert "Daily dunning" in listed.stdout
    shown = cli("jobs", "show", str(dunning["id"]))
    assert shown.stdout.startswith(f"Job {dunning['id']}: Daily dunning\n")
    assert "  Schedule" in shown.stdout and "0 2 * * *" in shown.stdout and '"min_days_past_due": 1' in shown.stdout

    # A preview run, waited for with a progress bar, stops at PREVIEW (exit 0)
    created = cli("runs", "create", "--job", str(dunning["id"]), "--preview", "--wait", "--timeout", "20")
    assert created.returncode == 0, created.stderr
    run_id = int(created.stdout.split()[1])
    assert created.stdout.strip() == f"run {run_id} is PREVIEW"
    assert "[" + "#" * 30 + "]" in created.stderr and " records" in created.stderr

    # Submitting it (Redis configured: the apply steps are sent) neither hangs nor meets a locked database
    submitted = cli("runs", "submit", str(run_id))
    assert submitted.returncode == 0 and submitted.stdout.strip() == f"run {run_id} is SUBMITTED", submitted.stderr
    followed = cli("runs", "follow", str(run_id), "--timeout", "20")
    assert followed.returncode == 0 and followed.stdout.strip() == f"run {run_id} is COMPLETED", followed.stderr

    # A run nobody works on (no GL pool): waiting gives up with 124; cancelled, following it exits 1
    waiting = cli("runs", "create", "--job", str(gl["id"]), "--wait", "--timeout", "1")
    assert waiting.returncode == 124 and "is still CREATED after 1 s" in waiting.stderr
    stuck = int(waiting.stderr.split()[1])
    assert cli("runs", "cancel", str(stuck)).returncode == 0
    cancelled = cli("runs", "follow", str(stuck))
    assert cancelled.returncode == 1 and cancelled.stdout.strip() == f"run {stuck} is CANCELLED"

    # Option values in any case; a wrong one is one line and exit 2
    done = cli("runs", "list", "--status", "completed")
    assert done.returncode == 0 and done.stdout.splitlines()[0].startswith("ID  STATUS")
    assert [line.split()[1] for line in done.stdout.splitlines()[2:]] == ["COMPLETED"]
    assert done.stdout.splitlines()[0].endswith("OUTCOME") and "applied" in done.stdout.splitlines()[2]
    assert "  Outcome " in cli("runs", "show", str(run_id)).stdout
    assert [r["status"] for r in cli.json("runs", "list", "--status", "cancelled,Completed")] == [
        "CANCELLED", "COMPLETED"]
    assert "'BOGUS' is not one of CREATED" in one_line_error(cli("runs", "list", "--status", "BOGUS"))
    assert "--limit: 0 is not a positive number" in one_line_error(cli("runs", "list", "--limit", "0"))
    assert "'x' is not a whole number" in one_line_error(cli("runs", "show", "x"))
    assert "'nope' is not one of planned, ok" in one_line_error(cli("runs", "items", "1", "--outcome", "nope"))
    assert cli.json("runs", "items", str(run_id), "--outcome", "OK") != []
    assert "run 999 does not exist" in one_line_error(cli("runs", "follow", "999"))

    # Pipes close quietly
    piped = subprocess.run(f"{' '.join(SCHEDULER)} runs items {run_id} --limit 1000 | head -1", shell=True,
                           cwd=cli.cwd, env=cli.env, capture_output=True, text=True, timeout=HANG_GUARD)
    assert piped.stdout.startswith("KEY ") and piped.stderr == ""


def test_job_types_and_their_fields_need_no_database(tmp_path: Path) -> None:
    cli = Cli(tmp_path, {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")})
    types = cli("job-types")
    assert types.stdout.splitlines()[0].split()[:3] == ["NAME", "LABEL", "QUEUE"] and "dunning" in types.stdout
    fields = cli("job-types", "dunning")
    assert "tiers[].min_days_past_due" in fields.stdout and "Run properties" in fields.stdout
    assert "installed types: dunning" in one_line_error(cli("job-types", "nope"))
    assert {t["name"] for t in cli.json("job-types")} >= {"dunning", "gl_collector"}
    assert list(tmp_path.iterdir()) == []


def test_away_from_any_data_directory_one_line_says_how_to_point_to_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    for args in (["runs", "list"], ["jobs", "show", "1"], ["keys", "list"]):
        done = subprocess.run([*SCHEDULER, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert "set SCHEDULER_DATA_DIR to its data directory" in one_line_error(done)
    assert list(tmp_path.iterdir()) == []  # nothing created here


def test_scheduler_up_checks_its_port_before_anything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*SCHEDULER, "up", "--demo", "--port", str(port)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(done)
    assert list(tmp_path.iterdir()) == []  # no data directory, no database, no demo data

