"""The `scheduler` command: scripts get JSON, people get one clear line on an error and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.main import main

LADDER = [{"code": 1, "name": "Reminder", "min_days_past_due": 1, "actions": ["notice"]}]
JOB = {"name": "Nightly dunning", "job_type": "dunning", "cron": "30 1 * * *", "timezone": "America/New_York",
       "properties": {"tiers": LADDER}}


@pytest.fixture
def cli(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("SCHEDULER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SCHEDULER_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("SCHEDULER_REDIS_URL", redis_url)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    assert run("migrate")[0] == 0
    return run


def test_jobs_and_runs_round_trip_as_json(cli: Any) -> None:
    code, out, _ = cli("--json", "jobs", "create", json.dumps(JOB))
    assert code == 0
    job = json.loads(out)
    assert job["name"] == "Nightly dunning" and job["schedule_description"].startswith("At 01:30")

    code, out, _ = cli("jobs", "list", "--json")
    assert [j["id"] for j in json.loads(out)] == [job["id"]]

    code, out, _ = cli("jobs", "next-fires", str(job["id"]), "--count", "3", "--json")
    fires = json.loads(out)["fires"]
    assert len(fires) == 3 and all(f["local"].endswith(("-05:00", "-04:00")) for f in fires)

    code, out, _ = cli("runs", "create", "--job", str(job["id"]), "--preview", "--json")
    assert code == 0 and json.loads(out)["status"] == "CREATED"
    code, out, _ = cli("runs", "list", "--json")
    assert [r["trigger"] for r in json.loads(out)] == ["MANUAL"]

    code, out, _ = cli("jobs", "pause", str(job["id"]))
    assert code == 0 and out.strip() == f"job {job['id']} is PAUSED"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "create", json.dumps({**JOB, "cron": "61 * * * *"})], "minute value 61 out of range 0-59"),
        (["jobs", "create", json.dumps({**JOB, "timezone": "Mars/Olympus"})], "unknown time zone 'Mars/Olympus'"),
        (["jobs", "create", "{not json"], "the job definition is not valid JSON"),
        (["jobs", "show", "999"], "job 999 does not exist"),
        (["runs", "cancel", "999"], "run 999 does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(cli: Any, args: list[str], message: str) -> None:
    code, out, err = cli(*args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_a_paused_job_refuses_a_manual_run(cli: Any) -> None:
    job = json.loads(cli("--json", "jobs", "create", json.dumps({**JOB, "status": "PAUSED"}))[1])
    code, _, err = cli("runs", "create", "--job", str(job["id"]))
    assert code == 2 and "the job is PAUSED" in err


def test_unreachable_database_names_the_setting(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    code, _, err = cli("jobs", "list")
    assert code == 2 and "SCHEDULER_DATABASE_URL" in err and err.count("\n") == 1


def test_api_keys_are_shown_once(cli: Any) -> None:
    code, out, _ = cli("--json", "keys", "create", "--name", "ops", "--role", "admin")
    created = json.loads(out)
    assert code == 0 and created["token"] and created["role"] == "admin"
    listed = json.loads(cli("--json", "keys", "list")[1])
    assert "token" not in json.dumps(listed) and created["token"] not in json.dumps(listed)


def test_keys_have_unique_names_record_the_cli_and_revoking_ends_page_sessions(cli: Any, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from scheduler import sessions
    from scheduler.db import make_engine, make_session_factory
    from scheduler.models import ApiKey
    from scheduler.settings import Settings

    # Given a key made on the command line, with a page session open
    created = json.loads(cli("--json", "keys", "create", "--name", "ops", "--role", "operator")[1])
    factory = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'cli.db'}"))
    with factory() as session:
        key = session.get(ApiKey, created["id"])
        assert key is not None and key.created_by == "cli"
        sessions.start(session, key, now=datetime.now(UTC), settings=Settings())
    # A second key of the same name is refused in one line
    code, _, err = cli("keys", "create", "--name", "ops", "--role", "admin")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and errors == ["error: an API key named 'ops' already exists; key names are unique"]
    # When it is revoked, its page session ends with it
    code, out, _ = cli("keys", "revoke", str(created["id"]))
    assert code == 0 and out == f"key {created['id']} (ops) revoked; 1 page session(s) ended\n"
    listed = cli("keys", "list")[1]
    header, _, row = listed.splitlines()
    assert header.split() == ["ID", "ROLE", "STATE", "CREATED", "(UTC)", "CREATED", "BY", "NAME"]
    assert row.split()[2] == "revoked" and row.split()[5:] == ["cli", "ops"]
    with factory() as session:
        key = session.get(ApiKey, created["id"])
        assert key is not None and key.revoked_by == "cli"
