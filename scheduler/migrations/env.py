"""Alembic environment for the core tables; run by ``scheduler migrate`` through scheduler.migrate."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import scheduler.models  # noqa: F401  (registers the tables)

config = context.config
target_metadata = SQLModel.metadata
connection = config.attributes.get("connection")


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # Billing tables have their own migrations.
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
