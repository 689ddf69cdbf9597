"""Mediate and rate, set-based: one statement classifies every staged record of a file.

A record the reader already failed keeps its reason. Of the others, in this order: an event id
mediated before (``usage_events``, any earlier run or file) or earlier in the same file, and an
unknown or inactive account are *filtered*; what remains is mediated and rated. The result lands in
a temporary table (``usage_classified``) of the caller's transaction, for the statements that count,
stage or apply it. PostgreSQL rates here (quantity x price, rounded half up to 6 decimals) and takes
the UTC day of the instant; SQLite got both from the reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from workers.billing.tables import AccountStatus
from workers.billing.usage_tables import RejectKind
from workers.mediation.records import FILTERED_REASONS, MICRO, RejectReason

CLASSIFIED = "usage_classified"
R = RejectReason


def _prices(prices: dict[str, Decimal], params: dict[str, Any]) -> str:
    rows = []
    for n, (meter, price) in enumerate(sorted(prices.items())):
        params[f"meter_{n}"] = meter
        params[f"price_{n}"] = str(price)
        rows.append(f"(CAST(:meter_{n} AS text), CAST(:price_{n} AS numeric))")
    return f"(VALUES {', '.join(rows)}) AS p(meter, price)"


def classify(conn: Connection, stage: str, prices: dict[str, Decimal]) -> None:
    """Create ``usage_classified`` from the staging table ``stage`` against the current billing data."""
    postgres = conn.dialect.name == "postgresql"
    params: dict[str, Any] = {}
    if postgres:
        # A file is classified in one statement: give its sorts and hashes room instead of disk.
        conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        amount = "ROUND(s.quantity * p.price, 6)"
        day = "CAST(s.occurred_at AT TIME ZONE 'UTC' AS date)"
        rated = f"LEFT JOIN {_prices(prices, params)} ON p.meter = s.meter AND s.reason IS NULL"
    else:
        amount, day, rated = "s.amount", "s.usage_day", ""
    first_seen = "s.first_line < s.line_no"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {CLASSIFIED}")
    conn.execute(text(
        f"CREATE TEMPORARY TABLE {CLASSIFIED} AS "
        f"SELECT s.line_no, s.event_id, s.account_number, s.meter, s.quantity, {amount} AS amount, "
        f"s.occurred_at, {day} AS usage_day, a.id AS account_id, "
        "CASE WHEN s.reason IS NOT NULL THEN s.reason "
        f"WHEN e.event_id IS NOT NULL THEN '{R.ALREADY_MEDIATED}' "
        f"WHEN {first_seen} THEN '{R.DUPLICATE_IN_FILE}' "
        f"WHEN a.id IS NULL THEN '{R.UNKNOWN_ACCOUNT}' "
        f"WHEN a.status <> '{AccountStatus.ACTIVE}' THEN '{R.INACTIVE_ACCOUNT}' END AS reason, "
        "CASE WHEN s.reason IS NOT NULL THEN s.message "
        "WHEN e.event_id IS NOT NULL THEN 'event id already mediated by run ' || CAST(e.run_id AS TEXT) "
        f"WHEN {first_seen} THEN 'event id already on line ' || CAST(s.first_line AS TEXT) "
        "WHEN a.id IS NULL THEN 'unknown account ' || s.account_number "
        f"WHEN a.status <> '{AccountStatus.ACTIVE}' THEN 'account ' || s.account_number || ' is ' || a.status "
        "END AS message "
        "FROM (SELECT st.*, MIN(st.line_no) OVER (PARTITION BY st.event_id, st.reason IS NULL) AS first_line "
        f"FROM {stage} st) s "
        "LEFT JOIN accounts a ON a.account_number = s.account_number AND s.reason IS NULL "
        "LEFT JOIN usage_events e ON e.event_id = s.event_id AND s.reason IS NULL "
        f"{rated}"
    ), params)


def kind_sql(column: str = "reason") -> str:
    """``FAILED`` or ``FILTERED`` for a reason column."""
    filtered = ", ".join(f"'{r}'" for r in sorted(FILTERED_REASONS))
    return f"CASE WHEN {column} IN ({filtered}) THEN '{RejectKind.FILTERED}' ELSE '{RejectKind.FAILED}' END"


def drop(conn: Connection) -> None:
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {CLASSIFIED}")


@dataclass(frozen=True, kw_only=True)
class Totals:
    """The counts of a classified file, as shown on its item and in the run summary."""

    records: int = 0
    mediated: int = 0
    filtered: int = 0
    failed: int = 0
    amount: Decimal = Decimal("0.000000")
    daily_rows: int = 0
    by_meter: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)

    def as_detail(self) -> dict[str, Any]:
        return {
            "records": self.records, "mediated": self.mediated, "filtered": self.filtered, "failed": self.failed,
            "amount": str(self.amount), "daily_rows": self.daily_rows, "by_meter": self.by_meter,
            "by_reason": self.by_reason,
        }


def decimal(value: Any) -> Decimal:
    """A sum read back as ``Decimal`` with 6 decimals (SQLite sums binary floats)."""
    if value is None:
        return Decimal("0.000000")
    if isinstance(value, float):
        return Decimal(f"{value:.6f}")
    return Decimal(value).quantize(MICRO)


def totals(conn: Connection, units: dict[str, str]) -> Totals:
    """Count ``usage_classified``: records by reason, and per meter the events, quantity and rated amount."""
    by_reason = {
        r.reason: int(r.n)
        for r in conn.execute(text(f"SELECT reason, COUNT(*) AS n FROM {CLASSIFIED} GROUP BY reason"))
    }
    mediated = by_reason.pop(None, 0)
    by_meter: dict[str, dict[str, Any]] = {}
    amount = Decimal("0.000000")
    rows = conn.execute(text(
        f"SELECT meter, COUNT(*) AS events, SUM(quantity) AS quantity, SUM(amount) AS amount, "
        f"COUNT(DISTINCT account_id) AS accounts FROM {CLASSIFIED} WHERE reason IS NULL GROUP BY meter ORDER BY meter"
    ))
    for r in rows:
        meter_amount = decimal(r.amount)
        amount += meter_amount
        by_meter[r.meter] = {"unit": units.get(r.meter, ""), "events": int(r.events), "accounts": int(r.accounts),
                             "quantity": str(decimal(r.quantity)), "amount": str(meter_amount)}
    daily_rows = conn.execute(text(
        f"SELECT COUNT(*) FROM (SELECT DISTINCT account_id, meter, usage_day FROM {CLASSIFIED} "
        "WHERE reason IS NULL) g"
    )).scalar_one()
    failed = sum(n for reason, n in by_reason.items() if reason not in FILTERED_REASONS)
    return Totals(
        records=mediated + sum(by_reason.values()), mediated=mediated, filtered=sum(by_reason.values()) - failed,
        failed=failed, amount=amount, daily_rows=int(daily_rows), by_meter=by_meter,
        by_reason=dict(sorted(by_reason.items())),
    )
