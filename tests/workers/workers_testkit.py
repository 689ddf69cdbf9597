"""Shared helpers of the worker tests: the recording dispatcher, the test ladder, hand-made accounts."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, insert

from scheduler.dispatch import Dispatcher, RunStep
from scheduler.jobtypes import JobTypeRegistry
from workers.billing import accounts, invoices

AS_OF = date(2026, 6, 1)
Drain = Callable[[], int]


class RecordingDispatcher(Dispatcher):
    """A dispatcher that keeps the steps it is asked to send, in order."""

    def __init__(self) -> None:
        self.url = "memory://"
        self.steps: deque[tuple[str, RunStep]] = deque()
        self.sent: list[tuple[str, RunStep]] = []

    def send_step(self, queue: str, step: RunStep) -> None:
        self.send_steps([(queue, step)])

    def send_steps(self, steps: Sequence[tuple[str, RunStep]]) -> None:
        self.steps.extend(steps)
        self.sent.extend(steps)

    def wake_beat(self) -> None:
        return None


TIERS: list[dict[str, Any]] = [
    {"code": 0, "name": "No dunning", "min_days_past_due": 0, "actions": []},
    {"code": 1, "name": "Reminder", "min_days_past_due": 1, "actions": ["notice"]},
    {"code": 2, "name": "Late fee", "min_days_past_due": 30, "actions": ["notice", "late_fee"], "late_fee": "15.00"},
    {"code": 3, "name": "Suspension", "min_days_past_due": 90, "actions": ["suspend", "webhook"]},
]


def days_before(days: int) -> date:
    return AS_OF - timedelta(days=days)


def add_account(
    engine: Engine, number: str, *, category: str = "RESIDENTIAL", tier: int = 0, status: str = "ACTIVE",
    open_invoices: Sequence[tuple[int, str]] = (),
    disputed: Sequence[tuple[int, str]] = (),
    paid: Sequence[tuple[int, str]] = (),
) -> int:
    """An account with invoices given as ``(days past due, amount)``."""
    with engine.begin() as conn:
        account_id = conn.execute(
            insert(accounts).values(account_number=number, name=f"Customer {number}", category=category,
                                    status=status, dunning_tier=tier, email=f"{number.lower()}@example.com")
            .returning(accounts.c.id)
        ).scalar_one()
        rows = []
        for n, (late, amount, state, is_disputed) in enumerate(
            [(d, a, "OPEN", False) for d, a in open_invoices]
            + [(d, a, "OPEN", True) for d, a in disputed]
            + [(d, a, "PAID", False) for d, a in paid]
        ):
            due = days_before(late)
            rows.append({
                "account_id": account_id, "number": f"{number}-{n}", "issued_on": days_before(late + 30),
                "due_on": due, "amount": Decimal(amount), "balance": Decimal(amount) if state == "OPEN" else 0,
                "status": state, "disputed": is_disputed, "kind": "INVOICE",
            })
        if rows:
            conn.execute(insert(invoices), rows)
        return int(account_id)




def dunning_registry() -> JobTypeRegistry:
    """Only the dunning type, so these tests do not depend on the other job types' modules."""
    from workers.dunning import JOB_TYPE

    return JobTypeRegistry([JOB_TYPE])
