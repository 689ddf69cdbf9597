"""Migrations of both trees: the core's tables, then the billing tables of the installed job types."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from scheduler.db import check_database, make_engine
from scheduler.settings import Settings


def migrate_all(settings: Settings) -> None:
    """Apply the core's migrations, then the billing tables' migrations of the installed job types."""
    from scheduler.migrate import upgrade

    engine = make_engine(settings.resolved_database_url)
    check_database(engine)
    upgrade(engine)
    engine.dispose()
    from workers.billing import migrate_billing

    billing = make_engine(settings.resolved_billing_database_url)
    check_database(billing)
    migrate_billing(billing)
    billing.dispose()


def schema_gaps(settings: Settings) -> list[str]:
    """What keeps either tree from its head, one phrase each; empty when both are at head.

    ``scheduler migrate --check`` runs this before api, beat and workers start (an init container), so
    a release never runs on a schema it was not written for, older or newer.
    """
    from scheduler.migrate import CORE_MIGRATIONS
    from workers.billing import MIGRATIONS, VERSION_TABLE

    trees = [("core tables", settings.resolved_database_url, CORE_MIGRATIONS, "alembic_version"),
             ("billing tables", settings.resolved_billing_database_url, MIGRATIONS, VERSION_TABLE)]
    gaps = []
    for name, url, script_location, version_table in trees:
        engine = make_engine(url)
        try:
            check_database(engine)
            gap = _tree_gap(engine, script_location, version_table)
        finally:
            engine.dispose()
        if gap:
            gaps.append(f"{name} {gap}")
    return gaps


def _tree_gap(engine: Engine, script_location: Path, version_table: str) -> str | None:
    script = ScriptDirectory(str(script_location))
    heads = set(script.get_heads())
    # The check says one line: not Alembic's "Context impl …" lines for every tree it reads.
    alembic_log = logging.getLogger("alembic.runtime.migration")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection, opts={"version_table": version_table})
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
