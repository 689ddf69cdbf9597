"""The GL run summary (documents, lines, debit and credit per GL account) and a run's journal lines.

The summary is built from the run's items (one per chunk and GL account, a few hundred at most), so
it costs the same for ten documents as for a million. Before apply it describes the staged journal
(what a preview shows); once applied, what the run posted, with what it skipped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, Table, func, select

from scheduler.jobkit import ItemOutcome, RunContext, RunItems
from scheduler.money import MoneyTotals
from workers.billing import accounts
from workers.billing.gl_tables import gl_entries
from workers.gl.evaluate import needs_review
from workers.gl.journal import money
from workers.gl.sources import as_of, properties
from workers.gl.tables import gl_staged

ZERO = Decimal("0.00")


@dataclass
class _Journal:
    documents_by_chunk: dict[int, int]
    lines: int
    accounts: dict[str, dict[str, Any]]

    @classmethod
    def empty(cls) -> _Journal:
        return cls(documents_by_chunk=defaultdict(int), lines=0,
                   accounts=defaultdict(lambda: {"debit": ZERO, "credit": ZERO, "lines": 0}))

    def add(self, chunk_no: int, account: str, documents: int, lines: int, debit: Any, credit: Any) -> None:
        # Every document has a line on each of its accounts: a chunk's documents are its busiest account's.
        self.documents_by_chunk[chunk_no] = max(self.documents_by_chunk[chunk_no], documents)
        self.lines += lines
        totals = self.accounts[account]
        totals["debit"] += money(debit)
        totals["credit"] += money(credit)
        totals["lines"] += lines

    @property
    def documents(self) -> int:
        return sum(self.documents_by_chunk.values())

    @property
    def debit(self) -> Decimal:
        return sum((t["debit"] for t in self.accounts.values()), ZERO)

    @property
    def credit(self) -> Decimal:
        return sum((t["credit"] for t in self.accounts.values()), ZERO)

    def as_dict(self) -> dict[str, Any]:
        debit, credit = self.debit, self.credit
        return {
            "documents": self.documents,
            "lines": self.lines,
            "debit_total": str(debit),
            "credit_total": str(credit),
            "balanced": debit == credit,
            "accounts": {
                account: {"debit": str(t["debit"]), "credit": str(t["credit"]), "lines": t["lines"]}
                for account, t in sorted(self.accounts.items())
            },
        }


def summarize(ctx: RunContext) -> dict[str, Any]:
    props, _ = properties(ctx)
    staged, posted = _Journal.empty(), _Journal.empty()
    applied = errors = 0
    for r in RunItems(ctx).all():
        detail = r.detail
        account = str(detail.get("gl_account"))
        staged.add(r.chunk_no, account, int(detail.get("documents", 0)), int(detail.get("lines", 0)),
                   detail.get("debit"), detail.get("credit"))
        if r.outcome in (ItemOutcome.OK, ItemOutcome.SKIPPED):
            applied += 1
            posted.add(r.chunk_no, account, int(detail.get("posted_documents", 0)),
                       int(detail.get("posted_lines", 0)), detail.get("posted_debit"), detail.get("posted_credit"))
        elif r.outcome == ItemOutcome.ERROR:
            errors += 1
    journal = posted if applied else staged
    summary: dict[str, Any] = {
        "as_of": as_of(ctx).isoformat(),
        "collectors": [c.value for c in props.ordered_collectors],
        "journal": "posted" if applied else "staged",
        **journal.as_dict(),
        "staged_documents": staged.documents,
        "staged_lines": staged.lines,
    }
    # The journal's lines are in gl_entries once applied, in gl_staged before only if the run stages them.
    lines_in_table = posted if applied else staged if needs_review(ctx) else None
    if by_currency := _money(ctx, gl_entries if applied else gl_staged, lines_in_table):
        summary["money"] = by_currency
    if applied:
        summary["skipped_documents"] = max(0, staged.documents - posted.documents)
        summary["skipped_lines"] = max(0, staged.lines - posted.lines)
    if errors:
        summary["errored_items"] = errors
    return summary


def _money(ctx: RunContext, table: Table, journal: _Journal | None) -> dict[str, dict[str, str]]:
    """The run's journal debits and credits per currency of the documents' accounts: staged (a preview shows
    what submit posts) or posted.

    ``journal`` totals the run's lines in ``table`` (from its items). When every account bills in one
    currency they are that currency's, with no pass over the lines (0.7 s of database CPU for two million
    lines, at the end of the run); else one aggregate over them, joined to the accounts.
    """
    totals = MoneyTotals()
    with ctx.billing_engine.connect() as conn:
        lowest, highest = conn.execute(select(func.min(accounts.c.currency), func.max(accounts.c.currency))).one()
        if journal is not None and lowest == highest:
            # Documents reference their account, so every line's account exists and bills in this currency.
            rows: Any = [(lowest, journal.debit, journal.credit)] if journal.lines else []
        else:
            rows = conn.execute(
                select(accounts.c.currency, func.sum(table.c.debit), func.sum(table.c.credit))
                .select_from(table.outerjoin(accounts, accounts.c.id == table.c.account_id))
                .where(table.c.run_id == ctx.run_id)
                .group_by(accounts.c.currency)
            )
        for currency, debit, credit in rows:
            totals.add(currency, "debits", money(debit))
            totals.add(currency, "credits", money(credit))
    return totals.as_dict(names=("debits", "credits"), places=2)


def run_lines(billing_engine: Engine, run_id: int, *, limit: int = 1000) -> list[dict[str, Any]]:
    """A run's journal lines in document order: staged ones (before apply), then posted ones."""
    rows: list[dict[str, Any]] = []
    with billing_engine.connect() as conn:
        for table in (gl_staged, gl_entries):
            found = conn.execute(
                select(table.c.source_type, table.c.source_id, table.c.line_no, table.c.account_id,
                       table.c.gl_account, table.c.debit, table.c.credit, table.c.entry_date)
                .where(table.c.run_id == run_id)
                .order_by(table.c.source_type, table.c.source_id, table.c.line_no)
                .limit(limit)
            ).mappings().all()
            rows.extend({**r, "debit": money(r["debit"]), "credit": money(r["credit"]), "table": table.name}
                        for r in found)
    return rows
