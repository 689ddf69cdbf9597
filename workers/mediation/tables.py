"""Usage mediation's own tables (its migrations: ``migrations/``).

``usage_files`` says which input files were applied (by checksum, once), ``usage_events`` holds every
mediated record once (the event id is the key, across all time), ``usage_daily`` the rated totals per
account, meter and UTC day, and ``usage_rejects`` every record a run failed or filtered, with its reason.
Quantities and rated amounts keep six decimals (``Decimal``); a rated amount is rounded half up.

``usage_events`` and ``usage_daily`` carry ``account_id`` without a foreign key on purpose: mediation
takes the id from a join with ``accounts`` in the same statement (accounts are closed, never deleted),
and a PostgreSQL foreign key check locks the referenced account row once per inserted row, which
would cost more than the rest of the insert.
"""

from __future__ import annotations

import enum

from sqlalchemy import (
    BigInteger,
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
)

from scheduler.jobkit import UTCDateTime

metadata = MetaData()

Quantity = Numeric(18, 6)
"""One record's quantity: up to 12 integer digits and 6 decimals."""
RatedAmount = Numeric(24, 6)
"""Quantity times price per unit, rounded half up to 6 decimals."""
Total = Numeric(28, 6)
"""A sum of quantities or amounts."""

EVENT_ID_LENGTH = 100
METER_LENGTH = 64


class RejectKind(enum.StrEnum):
    FAILED = "FAILED"
    """Bad data: the record cannot be mediated as sent (a run with failed records is INCOMPLETE)."""
    FILTERED = "FILTERED"
    """A good record that is not billed: a duplicate, or an unknown or inactive account."""


usage_files = Table(
    "usage_files",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("checksum", String(64), nullable=False, unique=True),
    Column("name", String(500), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("format", String(8), nullable=False),
    Column("job_id", Integer, nullable=False),
    Column("run_id", Integer, nullable=False),
    Column("records", Integer, nullable=False),
    Column("mediated", Integer, nullable=False),
    Column("filtered", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("amount", Total, nullable=False),
    Column("processed_at", UTCDateTime(), nullable=False),
    Column("archived_as", String(500), nullable=True),
    Index("ix_usage_files_run", "run_id"),
)

usage_events = Table(
    "usage_events",
    metadata,
    # The event id is the primary key: each event is mediated once across all runs and files. Byte order
    # ("C") on PostgreSQL: the key is compared, never sorted for people, and memcmp is much cheaper.
    Column("event_id", String(EVENT_ID_LENGTH).with_variant(String(EVENT_ID_LENGTH, collation="C"), "postgresql"),
           primary_key=True),
    Column("account_id", Integer, nullable=False),
    Column("meter", String(METER_LENGTH), nullable=False),
    Column("quantity", Quantity, nullable=False),
    Column("amount", RatedAmount, nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("usage_day", Date, nullable=False),
    Column("file_id", Integer, nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("run_id", Integer, nullable=False),
)

usage_daily = Table(
    "usage_daily",
    metadata,
    Column("account_id", Integer, primary_key=True),
    Column("meter", String(METER_LENGTH), primary_key=True),
    Column("usage_day", Date, primary_key=True),
    Column("events", Integer, nullable=False),
    Column("quantity", Total, nullable=False),
    Column("amount", Total, nullable=False),
)

usage_rejects = Table(
    "usage_rejects",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("file_id", Integer, ForeignKey("usage_files.id"), nullable=False),
    Column("run_id", Integer, nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("event_id", String(EVENT_ID_LENGTH), nullable=True),
    Column("account_number", String(64), nullable=True),
    Column("meter", String(METER_LENGTH), nullable=True),
    Column("kind", String(8), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("message", String(300), nullable=False),
    UniqueConstraint("file_id", "line_no", name="uq_usage_reject_file_line"),
    Index("ix_usage_rejects_run", "run_id"),
)

__all__ = [
    "EVENT_ID_LENGTH",
    "METER_LENGTH",
    "Quantity",
    "RatedAmount",
    "RejectKind",
    "Total",
    "metadata",
    "usage_daily",
    "usage_events",
    "usage_files",
    "usage_rejects",
]
