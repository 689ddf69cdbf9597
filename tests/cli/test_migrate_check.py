"""``scheduler migrate --check``: what the pods' init containers run before api, beat and workers start."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cli.migrations import BILLING_TREE as TREE

Run = Callable[..., subprocess.CompletedProcess[str]]


TEST_TYPES = [str(Path(__file__).parent), str(Path(__file__).parents[1] / "beat")]
PLUGIN = {"SCHEDULER_EXTRA_JOB_TYPES": json.dumps(["loyalty_type:JOB_TYPE"]),
          "PYTHONPATH": os.pathsep.join(filter(None, [*TEST_TYPES, os.environ.get("PYTHONPATH")]))}
"""The test's plug-in job type (``loyalty_type``, one table of its own in two revisions) installed."""


@pytest.fixture
def scheduler(tmp_path: Path) -> Run:
    env = {**os.environ, "SCHEDULER_DATA_DIR": str(tmp_path / "data"),
           "SCHEDULER_DATABASE_URL": f"sqlite:///{tmp_path / 'scheduler.db'}"}
    env.pop("SCHEDULER_BILLING_DATABASE_URL", None)
    env.pop("SCHEDULER_EXTRA_JOB_TYPES", None)

    def run(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli", *args], env={**env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=90, check=False)

    return run


def test_check_fails_before_migrate_and_passes_after(scheduler: Run) -> None:
    # Given a database nobody has migrated
    before = scheduler("migrate", "--check")
    # Then the check fails in one line naming the core and billing trees, and changes nothing
    assert before.returncode == 1
    lines = before.stderr.strip().splitlines()
    assert len(lines) == 1, before.stderr
    assert lines[0].startswith("database is not at head: core tables not migrated")
    assert "billing tables not migrated" in lines[0] and lines[0].endswith("run `scheduler migrate`")
    assert scheduler("migrate", "--check").returncode == 1

    # When the release's migrations run, the check passes
    assert scheduler("migrate").returncode == 0
    after = scheduler("migrate", "--check")
    assert (after.returncode, after.stdout.strip()) == (0, "database is up to date"), after.stderr


def test_check_fails_when_a_tree_is_behind(scheduler: Run, tmp_path: Path) -> None:
    # Given a database whose billing tree has one branch a revision short of its head (a release that
    # adds a revision, before its migration ran)
    assert scheduler("migrate").returncode == 0
    head = max(TREE.script().get_heads())
    parent = TREE.script().get_revision(head).down_revision
    with sqlite3.connect(tmp_path / "scheduler.db") as db:
        db.execute(f"UPDATE {TREE.version_table} SET version_num = ? WHERE version_num = ?", (parent, head))
    # Then the check fails naming the billing tree only
    behind = scheduler("migrate", "--check")
    assert behind.returncode == 1
    assert "core tables" not in behind.stderr
    assert "billing tables at " in behind.stderr and ", behind (head " in behind.stderr


def test_check_fails_on_a_schema_newer_than_the_release(scheduler: Run, tmp_path: Path) -> None:
    # Given core tables a newer release has migrated (a revision this release does not know)
    assert scheduler("migrate").returncode == 0
    with sqlite3.connect(tmp_path / "scheduler.db") as db:
        db.execute("DELETE FROM alembic_version")
        db.execute("INSERT INTO alembic_version (version_num) VALUES ('f00dfeedbeef')")
    # Then this release's pods do not start on them
    ahead = scheduler("migrate", "--check")
    assert ahead.returncode == 1
    assert "core tables at f00dfeedbeef, newer than this release" in ahead.stderr


def test_each_job_type_brings_its_own_tables(scheduler: Run, tmp_path: Path) -> None:
    # Given the built-in types' tables, each made by its type's own tree
    assert scheduler("migrate").returncode == 0
    with sqlite3.connect(tmp_path / "scheduler.db") as db:
        versions = {t: db.execute(f"SELECT version_num FROM {t}").fetchall() for t in
                    ("erp_transfer_alembic_version", "gl_collector_alembic_version", "usage_mediation_alembic_version")}
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert all(len(rows) == 1 for rows in versions.values()), versions
    assert {"erp_deliveries", "gl_staged", "usage_files", "usage_events", "usage_daily", "usage_rejects"} <= tables

    # When a plug-in type with a table of its own is installed, the check names its tree until it is migrated
    before = scheduler("migrate", "--check", extra_env=PLUGIN)
    assert before.returncode == 1
    assert "loyalty tables not migrated (head 8b4e6f1a0c92)" in before.stderr
    assert "core tables" not in before.stderr and "billing tables" not in before.stderr
    # and `scheduler migrate` makes its table
    assert scheduler("migrate", extra_env=PLUGIN).returncode == 0
    with sqlite3.connect(tmp_path / "scheduler.db") as db:
        db.execute("INSERT INTO loyalty_points (account_id, points, expires_on) VALUES (7, 120, '2027-01-31')")
    assert scheduler("migrate", "--check", extra_env=PLUGIN).returncode == 0

    # When its tree is a revision behind (a release of the type that adds one), the check names it alone
    with sqlite3.connect(tmp_path / "scheduler.db") as db:
        db.execute("UPDATE loyalty_alembic_version SET version_num = '1d0c2a7e5f31'")
    behind = scheduler("migrate", "--check", extra_env=PLUGIN)
    assert behind.returncode == 1
    assert behind.stderr.startswith(
        "database is not at head: loyalty tables at 1d0c2a7e5f31, behind (head 8b4e6f1a0c92); run"), behind.stderr

    # When the type is uninstalled, its tables are left alone: not checked, not changed
    assert scheduler("migrate", "--check").returncode == 0
    assert scheduler("migrate").returncode == 0
    with sqlite3.connect(tmp_path / "scheduler.db") as db:
        assert db.execute("SELECT account_id, points FROM loyalty_points").fetchall() == [(7, 120)]
        assert db.execute("SELECT version_num FROM loyalty_alembic_version").fetchall() == [("1d0c2a7e5f31",)]
