"""Journal totals per GL account over a chunk's lines, the balance check, and the run items they make.

A run's items are one per (chunk, GL account) with the account's totals, so even a run of a
million documents has a few hundred items; the lines themselves stay in ``gl_staged`` (until
applied) and ``gl_entries`` (once posted), both queryable by ``run_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from scheduler.jobkit.sql import SqlDialect
from workers.gl.properties import JournalUnbalanced
from workers.gl.sources import Chunk, JournalLine, typed

CENT = Decimal("0.01")


def money(value: Any) -> Decimal:
    return Decimal(str(value if value is not None else 0)).quantize(CENT)


@dataclass(frozen=True, kw_only=True)
class AccountTotal:
    """The lines of a batch on one GL account."""

    gl_account: str
    documents: int
    lines: int
    debit: Decimal
    credit: Decimal


def batch_totals(
    conn: Connection, lines_sql: str, params: dict[str, Any], *, one_line_per_account: bool = False
) -> dict[str, AccountTotal]:
    """Per GL account: count and sums of the journal lines ``lines_sql`` selects.

    ``one_line_per_account``: each document has at most one line per GL account (the entry's accounts
    all differ), so an account's documents are its lines and need no ``COUNT(DISTINCT …)`` sort.
    """
    return _totals(conn, _totals_sql(SqlDialect.of(conn), f"({lines_sql}) batch", one_line_per_account), params)


def _totals_sql(d: SqlDialect, relation: str, one_line_per_account: bool) -> str:
    documents = "COUNT(*)" if one_line_per_account else "COUNT(DISTINCT source_id)"
    return (
        f"SELECT gl_account, COUNT(*) AS lines, {documents} AS documents, "
        f"{d.money_text(d.money_sum('debit'))} AS debit, {d.money_text(d.money_sum('credit'))} AS credit "
        f"FROM {relation} GROUP BY gl_account ORDER BY gl_account"
    )


def _totals(conn: Connection, sql: str, params: dict[str, Any]) -> dict[str, AccountTotal]:
    return _rows_to_totals(conn.execute(typed(sql), params))


def document_totals(
    conn: Connection, sums_sql: str, params: dict[str, Any], lines: list[JournalLine]
) -> dict[str, AccountTotal]:
    """Per GL account, from :func:`~workers.gl.sources.document_sums`: every document has every line."""
    row = conn.execute(typed(sums_sql), params).one()
    documents = int(row.documents or 0)
    if not documents:
        return {}
    sums: dict[str, list[Any]] = {}
    for line in lines:
        entry = sums.setdefault(line.gl_account, [0, Decimal("0.00"), Decimal("0.00")])
        entry[0] += documents
        entry[1] += money(getattr(row, f"debit_{line.line_no}"))
        entry[2] += money(getattr(row, f"credit_{line.line_no}"))
    return {
        account: AccountTotal(gl_account=account, documents=documents, lines=n, debit=debit, credit=credit)
        for account, (n, debit, credit) in sorted(sums.items())
    }


def check_balanced(conn: Connection, lines_sql: str, params: dict[str, Any], totals: dict[str, AccountTotal], *,
                   chunk: Chunk, where: str) -> None:
    """Raise :class:`JournalUnbalanced` when the batch's debits and credits differ, naming a document."""
    debit = sum((t.debit for t in totals.values()), Decimal("0.00"))
    credit = sum((t.credit for t in totals.values()), Decimal("0.00"))
    if debit == credit:
        return
    d = SqlDialect.of(conn)
    first = conn.execute(
        typed(
            f"SELECT source_id, {d.money_text(d.money_sum('debit'))} AS debit, "
            f"{d.money_text(d.money_sum('credit'))} AS credit FROM ({lines_sql}) batch "
            f"GROUP BY source_id HAVING {d.money_sum('debit')} <> {d.money_sum('credit')} "
            "ORDER BY source_id LIMIT 1"
        ),
        params,
    ).first()
    detail = (f"first unbalanced document: {chunk.source.source_type} {first.source_id} "
              f"(debit {first.debit}, credit {first.credit})") if first is not None else ""
    raise JournalUnbalanced(where, debit, credit, detail)


def large_batch(conn: Connection) -> None:
    """Give this transaction room to sort and hash a chunk's lines in memory (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")


def insert_lines(
    conn: Connection, insert_sql: str, on_conflict: str, params: dict[str, Any], *,
    totals: bool = False, one_line_per_account: bool = False, conflicts: bool = False,
) -> dict[str, AccountTotal] | None:
    """Run a set-based insert of lines; only if some of them already exist, run it again skipping those.

    A plain ``INSERT`` costs half an ``INSERT … ON CONFLICT DO NOTHING`` on PostgreSQL (no speculative
    insertion into every index), and a conflict is the exception: a chunk applied again, or two runs
    posting the same documents at once (the unique key still decides; the later one waits, then skips).
    ``conflicts``: the caller's plain insert just met some, skip straight to the insert that skips them.

    With ``totals`` on PostgreSQL, returns the per-account totals of the lines this statement inserted
    (from ``RETURNING``, without reading them back); else ``None``.
    """
    returning = totals and conn.dialect.name == "postgresql"

    def statement(sql: str) -> Any:
        if not returning:
            return typed(sql)
        inserted = "(SELECT source_id, gl_account, debit, credit FROM inserted) batch"
        return typed(f"WITH inserted AS ({sql} RETURNING source_id, gl_account, debit, credit) "
                     + _totals_sql(SqlDialect.of(conn), inserted, one_line_per_account))

    if not conflicts:
        try:
            with conn.begin_nested():
                result = conn.execute(statement(insert_sql), params)
                return _rows_to_totals(result) if returning else None
        except IntegrityError:
            pass
    result = conn.execute(statement(f"{insert_sql} {on_conflict}"), params)
    return _rows_to_totals(result) if returning else None


def _rows_to_totals(result: Any) -> dict[str, AccountTotal]:
    return {
        r.gl_account: AccountTotal(gl_account=r.gl_account, documents=int(r.documents), lines=int(r.lines),
                                   debit=money(r.debit), credit=money(r.credit))
        for r in result
    }


def item_key(chunk: Chunk, gl_account: str) -> str:
    return f"{chunk.label}:{gl_account}"


def staged_items(chunk: Chunk, totals: dict[str, AccountTotal]) -> dict[str, dict[str, Any]]:
    """The run items of a chunk: one per GL account with its staged totals, by item key."""
    return {
        item_key(chunk, t.gl_account): {
            "collector": chunk.collector.value,
            "source_type": chunk.source.source_type.value,
            "first_id": chunk.first_id,
            "last_id": chunk.last_id,
            "gl_account": t.gl_account,
            "documents": t.documents,
            "lines": t.lines,
            "debit": str(t.debit),
            "credit": str(t.credit),
        }
        for t in totals.values()
    }
