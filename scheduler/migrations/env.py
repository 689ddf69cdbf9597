"""The Alembic environment of every migration tree (core, billing ledger, job types), run by scheduler.migrate.

A tree is its revisions folder (``version_locations``) and its version table; autogenerate compares with the
core's tables unless the caller hands another ``MetaData`` as ``config.attributes["metadata"]``.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import scheduler.models  # noqa: F401  (registers the tables)

config = context.config
target_metadata = config.attributes.get("metadata", SQLModel.metadata)
connection = config.attributes.get("connection")


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # Tables of the other trees, in the same database, are theirs to migrate.
    return not (type_ == "table" and reflected and compare_to is None)


def run() -> None:
    if connection is None:
        raise RuntimeError("run migrations through `scheduler migrate`")
    context.configure(
        version_table=config.get_main_option("version_table") or "alembic_version",
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=include_object,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
