"""The ERP transfer's own table: one row per record delivered to a target (its migrations: ``migrations/``).

``erp_deliveries`` is the ledger that makes a transfer exactly-once per target: a row is written only
once the target accepted the record, and ``(target_key, dataset, record_id)`` is unique, so no later run
(or a step delivered twice) can record — or send — the same record to the same target again.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, UniqueConstraint

from scheduler.jobkit import UTCDateTime

metadata = MetaData()

erp_deliveries = Table(
    "erp_deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    # SHA-256 (hex) of the normalized target URL or directory: see ``workers.erp.properties.target_key``.
    Column("target_key", String(64), nullable=False),
    Column("dataset", String(16), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    # The run and batch that delivered the record (the batch's ``Idempotency-Key`` may be an earlier run's).
    Column("run_id", Integer, nullable=False),
    Column("batch_no", Integer, nullable=False),
    Column("delivered_at", UTCDateTime(), nullable=False),
    UniqueConstraint("target_key", "dataset", "record_id", name="uq_erp_deliveries_target_record"),
    Index("ix_erp_deliveries_run", "run_id", "batch_no"),
)
