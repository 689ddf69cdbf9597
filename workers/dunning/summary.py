"""The dunning run summary: accounts evaluated, escalated, cleared, unchanged, skipped, fees posted."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text

from scheduler.jobtypes import RunContext
from scheduler.models import ItemOutcome
from workers.billing.tables import dunning_actions
from workers.dunning.evaluate import as_of_date
from workers.sql import SqlDialect

CENT = Decimal("0.01")


def summarize(ctx: RunContext) -> dict[str, Any]:
    """Counts for the run page; escalations and clearances count the staged and applied ones.

    ``unchanged`` is every evaluated account whose tier this run leaves as it was (skipped ones included).
    """
    d = SqlDialect.of(ctx.engine)
    with ctx.engine.connect() as conn:
        specs = conn.execute(text("SELECT spec FROM run_chunk WHERE run_id = :run_id"), {"run_id": ctx.run_id})
        evaluated = sum(int(_spec(s).get("accounts", 0)) for s in specs.scalars())
        by_item = conn.execute(
            text(f"SELECT outcome, {d.json_int('detail', 'to_tier')} AS to_tier, COUNT(*) AS n "
                 "FROM run_item WHERE run_id = :run_id GROUP BY 1, 2"),
            {"run_id": ctx.run_id},
        ).all()
    with ctx.billing_engine.connect() as conn:
        fees = conn.execute(
            select(
                func.count(dunning_actions.c.fee_amount),
                func.sum(dunning_actions.c.fee_amount),
                func.count(dunning_actions.c.write_off_amount),
                func.sum(dunning_actions.c.write_off_amount),
            ).where(dunning_actions.c.run_id == ctx.run_id)
        ).one()
    live = (ItemOutcome.PLANNED, ItemOutcome.OK)
    escalated = sum(r.n for r in by_item if r.outcome in live and (r.to_tier or 0) > 0)
    cleared = sum(r.n for r in by_item if r.outcome in live and (r.to_tier or 0) == 0)
    by_tier: dict[str, int] = {}
    for r in by_item:
        if r.outcome in live:
            by_tier[str(r.to_tier)] = by_tier.get(str(r.to_tier), 0) + r.n
    return {
        "as_of": as_of_date(ctx).isoformat(),
        "accounts_evaluated": evaluated,
        "escalated": escalated,
        "cleared": cleared,
        "unchanged": max(0, evaluated - escalated - cleared),
        "skipped": sum(r.n for r in by_item if r.outcome == ItemOutcome.SKIPPED),
        "errors": sum(r.n for r in by_item if r.outcome == ItemOutcome.ERROR),
        "by_tier": dict(sorted(by_tier.items())),
        "fees_posted": int(fees[0] or 0),
        "fees_total": str(_money(fees[1])),
        "write_offs": int(fees[2] or 0),
        "written_off_total": str(_money(fees[3])),
    }


def _spec(value: Any) -> dict[str, Any]:
    import json

    return json.loads(value) if isinstance(value, str) else dict(value or {})


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT)
