"""Where each collector's documents come from, and the SQL that turns a keyset range of them into lines.

A document is *uncollected* when it qualifies (kind, status, a non-zero amount, dated up to the run's
as-of) and ``gl_entries`` has no line of it. A voided invoice whose entry was posted is a document of
its own (``INVOICE_VOID``/``LATE_FEE_VOID``): its entry reverses the posted one. Each document
becomes a two-line entry: line 1 on the posting's debit account, line 2 on its credit account, for
the document's amount (a negative amount, e.g. a refund, swaps the sides). :func:`journal_lines` is
the one place that says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, bindparam, text
from sqlalchemy.sql.elements import BindParameter, TextClause
from sqlalchemy.types import TypeEngine

from scheduler.jobkit import UTCDateTime
from scheduler.jobkit.sql import SqlDialect
from scheduler.jobtypes import RunContext
from workers.billing.gl_tables import GLSourceType
from workers.billing.tables import InvoiceKind, InvoiceStatus
from workers.gl.properties import GLCollector, GLPosting, GLProperties, GLRunProperties

LINE_COLUMNS = "run_id, source_type, source_id, line_no, account_id, gl_account, debit, credit, entry_date"


def utc_date(d: SqlDialect, column: str) -> str:
    """The UTC calendar date of an aware timestamp column (SQLite stores naive UTC)."""
    if d.is_postgres:
        return f"CAST(({column} AT TIME ZONE 'UTC') AS date)"
    return f"date({column})"


@dataclass(frozen=True, kw_only=True)
class Source:
    """One collector's documents, as SQL over the alias ``src``."""

    collector: GLCollector
    source_type: GLSourceType
    table: str
    condition: str
    """Which rows of ``table`` are this collector's documents (may change: re-checked at apply)."""
    amount: str
    cutoff: str
    """Dated up to the run's as-of: uses ``:as_of`` (an instant) or ``:as_of_date`` (a date)."""
    entry_date: Callable[[SqlDialect], str]
    recheck: bool = False
    """Whether a document may stop qualifying after it is staged (an invoice voided since the preview)."""
    changed: str = "voided since the preview"
    """Why a rechecked document no longer qualifies, as a skipped item says."""

    def uncollected(self, *, in_chunk: bool = False) -> str:
        """``FROM … WHERE …`` of this collector's documents not yet in ``gl_entries``, up to the as-of.

        ``in_chunk`` keeps to ids ``:first_id..:last_id``, on both sides of the anti-join: PostgreSQL
        does not carry a range across a join, and would otherwise read every line of the source type
        already posted for each chunk (quadratic over a large run).
        """
        sql = (
            f"FROM {self.table} src WHERE {self.condition} AND {self.amount} <> 0 AND {self.cutoff} "
            "AND NOT EXISTS (SELECT 1 FROM gl_entries g "
            f"WHERE g.source_type = '{self.source_type}' AND g.source_id = src.id"
        )
        if in_chunk:
            return f"{sql} AND g.source_id BETWEEN :first_id AND :last_id) AND src.id BETWEEN :first_id AND :last_id"
        return f"{sql})"


def _invoices(kind: InvoiceKind, collector: GLCollector, source_type: GLSourceType) -> Source:
    return Source(
        collector=collector,
        source_type=source_type,
        table="invoices",
        condition=f"src.kind = '{kind}' AND src.status <> '{InvoiceStatus.VOID}'",
        amount="src.amount",
        cutoff="src.issued_on <= :as_of_date",
        entry_date=lambda _d: "src.issued_on",
        recheck=True,
    )


def _voids(kind: InvoiceKind, collector: GLCollector, source_type: GLSourceType, original: GLSourceType) -> Source:
    """Voided invoices of ``kind`` whose ``original`` entry was posted: the amount that entry debited to
    its line 1 (so the reversal undoes exactly what was posted), dated the run's as-of date (the void's
    own date is not recorded). An invoice voided before it was collected has no entry and no reversal."""
    posted = (
        "(SELECT o.debit - o.credit FROM gl_entries o "
        f"WHERE o.source_type = '{original}' AND o.source_id = src.id AND o.line_no = 1)"
    )
    return Source(
        collector=collector,
        source_type=source_type,
        table="invoices",
        condition=f"src.kind = '{kind}' AND src.status = '{InvoiceStatus.VOID}'",
        amount=posted,
        cutoff="src.issued_on <= :as_of_date",
        entry_date=lambda _d: ":as_of_date",
        recheck=True,
        changed="no longer void since the preview",
    )


SOURCES: dict[GLCollector, Source] = {
    GLCollector.INVOICES: _invoices(InvoiceKind.INVOICE, GLCollector.INVOICES, GLSourceType.INVOICE),
    GLCollector.PAYMENTS: Source(
        collector=GLCollector.PAYMENTS,
        source_type=GLSourceType.PAYMENT,
        table="payments",
        condition="1 = 1",
        amount="src.amount",
        cutoff="src.received_at <= :as_of",
        entry_date=lambda d: utc_date(d, "src.received_at"),
    ),
    GLCollector.LATE_FEES: _invoices(InvoiceKind.LATE_FEE, GLCollector.LATE_FEES, GLSourceType.LATE_FEE),
    GLCollector.WRITE_OFFS: Source(
        collector=GLCollector.WRITE_OFFS,
        source_type=GLSourceType.WRITE_OFF,
        table="dunning_actions",
        condition="src.write_off_amount IS NOT NULL",
        amount="src.write_off_amount",
        cutoff="src.applied_at <= :as_of",
        entry_date=lambda d: utc_date(d, "src.applied_at"),
    ),
    GLCollector.INVOICE_VOIDS: _voids(InvoiceKind.INVOICE, GLCollector.INVOICE_VOIDS, GLSourceType.INVOICE_VOID,
                                      GLSourceType.INVOICE),
    GLCollector.LATE_FEE_VOIDS: _voids(InvoiceKind.LATE_FEE, GLCollector.LATE_FEE_VOIDS,
                                       GLSourceType.LATE_FEE_VOID, GLSourceType.LATE_FEE),
}

SOURCE_BY_TYPE: dict[str, Source] = {s.source_type.value: s for s in SOURCES.values()}


@dataclass(frozen=True, kw_only=True)
class JournalLine:
    """One line of a document's entry: SQL expressions over the document's amount ``doc.amount``."""

    line_no: int
    gl_account: str
    debit: str
    credit: str


def journal_lines(source: Source, posting: GLPosting) -> list[JournalLine]:
    """The balanced two-line entry of ``source``'s documents under ``posting``."""
    positive = "CASE WHEN doc.amount > 0 THEN doc.amount ELSE 0 END"
    negative = "CASE WHEN doc.amount < 0 THEN -doc.amount ELSE 0 END"
    return [
        JournalLine(line_no=1, gl_account=posting.debit, debit=positive, credit=negative),
        JournalLine(line_no=2, gl_account=posting.credit, debit=negative, credit=positive),
    ]


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """A keyset range of one collector's document ids (a run's chunk spec)."""

    collector: GLCollector
    first_id: int
    last_id: int
    documents: int
    staged: bool
    """Stage the lines in ``gl_staged`` for review (preview runs); else post them straight at apply."""

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Chunk:
        return cls(collector=GLCollector(spec["collector"]), first_id=int(spec["first_id"]),
                   last_id=int(spec["last_id"]), documents=int(spec.get("documents", 0)),
                   staged=bool(spec.get("staged", True)))

    def spec(self) -> dict[str, Any]:
        return {"collector": self.collector.value, "source_type": self.source.source_type.value,
                "first_id": self.first_id, "last_id": self.last_id, "documents": self.documents,
                "staged": self.staged}

    @property
    def source(self) -> Source:
        return SOURCES[self.collector]

    @property
    def label(self) -> str:
        return f"{self.source.source_type}:{self.first_id}-{self.last_id}"

    def params(self, run_id: int) -> dict[str, Any]:
        return {"run_id": run_id, "source_type": self.source.source_type.value,
                "first_id": self.first_id, "last_id": self.last_id}


def line_select(
    d: SqlDialect, source: Source, lines: list[JournalLine], *, documents: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """A ``SELECT`` of the journal lines (``LINE_COLUMNS``) of a chunk's uncollected documents, for ``:run_id``.

    ``documents`` names a relation ``doc`` of them defined around the statement (see :func:`posting_with_sums`);
    else they are selected in place.
    """
    params: dict[str, Any] = {}
    accounts, debits, credits = [], [], []
    for line in lines:
        params[f"gl_{line.line_no}"] = line.gl_account
        accounts.append(f"WHEN {line.line_no} THEN {d.text_param(f'gl_{line.line_no}')}")
        debits.append(f"WHEN {line.line_no} THEN {line.debit}")
        credits.append(f"WHEN {line.line_no} THEN {line.credit}")
    numbers = " UNION ALL ".join(f"SELECT {line.line_no} AS line_no" for line in lines)
    sql = (
        f"SELECT :run_id AS run_id, '{source.source_type}' AS source_type, doc.id AS source_id, "
        "l.line_no AS line_no, doc.account_id AS account_id, "
        f"CASE l.line_no {' '.join(accounts)} END AS gl_account, "
        f"CASE l.line_no {' '.join(debits)} END AS debit, "
        f"CASE l.line_no {' '.join(credits)} END AS credit, "
        "doc.entry_date AS entry_date "
        f"FROM {documents or _documents_in_place(d, source)} CROSS JOIN ({numbers}) l"
    )
    return sql, params


def _documents_in_place(d: SqlDialect, source: Source) -> str:
    return f"({document_select(d, source)}) doc"


def document_select(d: SqlDialect, source: Source) -> str:
    """A ``SELECT`` of the chunk's uncollected documents: ``id, account_id, amount, entry_date``."""
    return (
        f"SELECT src.id, src.account_id, {source.amount} AS amount, {source.entry_date(d)} AS entry_date "
        f"{source.uncollected(in_chunk=True)}"
    )


def document_sums(d: SqlDialect, source: Source, lines: list[JournalLine], *, documents: str | None = None) -> str:
    """One pass over the chunk's documents: how many, and each journal line's debit and credit sums
    (``documents`` as for :func:`line_select`)."""
    sums = ", ".join(
        f"{d.money_text(d.money_sum(line.debit))} AS debit_{line.line_no}, "
        f"{d.money_text(d.money_sum(line.credit))} AS credit_{line.line_no}"
        for line in lines
    )
    return f"SELECT COUNT(*) AS documents, {sums} FROM {documents or _documents_in_place(d, source)}"


def posting_with_sums(d: SqlDialect, source: Source, insert_sql: str, sums_sql: str) -> str:
    """PostgreSQL: one statement that reads the chunk's documents once as ``doc``, posts their lines with
    ``insert_sql`` and answers ``sums_sql`` over the same documents (one snapshot).

    A plain ``INSERT`` posts every line it selects or fails, so when it succeeds these are the posted
    totals: no ``RETURNING`` of two rows per document to total (that costs a tenth of the insert).
    """
    return f"WITH doc AS MATERIALIZED ({document_select(d, source)}), posted AS ({insert_sql}) {sums_sql}"


STAGED_KEY = "ON CONFLICT (run_id, source_type, source_id, line_no) DO NOTHING"
"""Appended to a staging insert that met lines already staged (a chunk evaluated twice)."""
POSTED_KEY = "ON CONFLICT (source_type, source_id, line_no) DO NOTHING"
"""Appended to a posting insert that met lines already posted (by this run before, or by another run)."""


def staging_insert(select_sql: str) -> str:
    """Stage the selected lines for review (see :func:`workers.gl.journal.insert_lines` for the conflicts)."""
    # SQLite needs a WHERE before ON CONFLICT in INSERT … SELECT (else ON reads as a join constraint).
    return f"INSERT INTO gl_staged ({LINE_COLUMNS}) {select_sql} WHERE 1 = 1"


def direct_posting(select_sql: str) -> str:
    """Post the selected lines straight into the ledger (see :func:`workers.gl.journal.insert_lines`)."""
    return (
        f"INSERT INTO gl_entries ({LINE_COLUMNS}, posted_at) SELECT {LINE_COLUMNS}, :now FROM ({select_sql}) lines "
        # One order for every run, so two runs posting overlapping ranges wait for each other, never deadlock.
        "WHERE 1 = 1 ORDER BY source_id, line_no"
    )


def stored_lines(table: str) -> str:
    """A ``SELECT`` of the run's lines of the chunk's range in ``gl_staged`` or ``gl_entries``."""
    return (
        f"SELECT {LINE_COLUMNS} FROM {table} WHERE run_id = :run_id AND source_type = :source_type "
        "AND source_id BETWEEN :first_id AND :last_id"
    )


def typed(sql: str) -> TextClause:
    """``text(sql)`` with the as-of and posting-time parameters typed (SQLite gets ISO strings)."""
    types: dict[str, TypeEngine[Any]] = {"as_of": UTCDateTime(), "as_of_date": Date(), "now": UTCDateTime()}
    used: list[BindParameter[Any]] = [
        bindparam(name, type_=t) for name, t in types.items() if re.search(rf":{name}\b", sql)
    ]
    return text(sql).bindparams(*used)


def properties(ctx: RunContext) -> tuple[GLProperties, GLRunProperties]:
    assert isinstance(ctx.properties, GLProperties)
    assert isinstance(ctx.run_properties, GLRunProperties)
    return ctx.properties, ctx.run_properties


def as_of(ctx: RunContext) -> datetime:
    """The run's cut-off instant: its ``as_of`` property, else its tick (or creation time)."""
    _, run_props = properties(ctx)
    return (run_props.as_of or ctx.as_of).astimezone(UTC)


def as_of_date(ctx: RunContext) -> date:
    """The last issue date collected: the as-of instant's date in the job's time zone."""
    return as_of(ctx).astimezone(ZoneInfo(str(ctx.extra.get("timezone") or "UTC"))).date()


def cutoff_params(ctx: RunContext) -> dict[str, Any]:
    return {"as_of": as_of(ctx), "as_of_date": as_of_date(ctx)}
