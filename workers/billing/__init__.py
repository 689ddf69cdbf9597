"""Billing tables of the job types, with their own Alembic tree (version table ``billing_alembic_version``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from workers.billing.tables import (
    AccountStatus,
    InvoiceKind,
    InvoiceStatus,
    accounts,
    dunning_actions,
    invoices,
    metadata,
    payments,
)

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "billing_alembic_version"


def migrate_billing(engine: Engine) -> None:
    """Bring the billing tables to the newest revision."""
    from scheduler.migrate import upgrade

    upgrade(engine, script_location=MIGRATIONS, version_table=VERSION_TABLE)


__all__ = [
    "MIGRATIONS",
    "VERSION_TABLE",
    "AccountStatus",
    "InvoiceKind",
    "InvoiceStatus",
    "accounts",
    "dunning_actions",
    "invoices",
    "metadata",
    "migrate_billing",
    "payments",
]
