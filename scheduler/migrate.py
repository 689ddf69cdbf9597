"""Alembic migration trees: the core's, the billing ledger's, and one per job type that brings its own tables.

Every tree runs through the core's Alembic environment (``scheduler/migrations/env.py``) with its own
revisions folder and its own version table, so a tree is only data: :class:`MigrationTree`. A job type
names its revisions folder as ``JobType.migrations``; its tree keeps its state in ``<name>_alembic_version``
and is applied only where the type is installed, so an uninstalled type's tables are left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from scheduler.jobtypes import JobType

CORE_MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True, kw_only=True)
class MigrationTree:
    """One line of schema history: where its revisions are and which table records how far a database is."""

    name: str
    """What ``scheduler migrate --check`` calls it: ``core tables``, ``billing tables``, ``dunning tables``."""
    versions: Path
    """The folder of its revision files."""
    version_table: str
    """The table that holds the revisions a database is at."""

    def script(self) -> ScriptDirectory:
        return ScriptDirectory(str(CORE_MIGRATIONS), version_locations=[str(self.versions)])


CORE_TREE = MigrationTree(name="core tables", versions=CORE_MIGRATIONS / "versions", version_table="alembic_version")


def job_type_tree(job_type: JobType) -> MigrationTree | None:
    """The job type's own tree, or None when it keeps no tables of its own."""
    if job_type.migrations is None:
        return None
    return MigrationTree(name=f"{job_type.name} tables", versions=job_type.migrations,
                         version_table=f"{job_type.name}_alembic_version")


def alembic_config(engine: Engine, tree: MigrationTree = CORE_TREE) -> Config:
    config = Config()
    config.set_main_option("script_location", str(CORE_MIGRATIONS))
    config.set_main_option("path_separator", "os")  # a folder's path may hold spaces or commas
    config.set_main_option("version_locations", str(tree.versions))
    config.set_main_option("version_table", tree.version_table)
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, tree: MigrationTree = CORE_TREE) -> None:
    """Bring the database to the newest revision of every branch of the tree."""
    config = alembic_config(engine, tree)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")


def tree_gap(engine: Engine, tree: MigrationTree) -> str | None:
    """What keeps the database from the tree's heads, in a phrase; None when it is at them."""
    script = tree.script()
    heads = set(script.get_heads())
    # The check says one line: not Alembic's "Context impl …" lines for every tree it reads.
    alembic_log = logging.getLogger("alembic.runtime.migration")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection, opts={"version_table": tree.version_table})
                          .get_current_heads())
    finally:
        alembic_log.setLevel(level)
    if current == heads:
        return None
    if not current:
        return f"not migrated (head {', '.join(sorted(heads))})"
    known = {rev.revision for rev in script.walk_revisions()}
    state = "newer than this release" if current - known else "behind"
    return f"at {', '.join(sorted(current))}, {state} (head {', '.join(sorted(heads))})"


def revision(engine: Engine, message: str, tree: MigrationTree = CORE_TREE) -> None:
    """Autogenerate a core revision (a developer tool: ``python -m scheduler.migrate "message"``)."""
    config = alembic_config(engine, tree)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)


if __name__ == "__main__":
    import sys
    import tempfile

    from scheduler.db import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        eng = make_engine(f"sqlite:///{tmp}/gen.db")
        upgrade(eng)
        revision(eng, sys.argv[1] if len(sys.argv) > 1 else "change")
