"""The general ledger: posted journal lines, on the billing ``metadata`` (``workers.billing.tables``).

``gl_entries`` is the ledger of record: each source document (invoice, payment, late fee, write-off) is
collected once, ever, because ``(source_type, source_id, line_no)`` is unique. The GL collector posts it
and the ERP transfer exports it as ``gl_journal``, so it is the ledger's, not one job type's (the lines a
collector run has staged are the GL collector's own: ``workers.gl.tables``).
"""

from __future__ import annotations

import enum

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    text,
)

from scheduler.jobkit import UTCDateTime
from workers.billing.tables import metadata

Money = Numeric(18, 2)

# Source types are ASCII codes: the "C" collation compares them bytewise, which halves the cost of the
# unique (source_type, source_id, line_no) index per posted line on PostgreSQL.
SourceType = String(16).with_variant(String(16, collation="C"), "postgresql")


class GLSourceType(enum.StrEnum):
    """The kind of billing document a journal line was collected from."""

    INVOICE = "INVOICE"
    """A regular invoice (``invoices.kind = 'INVOICE'``); ``source_id`` is ``invoices.id``."""
    PAYMENT = "PAYMENT"
    """A payment received; ``source_id`` is ``payments.id``."""
    LATE_FEE = "LATE_FEE"
    """A late-fee charge (``invoices.kind = 'LATE_FEE'``); ``source_id`` is ``invoices.id``."""
    WRITE_OFF = "WRITE_OFF"
    """A balance written off by dunning; ``source_id`` is ``dunning_actions.id``."""
    INVOICE_VOID = "INVOICE_VOID"
    """The reversal of a collected invoice voided since; ``source_id`` is ``invoices.id``."""
    LATE_FEE_VOID = "LATE_FEE_VOID"
    """The reversal of a collected late fee voided since; ``source_id`` is ``invoices.id``."""


gl_entries = Table(
    "gl_entries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    # The GL collector run that posted the line.
    Column("run_id", Integer, nullable=False),
    Column("source_type", SourceType, nullable=False),
    Column("source_id", BigInteger, nullable=False),
    # 1 = the debit line, 2 = the credit line of the document's two-line entry.
    Column("line_no", SmallInteger, nullable=False),
    # The billing account the document belongs to (sub-ledger detail for exports).
    Column("account_id", Integer, nullable=False),
    Column("gl_account", String(32), nullable=False),
    Column("debit", Money, nullable=False, server_default=text("0")),
    Column("credit", Money, nullable=False, server_default=text("0")),
    # The accounting date: issue date of invoices and fees, UTC date of payments and write-offs.
    Column("entry_date", Date, nullable=False),
    Column("posted_at", UTCDateTime(), nullable=False),
    UniqueConstraint("source_type", "source_id", "line_no", name="uq_gl_entries_source_line"),
    # For exports by run and by date. BRIN on PostgreSQL, where it serves either column alone: lines arrive
    # in run order and roughly in date order, and one BRIN costs a fraction of a b-tree per posted line.
    Index("ix_gl_entries_run_date", "run_id", "entry_date", postgresql_using="brin"),
)
