"""The billing ledger the job types read and write, with its own Alembic tree (``billing_alembic_version``).

Accounts, invoices, payments, dunning actions and the general ledger are shared by the job types; a table
only one type uses is that type's own, migrated by its own tree (``JobType.migrations``).
"""

from __future__ import annotations

from pathlib import Path

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

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
"""The ledger's Alembic revisions (``scheduler migrate`` applies them before any job type's own)."""
VERSION_TABLE = "billing_alembic_version"


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
    "payments",
]
