"""The billing ledger the job types read and write, with its own Alembic tree (``billing_alembic_version``).

Accounts, invoices, payments, dunning actions and the general ledger are shared by the job types; a table
only one type uses is that type's own, migrated by its own tree (``JobType.migrations``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from scheduler.migrate import MigrationTree, upgrade
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

TREE = MigrationTree(name="billing tables", versions=Path(__file__).parent / "migrations" / "versions",
                     version_table="billing_alembic_version")


def migrate_billing(engine: Engine) -> None:
    """Bring the billing ledger's tables to the newest revision."""
    upgrade(engine, TREE)


__all__ = [
    "TREE",
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
