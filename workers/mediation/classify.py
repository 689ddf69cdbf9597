"""Mediate and rate, set-based: one statement classifies every staged record of a file.

A record the reader already failed keeps its reason. Of the others, in this order: an event id
mediated before (``usage_events``, any earlier run or file) or earlier in the same file, and an
unknown or inactive account are *filtered*; what remains is mediated and rated. PostgreSQL rates
here (quantity x price, rounded half up to 6 decimals) and takes the UTC day of the instant; SQLite
got both from the reader.

Evaluation writes the result to the file's classified table (``reason`` NULL = mediated); apply
re-checks only what can have changed since — account statuses, and events mediated meanwhile — with
statements that touch the few rows concerned, instead of classifying the whole file again.
The table is in event id order (the window sorts by it), so apply inserts events in key order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from workers.billing.tables import AccountStatus
from workers.mediation.records import FILTERED_REASONS, MICRO, RejectReason
from workers.mediation.tables import RejectKind

R = RejectReason
ACTIVE = AccountStatus.ACTIVE


def _price(prices: dict[str, Decimal], params: dict[str, Any]) -> tuple[str, str]:
    """The price of ``s.meter`` as an expression (a ``CASE`` for a few meters, else a joined list)."""
    for n, (meter, price) in enumerate(sorted(prices.items())):
        params[f"meter_{n}"] = meter
        params[f"price_{n}"] = str(price)
    if len(prices) <= 16:
        whens = " ".join(f"WHEN :meter_{n} THEN CAST(:price_{n} AS numeric)" for n in range(len(prices)))
        return f"CASE s.meter {whens} END", ""
    rows = ", ".join(f"(CAST(:meter_{n} AS text), CAST(:price_{n} AS numeric))" for n in range(len(prices)))
    return "p.price", f"LEFT JOIN (VALUES {rows}) AS p(meter, price) ON p.meter = s.meter AND s.reason IS NULL"


def roomy(conn: Connection) -> None:
    """Give a file's sorts and hashes memory instead of disk, for this transaction (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")


def classify(conn: Connection, raw: str, classified: str, prices: dict[str, Decimal]) -> None:
    """Create the table ``classified`` from the staged records in ``raw``, against current billing data."""
    postgres = conn.dialect.name == "postgresql"
    params: dict[str, Any] = {}
    roomy(conn)
    if postgres:
        price, rated = _price(prices, params)
        amount = f"ROUND(s.quantity * {price}, 6)"
        day = "CAST(s.occurred_at AT TIME ZONE 'UTC' AS date)"
    else:
        amount, day, rated = "s.amount", "s.usage_day", ""
    repeated = "s.first_line < s.line_no"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {classified}")
    conn.execute(text(
        f"CREATE {'UNLOGGED ' if postgres else ''}TABLE {classified} AS "
        f"SELECT s.line_no, s.event_id, s.account_number, s.meter, s.quantity, {amount} AS amount, "
        f"s.occurred_at, {day} AS usage_day, a.id AS account_id, "
        "CASE WHEN s.reason IS NOT NULL THEN s.reason "
        f"WHEN e.event_id IS NOT NULL THEN '{R.ALREADY_MEDIATED}' "
        f"WHEN {repeated} THEN '{R.DUPLICATE_IN_FILE}' "
        f"WHEN a.id IS NULL THEN '{R.UNKNOWN_ACCOUNT}' "
        f"WHEN a.status <> '{ACTIVE}' THEN '{R.INACTIVE_ACCOUNT}' END AS reason, "
        "CASE WHEN s.reason IS NOT NULL THEN s.message "
        f"WHEN e.event_id IS NOT NULL THEN {_mediated_by('e.run_id')} "
        f"WHEN {repeated} THEN 'event id already on line ' || CAST(s.first_line AS TEXT) "
        "WHEN a.id IS NULL THEN 'unknown account ' || s.account_number "
        f"WHEN a.status <> '{ACTIVE}' THEN 'account ' || s.account_number || ' is ' || a.status "
        "END AS message "
        "FROM (SELECT st.*, MIN(st.line_no) OVER (PARTITION BY st.event_id, st.reason IS NULL) AS first_line "
        f"FROM {raw} st) s "
        "LEFT JOIN accounts a ON a.account_number = s.account_number AND s.reason IS NULL "
        "LEFT JOIN usage_events e ON e.event_id = s.event_id AND s.reason IS NULL "
        f"{rated}"
    ), params)
    if postgres:
        # Statistics of ``reason`` alone: what apply's statements filter on (``reason IS NULL`` keeps a hash join
        # with accounts, not a nested loop); the text columns would triple the cost and change no plan.
        conn.exec_driver_sql(f"ANALYZE {classified} (reason)")


def _mediated_by(run_id: str) -> str:
    return f"'event id already mediated by run ' || CAST({run_id} AS TEXT)"


def deactivated(conn: Connection, classified: str) -> int:
    """Apply-time: records of accounts suspended or closed since evaluation are filtered now."""
    return int(conn.execute(text(
        f"UPDATE {classified} SET reason = '{R.INACTIVE_ACCOUNT}', "
        f"message = 'account ' || {classified}.account_number || ' is ' || a.status "
        f"FROM accounts a WHERE a.status <> '{ACTIVE}' AND a.id = {classified}.account_id "
        f"AND {classified}.reason IS NULL"
    )).rowcount)


def reactivated(conn: Connection, classified: str) -> int:
    """Apply-time: records filtered for an unknown or inactive account whose account is active now are mediated."""
    return int(conn.execute(text(
        f"UPDATE {classified} SET reason = NULL, message = NULL, account_id = a.id "
        f"FROM accounts a WHERE {classified}.reason IN ('{R.UNKNOWN_ACCOUNT}', '{R.INACTIVE_ACCOUNT}') "
        f"AND a.account_number = {classified}.account_number AND a.status = '{ACTIVE}'"
    )).rowcount)


def recheck_events(conn: Connection, classified: str) -> int:
    """Apply-time, after a unique violation: events mediated meanwhile (by another file or run) are filtered."""
    return int(conn.execute(text(
        f"UPDATE {classified} SET reason = '{R.ALREADY_MEDIATED}', message = {_mediated_by('e.run_id')} "
        f"FROM usage_events e WHERE e.event_id = {classified}.event_id AND {classified}.reason IS NULL"
    )).rowcount)


def kind_sql(column: str = "reason") -> str:
    """``FAILED`` or ``FILTERED`` for a reason column."""
    filtered = ", ".join(f"'{r}'" for r in sorted(FILTERED_REASONS))
    return f"CASE WHEN {column} IN ({filtered}) THEN '{RejectKind.FILTERED}' ELSE '{RejectKind.FAILED}' END"


@dataclass(frozen=True, kw_only=True)
class Totals:
    """The counts of a classified file, as shown on its item and in the run summary."""

    records: int = 0
    mediated: int = 0
    filtered: int = 0
    failed: int = 0
    amount: Decimal = Decimal("0.000000")
    by_meter: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)
    by_currency: dict[str, str] = field(default_factory=dict)
    """The rated amount per currency of the records' accounts."""

    def as_detail(self) -> dict[str, Any]:
        return {
            "records": self.records, "mediated": self.mediated, "filtered": self.filtered, "failed": self.failed,
            "amount": str(self.amount), "by_meter": self.by_meter, "by_reason": self.by_reason,
            "by_currency": self.by_currency,
        }


def decimal(value: Any) -> Decimal:
    """A sum read back as ``Decimal`` with 6 decimals (SQLite sums binary floats)."""
    if value is None:
        return Decimal("0.000000")
    if isinstance(value, float):
        return Decimal(f"{value:.6f}")
    return Decimal(value).quantize(MICRO)


def totals(conn: Connection, classified: str, units: dict[str, str]) -> Totals:
    """Count a classified file in one pass: records by reason, and per meter the events, quantity and amount."""
    by_reason: dict[str, int] = {}
    by_meter: dict[str, dict[str, Any]] = {}
    by_currency: dict[str, Decimal] = {}
    mediated = 0
    amount = Decimal("0.000000")
    rows = conn.execute(text(
        "SELECT c.reason, c.meter, a.currency, COUNT(*) AS n, SUM(c.quantity) AS quantity, SUM(c.amount) AS amount "
        f"FROM {classified} c LEFT JOIN accounts a ON a.id = c.account_id AND c.reason IS NULL "
        "GROUP BY c.reason, c.meter, a.currency ORDER BY c.meter"
    ))
    for r in rows:
        if r.reason is not None:
            by_reason[r.reason] = by_reason.get(r.reason, 0) + int(r.n)
            continue
        meter_amount = decimal(r.amount)
        mediated += int(r.n)
        amount += meter_amount
        by_currency[r.currency] = by_currency.get(r.currency, Decimal("0.000000")) + meter_amount
        meter = by_meter.setdefault(r.meter, {"unit": units.get(r.meter, ""), "events": 0,
                                              "quantity": "0.000000", "amount": "0.000000"})
        meter["events"] += int(r.n)
        meter["quantity"] = str(Decimal(meter["quantity"]) + decimal(r.quantity))
        meter["amount"] = str(Decimal(meter["amount"]) + meter_amount)
    failed = sum(n for reason, n in by_reason.items() if reason not in FILTERED_REASONS)
    filtered = sum(by_reason.values()) - failed
    return Totals(records=mediated + filtered + failed, mediated=mediated, filtered=filtered, failed=failed,
                  amount=amount, by_meter=by_meter, by_reason=dict(sorted(by_reason.items())),
                  by_currency={currency: str(total) for currency, total in sorted(by_currency.items())})
