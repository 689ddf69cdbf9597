"""``scheduler migrate --check``: what the pods' init containers run before api, beat and workers start."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from workers.billing import MIGRATIONS, VERSION_TABLE

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def scheduler(tmp_path: Path) -> Run:
    env = {**os.environ, "SCHEDULER_DATA_DIR": str(tmp_path / "data"),
           "SCHEDULER_DATABASE_URL": f"sqlite:///{tmp_path / 'scheduler.db'}"}
    env.pop("SCHEDULER_BILLING_DATABASE_URL", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True,
                              timeout=90, check=False)

    return run


def test_check_fails_before_migrate_and_passes_after(scheduler: Run) -> None:
    # Given a database nobody has migrated
    before = scheduler("migrate", "--check")
    # Then the check fails in one line naming both trees, and changes nothing
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
    head = max(ScriptDirectory(str(MIGRATIONS)).get_heads())
    parent = ScriptDirectory(str(MIGRATIONS)).get_revision(head).down_revision
    with sqlite3.connect(tmp_path / "scheduler.db") as db:
        db.execute(f"UPDATE {VERSION_TABLE} SET version_num = ? WHERE version_num = ?", (parent, head))
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
