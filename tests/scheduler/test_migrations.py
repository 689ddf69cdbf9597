"""The migrations build exactly the tables the code declares, on both databases (no drift either way)."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData
from sqlmodel import SQLModel

import scheduler.models  # noqa: F401  (registers the core tables on SQLModel.metadata)
from workers.billing import metadata as billing_metadata
from workers.billing import migrate_billing


def drift(engine: Engine, metadata: MetaData) -> list[Any]:
    """What autogenerate would write to bring the database to ``metadata`` (its own tables only)."""
    declared = set(metadata.tables)

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return type_ != "table" or name in declared

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include, "compare_type": True})
        return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("tree", ["core", "billing"])
def test_the_migrations_match_the_declared_tables(engine: Engine, tree: str) -> None:
    migrate_billing(engine)
    metadata = SQLModel.metadata if tree == "core" else billing_metadata
    assert drift(engine, metadata) == []


def test_the_core_tree_is_one_line_of_revisions() -> None:
    # Two branches landing a migration on the same parent would leave two heads: chain the later one after
    from alembic.script import ScriptDirectory

    from scheduler.migrate import CORE_MIGRATIONS

    assert len(ScriptDirectory(str(CORE_MIGRATIONS)).get_heads()) == 1
