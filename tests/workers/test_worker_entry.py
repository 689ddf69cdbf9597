"""``scheduler worker``: the dramatiq command line, the queues, and the settings handed to the workers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from scheduler.errors import InvalidInput
from scheduler.settings import Settings
from workers.runtime.worker import settings_env, worker_command, worker_queues


def test_worker_command_runs_dramatiq_on_the_actors_module_with_our_logging_and_shutdown_timeout() -> None:
    assert worker_command(["dunning"], processes=2, threads=4, shutdown_seconds=25) == [
        sys.executable, "-m", "workers.runtime.pool", "workers.runtime.actors", "--skip-logging",
        "--processes", "2", "--threads", "4", "--worker-shutdown-timeout", "25000", "--queues", "dunning",
    ]


def test_queues_default_to_every_job_type_and_the_scheduler_queue(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    queues = worker_queues(settings, None)
    assert "dunning" in queues and queues[-1] == "scheduler"
    assert worker_queues(settings, ["dunning", "dunning"]) == ["dunning"]
    with pytest.raises(InvalidInput, match="unknown queue"):
        worker_queues(settings, ["dunnig"])


def test_worker_processes_get_the_same_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/3", chunk_size=500,
                        extra_job_types=["pkg.mod:JOB"])
    env = settings_env(settings, base={"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert env["SCHEDULER_REDIS_URL"] == "redis://127.0.0.1:6379/3"
    assert env["SCHEDULER_CHUNK_SIZE"] == "500"
    assert env["SCHEDULER_DATABASE_URL"] == settings.resolved_database_url
    assert json.loads(env["SCHEDULER_EXTRA_JOB_TYPES"]) == ["pkg.mod:JOB"]


def test_settings_round_trip_through_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(data_dir=tmp_path, chunk_size=250, run_heartbeat_timeout=12.5)
    for key, value in settings_env(settings, base={}).items():
        monkeypatch.setenv(key, value)
    rebuilt = Settings()
    assert (rebuilt.chunk_size, rebuilt.run_heartbeat_timeout) == (250, 12.5)
    assert rebuilt.resolved_database_url == settings.resolved_database_url
