"""No absolute server path in what a viewer reads: run details, items, errors, audit notes, job properties, CSV.

Real failures of real job types: an ERP file target that cannot be written (the operating system names
the file with its absolute path), one that leads out of the files root through a link, and usage
mediation reading through a link that leads out of the root.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from erp_testkit import Ledger, make_job, seed_ledger, start_manual
from sqlalchemy import Engine
from workers_testkit import Drain, RecordingDispatcher

from scheduler import auth
from scheduler.api.app import create_app
from scheduler.api.server_paths import ServerPaths
from scheduler.clock import FrozenClock
from scheduler.jobtypes import JobTypeRegistry
from scheduler.settings import Settings
from workers.erp import JOB_TYPE
from workers.runtime.env import WorkerEnv

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

MAY = {"date_from": "2026-05-01", "date_to": "2026-05-31"}


@pytest.fixture
def registry() -> JobTypeRegistry:
    return JobTypeRegistry([JOB_TYPE])


@pytest.fixture
def ledger(billing_engine: Engine) -> Ledger:
    return seed_ledger(billing_engine)


@pytest.fixture
def viewer(
    env: WorkerEnv, worker_settings: Settings, clock: FrozenClock, dispatcher: RecordingDispatcher,
) -> TestClient:
    with env.factory() as session:
        _, token = auth.create_key(session, "reader", "viewer", actor="test")
    app = create_app(worker_settings, engine=env.engine, registry=env.registry, dispatcher=dispatcher, clock=clock)
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def everything_a_viewer_reads(viewer: TestClient, run_id: int, job_id: int) -> str:
    answers = [viewer.get(f"/api/v1/runs/{run_id}"), viewer.get(f"/api/v1/runs/{run_id}/items"),
               viewer.get("/api/v1/runs"), viewer.get("/api/v1/runs", params={"format": "csv"}),
               viewer.get(f"/api/v1/jobs/{job_id}"), viewer.get("/api/v1/jobs")]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return "\n".join(a.text for a in answers)


def absolute_paths(text: str, *roots: Path) -> list[str]:
    return [str(root) for root in roots if str(root) in text or str(root.resolve()) in text]


def test_an_unwritable_target_is_reported_relative_to_the_files_root(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain, viewer: TestClient, tmp_path: Path,
) -> None:
    # Given a file where the ERP job's target directory should be
    root = env.settings.resolved_files_root
    (root / "erp").mkdir(parents=True)
    (root / "erp" / "outbox").write_text("not a directory")
    job = make_job(env, clock, target={"kind": "file", "directory": "erp/outbox"})
    run_id = start_manual(env, clock, job, **MAY)
    drain()
    # When a viewer reads the run, its items, the lists, the export and the job
    text = everything_a_viewer_reads(viewer, run_id, job.id or 0)
    # Then the failure names the file relative to the files root, and no absolute server path shows
    assert "cannot write invoices-1-1.json: file exists: erp/outbox" in text, text
    assert absolute_paths(text, root, tmp_path, env.settings.data_dir) == []


def test_a_target_leading_out_of_the_root_names_no_server_path(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain, viewer: TestClient, tmp_path: Path,
) -> None:
    outside = tmp_path / "elsewhere" / "secret-place"
    outside.mkdir(parents=True)
    root = env.settings.resolved_files_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "erp").symlink_to(outside, target_is_directory=True)
    job = make_job(env, clock, target={"kind": "file", "directory": "erp/outbox"})
    run_id = start_manual(env, clock, job, **MAY)
    drain()
    text = everything_a_viewer_reads(viewer, run_id, job.id or 0)
    assert "outside the files root" in text
    assert absolute_paths(text, root, tmp_path, outside) == [] and "secret-place" not in text


def test_server_paths_become_relative_or_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    paths = ServerPaths(Settings(data_dir=data, files_root=data / "files"))
    root = str((data / "files").resolve())
    assert paths.scrub(f"[Errno 2] No such file or directory: '{root}/usage/a.csv'") == \
        "[Errno 2] No such file or directory: 'usage/a.csv'"
    assert paths.scrub(f"files root is {root}") == "files root is <files root>"
    assert paths.scrub(f"{root}2/x and sqlite:///{data.resolve()}/scheduler.db") == \
        "<data dir>/files2/x and sqlite:///<data dir>/scheduler.db"
    assert paths.scrub(f"https://erp.example.com{root}/batches") == f"https://erp.example.com{root}/batches"
