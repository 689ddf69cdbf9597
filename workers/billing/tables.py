"""The billing tables the job types work on, on their own ``MetaData`` (the core's is SQLModel's).

Money is ``Numeric(18, 2)`` read as ``Decimal``; instants are aware UTC; due dates are plain dates.
"""

from __future__ import annotations

import enum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    UniqueConstraint,
    false,
    text,
)

from scheduler.jobkit import UTCDateTime

metadata = MetaData()

Money = Numeric(18, 2)


class AccountStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    """In good standing (or in dunning, but not suspended)."""
    SUSPENDED = "SUSPENDED"
    """Service suspended by dunning; reinstated when paid up."""
    CLOSED = "CLOSED"
    """Closed; never evaluated."""


class InvoiceStatus(enum.StrEnum):
    OPEN = "OPEN"
    """Has a balance to pay (possibly zero after credits)."""
    PAID = "PAID"
    """Paid in full."""
    VOID = "VOID"
    """Cancelled."""
    WRITTEN_OFF = "WRITTEN_OFF"
    """Balance written off by dunning; the amount is on the account's dunning action."""


class InvoiceKind(enum.StrEnum):
    INVOICE = "INVOICE"
    """A regular bill."""
    LATE_FEE = "LATE_FEE"
    """A late fee posted by dunning."""


accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_number", String(32), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("category", String(32), nullable=False, server_default="RESIDENTIAL"),
    Column("status", String(16), nullable=False, server_default=AccountStatus.ACTIVE.value),
    Column("dunning_tier", Integer, nullable=False, server_default=text("0")),
    Column("email", String(200), nullable=True),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Index("ix_accounts_category", "category"),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("number", String(40), nullable=False, unique=True),
    Column("issued_on", Date, nullable=False),
    Column("due_on", Date, nullable=False),
    Column("amount", Money, nullable=False),
    Column("balance", Money, nullable=False),
    Column("status", String(16), nullable=False, server_default=InvoiceStatus.OPEN.value),
    Column("disputed", Boolean, nullable=False, server_default=false()),
    Column("kind", String(16), nullable=False, server_default=InvoiceKind.INVOICE.value),
    # The billing platform's bill cycle run that issued the invoice (none for late fees and one-off charges).
    Column("bill_cycle_run_id", BigInteger, nullable=True),
    # Dunning reads an account's open invoices by due date.
    Index("ix_invoices_account_status_due", "account_id", "status", "due_on"),
    # The ERP transfer takes one bill cycle run's invoices (and the payments against them).
    Index("ix_invoices_bill_cycle_run", "bill_cycle_run_id"),
)

payments = Table(
    "payments",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("invoice_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("invoices.id"), nullable=True),
    Column("amount", Money, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Index("ix_payments_account", "account_id"),
    # Deleting or voiding an invoice checks its payments.
    Index("ix_payments_invoice", "invoice_id"),
)

dunning_actions = Table(
    "dunning_actions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("run_id", Integer, nullable=False),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("from_tier", Integer, nullable=False),
    Column("to_tier", Integer, nullable=False),
    Column("actions", JSON, nullable=False),
    # The account status the action sets (SUSPENDED, ACTIVE on reinstatement), if any.
    Column("new_status", String(16), nullable=True),
    Column("fee_amount", Money, nullable=True),
    Column("write_off_amount", Money, nullable=True),
    Column("applied_at", UTCDateTime(), nullable=False),
    UniqueConstraint("run_id", "account_id", name="uq_dunning_action_run_account"),
    Index("ix_dunning_actions_account", "account_id"),
)
