"""Demo jobs that `scheduler up --demo` and `scheduler demo seed` create, so runs appear within a minute."""

from __future__ import annotations

from typing import Any

DUNNING_LADDER: list[dict[str, Any]] = [
    {"code": 1, "name": "Reminder", "min_days_past_due": 1, "actions": ["notice"]},
    {"code": 2, "name": "Late fee", "min_days_past_due": 30, "actions": ["notice", "late_fee"], "late_fee": "25.00"},
    {"code": 3, "name": "Suspension", "min_days_past_due": 60, "actions": ["notice", "suspend"]},
    {"code": 4, "name": "Write-off", "min_days_past_due": 120, "actions": ["write_off"]},
]

DEMO_JOBS: list[dict[str, Any]] = [
    {
        "name": "Demo dunning (every minute)",
        "job_type": "dunning",
        "description": "Evaluates every account against the demo ladder each minute and applies at once.",
        "cron": "* * * * *",
        "timezone": "UTC",
        "properties": {"minimum_account_due": "5.00", "strategy": "oldest_open_invoice", "tiers": DUNNING_LADDER},
    },
    {
        "name": "Demo dunning with review (hourly)",
        "job_type": "dunning",
        "description": "Stops at PREVIEW so finance can review the escalations before they are applied.",
        "cron": "0 * * * *",
        "timezone": "America/New_York",
        "requires_review": True,
        "properties": {"minimum_account_due": "5.00", "strategy": "oldest_open_invoice", "tiers": DUNNING_LADDER},
    },
]
