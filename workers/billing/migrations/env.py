"""Alembic environment for the billing tables; run through ``workers.billing.migrate_billing``."""

from __future__ import annotations

from alembic import context

from workers.billing.tables import metadata

config = context.config
connection = config.attributes.get("connection")
target_metadata = metadata


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # The core's tables live in the same database with their own migrations.
    return not (type_ == "table" and reflected and compare_to is None)


def run() -> None:
    if connection is None:
        raise RuntimeError("run billing migrations through workers.billing.migrate_billing")
    context.configure(
        version_table=config.get_main_option("version_table") or "billing_alembic_version",
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=include_object,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
