"""What each dataset exports: its table, the day a record belongs to, and the fields sent for it.

Every statement reads a record set (a keyset range or a list of ids) in one query; money is formatted
by the database (two decimals). On SQLite dates and instants are formatted by Python from typed
columns (:func:`record_fields`); on PostgreSQL the database builds each whole record as JSON
(:meth:`Source.record_json`) with the same strings, so a batch's records never pass through Python
until they are sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date
from sqlalchemy.engine import Row

from scheduler.jobkit import UTCDateTime
from scheduler.jobkit.sql import SqlDialect
from workers.erp.properties import ErpDataset


@dataclass(frozen=True, kw_only=True)
class Source:
    """One dataset: ``r`` is its table; ``day`` is the date column or the instant column of its records."""

    dataset: ErpDataset
    table: str
    day_column: str
    day_is_instant: bool
    cycle_condition: str
    """Which records of ``r`` belong to the bill cycle run ``:bill_cycle_run_id``."""
    fields: tuple[str, ...]
    money: tuple[str, ...]
    """The money fields of a record: what a preview totals per currency (the records' account's ``currency``)."""

    def select(self, d: SqlDialect) -> str:
        """``SELECT`` list and ``FROM`` clause (with joins) giving ``fields`` by name."""
        return _SELECTS[self.dataset](d)

    def typed_columns(self) -> dict[str, Any]:
        return {name: _TYPES[name] for name in self.fields if name in _TYPES}

    def record_json(self, alias: str) -> str:
        """PostgreSQL: the record of row ``alias`` (a subquery of :meth:`select`) as a JSON object of strings,
        the same strings :func:`record_fields` makes (``2026-05-01``, ``2026-05-01T00:00:00Z``, ``120.50``)."""
        pairs = ", ".join(f"'{name}', {_pg_text(f'{alias}.{name}', _TYPES.get(name))}" for name in self.fields)
        return f"json_build_object({pairs})"


_TYPES: dict[str, Any] = {
    "issued_on": Date(),
    "due_on": Date(),
    "entry_date": Date(),
    "received_at": UTCDateTime(),
    "posted_at": UTCDateTime(),
}


def _invoices(d: SqlDialect) -> str:
    return (
        "SELECT r.id, r.number, a.account_number, r.kind, r.status, r.issued_on, r.due_on, "
        f"{d.money_text('r.amount')} AS amount, {d.money_text('r.balance')} AS balance, r.bill_cycle_run_id, "
        "a.currency "
        "FROM invoices r JOIN accounts a ON a.id = r.account_id"
    )


def _payments(d: SqlDialect) -> str:
    return (
        "SELECT r.id, a.account_number, i.number AS invoice_number, "
        f"{d.money_text('r.amount')} AS amount, r.received_at, i.bill_cycle_run_id, a.currency "
        "FROM payments r JOIN accounts a ON a.id = r.account_id LEFT JOIN invoices i ON i.id = r.invoice_id"
    )


def _gl_journal(d: SqlDialect) -> str:
    return (
        "SELECT r.id, r.run_id, r.source_type, r.source_id, r.line_no, a.account_number, r.gl_account, "
        f"{d.money_text('r.debit')} AS debit, {d.money_text('r.credit')} AS credit, r.entry_date, r.posted_at, "
        "a.currency "
        "FROM gl_entries r LEFT JOIN accounts a ON a.id = r.account_id"
    )


_SELECTS = {ErpDataset.INVOICES: _invoices, ErpDataset.PAYMENTS: _payments, ErpDataset.GL_JOURNAL: _gl_journal}

SOURCES: dict[ErpDataset, Source] = {
    ErpDataset.INVOICES: Source(
        dataset=ErpDataset.INVOICES, table="invoices", day_column="issued_on", day_is_instant=False,
        cycle_condition="r.bill_cycle_run_id = :bill_cycle_run_id",
        fields=("id", "number", "account_number", "kind", "status", "issued_on", "due_on", "amount", "balance",
                "bill_cycle_run_id"),
        money=("amount",),
    ),
    ErpDataset.PAYMENTS: Source(
        dataset=ErpDataset.PAYMENTS, table="payments", day_column="received_at", day_is_instant=True,
        # The payments against the invoices the bill cycle run issued.
        cycle_condition="r.invoice_id IN (SELECT c.id FROM invoices c WHERE c.bill_cycle_run_id = :bill_cycle_run_id)",
        fields=("id", "account_number", "invoice_number", "amount", "received_at", "bill_cycle_run_id"),
        money=("amount",),
    ),
    ErpDataset.GL_JOURNAL: Source(
        dataset=ErpDataset.GL_JOURNAL, table="gl_entries", day_column="entry_date", day_is_instant=False,
        # A journal's "bill cycle" is the GL collector run that posted it.
        cycle_condition="r.run_id = :bill_cycle_run_id",
        fields=("id", "run_id", "source_type", "source_id", "line_no", "account_number", "gl_account", "debit",
                "credit", "entry_date", "posted_at"),
        money=("debit", "credit"),
    ),
}


def _pg_text(expr: str, sql_type: Any) -> str:
    """``expr`` as :func:`as_text` writes it: ISO dates; UTC instants with ``Z``, microseconds only when not 0."""
    if isinstance(sql_type, Date):
        return f"to_char({expr}, 'YYYY-MM-DD')"
    if isinstance(sql_type, UTCDateTime):
        utc = f"({expr} AT TIME ZONE 'UTC')"
        fraction = f"CASE WHEN to_char({utc}, 'US') = '000000' THEN '' ELSE to_char({utc}, '.US') END"
        return f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || {fraction} || 'Z'"
    return f"CAST({expr} AS text)"


def as_text(value: Any) -> str | None:
    """A field value as the string sent to the ERP (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def record_fields(source: Source, row: Row[Any]) -> dict[str, str | None]:
    mapping = row._mapping
    return {name: as_text(mapping[name]) for name in source.fields}
