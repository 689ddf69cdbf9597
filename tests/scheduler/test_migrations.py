"""The migrations build exactly the tables the code declares, on both databases (no drift either way)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, func, select, text
from sqlmodel import SQLModel

import scheduler.models  # noqa: F401  (registers the core tables on SQLModel.metadata)
import workers.billing.gl_tables  # noqa: F401  (registers the general ledger on the billing metadata)
from cli.migrations import billing_trees, migrate_billing_database
from scheduler.jobtypes import load_registry
from scheduler.migrate import CORE_TREE, tree_gap
from scheduler.settings import Settings
from workers.billing import metadata as billing_metadata
from workers.erp.tables import erp_deliveries
from workers.erp.tables import metadata as erp_metadata
from workers.gl.tables import metadata as gl_metadata
from workers.mediation.tables import metadata as mediation_metadata

DECLARED = {"core": SQLModel.metadata, "billing": billing_metadata, "erp_transfer": erp_metadata,
            "gl_collector": gl_metadata, "usage_mediation": mediation_metadata}


def drift(engine: Engine, metadata: MetaData) -> list[Any]:
    """What autogenerate would write to bring the database to ``metadata`` (its own tables only)."""
    declared = set(metadata.tables)

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return type_ != "table" or name in declared

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include, "compare_type": True})
        return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("tree", list(DECLARED))
def test_the_migrations_match_the_declared_tables(engine: Engine, tree: str) -> None:
    migrate_billing_database(engine, load_registry(Settings()).all())
    assert drift(engine, DECLARED[tree]) == []


def test_a_database_from_before_the_types_had_their_own_trees_upgrades_in_place(engine: Engine) -> None:
    # Given a database at the previous release's head: the billing tree had made every type's tables (with the
    # statements the types' own trees now run), and no type's tree was recorded
    job_types = load_registry(Settings()).all()
    migrate_billing_database(engine, job_types)
    type_trees = billing_trees(job_types)[1:]
    assert {tree.name for tree in type_trees} == {"erp_transfer tables", "gl_collector tables",
                                                  "usage_mediation tables"}
    with engine.begin() as conn:
        for tree in type_trees:
            conn.execute(text(f"DROP TABLE {tree.version_table}"))
        conn.execute(erp_deliveries.insert().values(target_key="t" * 64, dataset="invoices", record_id=1, run_id=1,
                                                    batch_no=1, delivered_at=datetime(2026, 12, 1, tzinfo=UTC)))
    # When this release migrates it
    migrate_billing_database(engine, job_types)
    # Then every tree is at its head, the tables are as declared and their rows are kept
    assert [tree_gap(engine, tree) for tree in billing_trees(job_types)] == [None] * 4
    assert all(drift(engine, metadata) == [] for metadata in DECLARED.values())
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(erp_deliveries)).scalar_one() == 1


def test_the_core_tree_is_one_line_of_revisions() -> None:
    # Two branches landing a migration on the same parent would leave two heads: chain the later one after
    assert len(CORE_TREE.script().get_heads()) == 1
