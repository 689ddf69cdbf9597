"""The demo usage mediation job and its input: a day's usage files with a few bad lines.

``seed_usage_demo`` writes two CSV files into ``<files_root>/usage/incoming`` for the demo ledger's
accounts (``AC00000001``… when none exist yet), each with good records and one line of several
kinds of trouble, so the first run of ``DEMO_JOB`` ends INCOMPLETE with its rejects listed, and later
runs find nothing new. Writing the same day's files again changes nothing: same names, same bytes
(an already processed file is skipped by its checksum).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

INCOMING = "usage/incoming"
METERS: list[dict[str, str]] = [
    {"meter": "data_gb", "unit": "GB", "price_per_unit": "0.10"},
    {"meter": "voice_min", "unit": "min", "price_per_unit": "0.015"},
    {"meter": "sms", "unit": "msg", "price_per_unit": "0.05"},
]
RECORDS_PER_FILE = 200

DEMO_JOB: dict[str, Any] = {
    "name": "Usage mediation (every 5 minutes)",
    "job_type": "usage_mediation",
    "description": (
        "Mediates the usage files dropped in usage/incoming: rates data, voice and SMS per account and day, "
        "keeps bad and filtered records with their reason, and moves each file to usage/incoming/processed."
    ),
    "cron": "*/5 * * * *",
    "timezone": "UTC",
    "properties": {"source_dir": INCOMING, "pattern": "*.csv", "format": "csv", "meters": METERS},
}


def seed_usage_demo(engine: Engine, files_root: Path, *, day: date | None = None) -> dict[str, Any]:
    """Write the day's demo usage files (the billing tables are migrated); returns what was written."""
    day = day or datetime.now(UTC).date()
    active, inactive = _accounts(engine)
    incoming = files_root / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {"directory": INCOMING, "files": [], "records": 0, "bad_lines": 0}
    for part, seed in (("a", 1), ("b", 2)):
        name = f"usage-{day:%Y%m%d}-{part}.csv"
        lines, bad = _file_lines(day, part, seed, active, inactive)
        (incoming / name).write_text("\n".join(lines) + "\n")
        written["files"].append(name)
        written["records"] += len(lines) - 1
        written["bad_lines"] += bad
    return written


def _accounts(engine: Engine) -> tuple[list[str], list[str]]:
    """Up to 50 active account numbers and a few inactive ones (the demo ledger's first, if not seeded yet)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT account_number, status FROM accounts ORDER BY id LIMIT 500")).all()
    active = [r.account_number for r in rows if r.status == "ACTIVE"][:50]
    inactive = [r.account_number for r in rows if r.status != "ACTIVE"][:3]
    if not active:
        active = [f"AC{n:08d}" for n in range(1, 21)]
    return active, inactive


def _file_lines(day: date, part: str, seed: int, active: list[str], inactive: list[str]) -> tuple[list[str], int]:
    rng = random.Random(f"{day.isoformat()}-{seed}")
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    lines = ["event_id,account_number,meter,quantity,occurred_at"]
    for n in range(RECORDS_PER_FILE):
        meter = ("data_gb", "voice_min", "sms")[n % 3]
        quantity = {"data_gb": f"{rng.randrange(1, 5000) / 1000:.3f}", "voice_min": str(rng.randrange(1, 90)),
                    "sms": "1"}[meter]
        at = (start + timedelta(seconds=rng.randrange(86400))).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"DEMO-{day:%Y%m%d}-{part}-{n:05d},{rng.choice(active)},{meter},{quantity},{at}")
    event = f"DEMO-{day:%Y%m%d}-{part}"
    noon = f"{day.isoformat()}T12:00:00Z"
    bad = [
        f"{event}-missing,{active[0]},,1,{noon}",  # failed: missing meter
        f"{event}-negative,{active[0]},data_gb,-2.5,{noon}",  # failed: negative quantity
        f"{event}-when,{active[0]},data_gb,1,yesterday",  # failed: bad timestamp
        f"{event}-local,{active[0]},data_gb,1,{day.isoformat()}T12:00:00",  # failed: no time zone
        f"{event}-meter,{active[0]},video_hours,1,{noon}",  # failed: unknown meter
        f"{event}-who,AC99999999,sms,1,{noon}",  # filtered: unknown account
        lines[1],  # filtered: the first record again (duplicate event id)
    ]
    if inactive:
        bad.append(f"{event}-inactive,{inactive[0]},sms,1,{noon}")  # filtered: suspended or closed account
    for offset, line in enumerate(bad):
        lines.insert(10 + offset * 20, line)
    return lines, len(bad)
