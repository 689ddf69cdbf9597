"""The dunning run summary: accounts evaluated, escalated, cleared, unchanged, skipped, fees and write-offs.

Fees and write-offs are what the run has posted plus what its still planned items will post, per
currency: a preview shows what applying will charge, an applied run what it charged.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from scheduler.jobkit import ItemOutcome, RunContext, RunItems, chunk_specs
from scheduler.money import MoneyTotals
from workers.billing.tables import accounts, dunning_actions
from workers.dunning.evaluate import as_of_date

CENT = Decimal("0.01")
MONEY = ("late_fees", "write_offs")


def summarize(ctx: RunContext) -> dict[str, Any]:
    """Counts for the run page; escalations and clearances count the staged and applied ones.

    ``unchanged`` is every evaluated account whose tier this run leaves as it was (skipped ones included).
    """
    items = RunItems(ctx)
    evaluated = sum(int(spec.get("accounts", 0)) for spec in chunk_specs(ctx))
    counts = items.counts(by_detail="to_tier")
    by_item = [(outcome, to_tier or 0, n) for (outcome, to_tier), n in counts.items()]
    planned = items.detail_sums(group_by="currency", money=("late_fee", "write_off"))
    money, fees, write_offs = _money_totals(ctx, planned)
    live = (ItemOutcome.PLANNED, ItemOutcome.OK)
    escalated = sum(n for outcome, to_tier, n in by_item if outcome in live and to_tier > 0)
    cleared = sum(n for outcome, to_tier, n in by_item if outcome in live and to_tier == 0)
    by_tier: dict[str, int] = {}
    for outcome, to_tier, n in by_item:
        if outcome in live:
            by_tier[str(to_tier)] = by_tier.get(str(to_tier), 0) + n
    return {
        "as_of": as_of_date(ctx).isoformat(),
        "accounts_evaluated": evaluated,
        "escalated": escalated,
        "cleared": cleared,
        "unchanged": max(0, evaluated - escalated - cleared),
        "skipped": sum(n for outcome, _, n in by_item if outcome == ItemOutcome.SKIPPED),
        "errors": sum(n for outcome, _, n in by_item if outcome == ItemOutcome.ERROR),
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


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT)
