"""Demo jobs that `scheduler up --demo` and `scheduler demo seed` create, so runs appear within a minute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from workers.billing import demo_erp, demo_gl, demo_usage
from workers.billing.demo import seed_demo

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
    demo_usage.DEMO_JOB,
    demo_gl.DEMO_JOB,
    demo_erp.DEMO_JOB,
]


def seed_demo_data(engine: Engine, files_root: Path, *, accounts: int) -> dict[str, Any]:
    """The demo ledger, usage files for today, the GL tables and the ERP sink's directory."""
    counts: dict[str, Any] = dict(seed_demo(engine, accounts=accounts))
    counts["usage"] = demo_usage.seed_usage_demo(engine, files_root)
    counts["gl"] = demo_gl.seed_gl_demo(engine)
    counts["erp_outbox"] = str(demo_erp.prepare_outbox(files_root))
    return counts

