"""The dunning run summary: accounts evaluated, escalated, cleared, unchanged, skipped, fees and write-offs.

Fees and write-offs are what the run has posted plus what its still planned items will post, per
currency: a preview shows what applying will charge, an applied run what it charged.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text

from scheduler.jobtypes import RunContext
from scheduler.models import ItemOutcome
from scheduler.money import MoneyTotals
from workers.billing.tables import accounts, dunning_actions
from workers.dunning.evaluate import as_of_date
from workers.sql import SqlDialect

CENT = Decimal("0.01")
MONEY = ("late_fees", "write_offs")


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
        planned = conn.execute(
            text(f"SELECT {d.json_text('detail', 'currency')} AS currency, "
                 f"COUNT({d.json_text('detail', 'late_fee')}) AS fees, "
                 f"{d.json_money_sum('detail', 'late_fee')} AS fee_sum, "
                 f"COUNT({d.json_text('detail', 'write_off')}) AS write_offs, "
                 f"{d.json_money_sum('detail', 'write_off')} AS write_off_sum "
                 "FROM run_item WHERE run_id = :run_id AND outcome = :planned GROUP BY 1"),
            {"run_id": ctx.run_id, "planned": ItemOutcome.PLANNED},
        ).all()
    money, fees, write_offs = _money_totals(ctx, [tuple(r) for r in planned])
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
        "fees_posted": fees,
        "fees_total": str(money.total("late_fees").quantize(CENT)),
        "write_offs": write_offs,
        "written_off_total": str(money.total("write_offs").quantize(CENT)),
        "money": money.as_dict(names=MONEY, places=2),
    }


def _money_totals(ctx: RunContext, planned: list[tuple[Any, ...]]) -> tuple[MoneyTotals, int, int]:
    """Fees and write-offs applied (this run's ``dunning_actions``) plus those its planned items stage.

    ``planned``: per currency, the planned items' fee count and sum, write-off count and sum.
    """
    money = MoneyTotals()
    fees = write_offs = 0
    applied = (
        select(accounts.c.currency, func.count(dunning_actions.c.fee_amount), func.sum(dunning_actions.c.fee_amount),
               func.count(dunning_actions.c.write_off_amount), func.sum(dunning_actions.c.write_off_amount))
        .join(accounts, accounts.c.id == dunning_actions.c.account_id)
        .where(dunning_actions.c.run_id == ctx.run_id)
        .group_by(accounts.c.currency)
    )
    with ctx.billing_engine.connect() as conn:
        for currency, fee_count, fee_sum, write_off_count, write_off_sum in conn.execute(applied):
            money.add(currency, "late_fees", _money(fee_sum))
            money.add(currency, "write_offs", _money(write_off_sum))
            fees += int(fee_count or 0)
            write_offs += int(write_off_count or 0)
    for currency, fee_count, fee_sum, write_off_count, write_off_sum in planned:
        money.add(currency, "late_fees", _money(fee_sum))
        money.add(currency, "write_offs", _money(write_off_sum))
        fees += int(fee_count or 0)
        write_offs += int(write_off_count or 0)
    return money, fees, write_offs





def _spec(value: Any) -> dict[str, Any]:
    import json

    return json.loads(value) if isinstance(value, str) else dict(value or {})


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT)
