"""The GL collector's own table: the journal lines a run has staged (its migrations: ``migrations/``).

``gl_staged`` holds a run's evaluated journal until the run is applied (or deleted); applying posts the
lines to the ledger's ``gl_entries`` (``workers.billing.gl_tables``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    text,
)

from workers.billing.gl_tables import Money, SourceType

metadata = MetaData()

gl_staged = Table(
    "gl_staged",
    metadata,
    Column("run_id", Integer, nullable=False),
    Column("source_type", SourceType, nullable=False),
    Column("source_id", BigInteger, nullable=False),
    Column("line_no", SmallInteger, nullable=False),
    Column("account_id", Integer, nullable=False),
    Column("gl_account", String(32), nullable=False),
    Column("debit", Money, nullable=False, server_default=text("0")),
    Column("credit", Money, nullable=False, server_default=text("0")),
    Column("entry_date", Date, nullable=False),
    PrimaryKeyConstraint("run_id", "source_type", "source_id", "line_no", name="pk_gl_staged"),
)
