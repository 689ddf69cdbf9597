"""A deterministic, realistic demo ledger, generated set-based in the database.

Every value is a hash of the account id and the seed, so the same ``(accounts, seed, as_of)`` gives
the same ledger on PostgreSQL (``generate_series``) and on SQLite (a recursive CTE). Each account
has six monthly invoices; its payment profile decides which are still open:

- 55 % pay on time (only the current, not yet due, invoice is open);
- 15 % / 10 % / 8 % are one / two / three months late; 4 % have paid nothing for six months;
- 4 % dispute an old invoice; 4 % owe only a few cents past due (below a typical minimum).
Some late accounts already sit at a dunning tier, and a few paid-up ones still do (to be cleared).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Date, Engine, bindparam, func, select, text
from sqlalchemy.exc import DBAPIError

from scheduler.jobkit.sql import SqlDialect
from workers.billing import tables

log = logging.getLogger(__name__)

MONTHS = 6


# Distinct multipliers per salt make the draws of one account independent of each other.
_MULTIPLIERS = (2654435761, 2246822519, 3266489917, 668265263, 374761393, 3323648329, 1828730741)
_MODULUS = 1000003


def _hash(expr: str, salt: int) -> str:
    """A deterministic pseudo-random integer in 0..99 from an integer SQL expression, the seed and a salt."""
    multiplier = _MULTIPLIERS[salt % len(_MULTIPLIERS)]
    return f"(((CAST({expr} AS bigint) + :seed * 1009) * {multiplier}) % {_MODULUS} % 100)"


def _profile() -> str:
    return _hash("a.id", 3)


def seed_demo(engine: Engine, *, accounts: int = 1000, seed: int = 7, as_of: date | None = None) -> dict[str, Any]:
    """Load ``accounts`` demo accounts into the (migrated) billing tables; an already seeded database is left
    as it is. Returns the row counts."""
    as_of = as_of or datetime.now(UTC).date()
    with engine.connect() as conn:
        existing = conn.execute(select(func.count()).select_from(tables.accounts)).scalar_one()
    if existing:
        return {**_counts(engine), "seeded": False}
    started = time.perf_counter()
    d = SqlDialect.of(engine)
    params = {"n": accounts, "seed": seed, "as_of": as_of}
    with engine.begin() as conn:
        if d.is_postgres:
            _skip_foreign_key_triggers(conn)
        for statement in _statements(d):
            conn.execute(statement, params)
        if d.is_postgres:
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('accounts', 'id'), (SELECT MAX(id) FROM accounts))"
            )
    if d.is_postgres:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE accounts, invoices, payments")
    counts = _counts(engine)
    log.info("seeded %s demo accounts in %.1fs", accounts, time.perf_counter() - started)
    return {**counts, "seeded": True}


def _skip_foreign_key_triggers(conn: Connection) -> None:
    """Bulk-load without per-row foreign-key checks when the role may (the rows are consistent by
    construction; the checks cost most of the load time). Without the privilege, load with them."""
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    except DBAPIError:
        log.info("loading the demo ledger with foreign-key checks (role may not skip them)")


def _statements(d: SqlDialect) -> list[Any]:
    p = _profile()
    late = _hash("a.id", 5)
    tier = (
        f"CASE WHEN {p} >= 88 AND {p} < 92 THEN 3 WHEN {p} >= 70 AND {p} < 88 AND {late} < 50 THEN 1 "
        f"WHEN {p} < 55 AND {late} < 3 THEN 2 ELSE 0 END"
    )
    status = (
        f"CASE WHEN {_hash('a.id', 2)} < 1 THEN 'CLOSED' WHEN ({p} >= 88 AND {p} < 92 AND {late} < 50) "
        f"OR ({p} < 55 AND {late} < 2) THEN 'SUSPENDED' ELSE 'ACTIVE' END"
    )
    category = (
        f"CASE WHEN {_hash('a.id', 1)} < 60 THEN 'RESIDENTIAL' WHEN {_hash('a.id', 1)} < 90 THEN 'BUSINESS' "
        "ELSE 'ENTERPRISE' END"
    )
    insert_accounts = text(
        "INSERT INTO accounts (id, account_number, name, category, status, dunning_tier, email) "
        f"SELECT a.id, 'AC' || {d.zero_pad('a.id', 8)}, 'Customer ' || CAST(a.id AS text), {category}, "
        f"{status}, {tier}, 'ac' || CAST(a.id AS text) || '@example.com' "
        f"FROM (SELECT s.i AS id FROM {d.series('s', 'n')}) a"
    )
    # Per account once: its profile, how many months of history it has, and the newest month it paid.
    profiled = (
        "SELECT h.id, h.p, "
        "CASE WHEN h.p < 55 THEN 0 WHEN h.p < 70 THEN 1 WHEN h.p < 80 THEN 2 WHEN h.p < 88 THEN 3 "
        "WHEN h.p < 92 THEN 5 ELSE 0 END AS open_upto, "
        "CASE WHEN h.p >= 88 AND h.p < 92 THEN 6 ELSE 4 END AS months "
        f"FROM (SELECT a.id, {_profile()} AS p FROM accounts a) h"
    )
    cents = f"(2000 + (((CAST(pr.id AS bigint) * {MONTHS} + m.m + :seed) * {_MULTIPLIERS[6]}) % {_MODULUS}) % 48000)"
    ledger = (
        "SELECT pr.id, m.m, "
        "CASE WHEN m.m <= pr.open_upto OR (pr.p >= 92 AND pr.p < 96 AND m.m = 2) OR (pr.p >= 96 AND m.m = 1) "
        "THEN 1 ELSE 0 END AS is_open, "
        "CASE WHEN pr.p >= 92 AND pr.p < 96 AND m.m = 2 THEN 1 ELSE 0 END AS is_disputed, "
        f"CASE WHEN pr.p >= 96 AND m.m = 1 THEN 0.35 ELSE {cents} / 100.0 END AS amount "
        f"FROM ({profiled}) pr JOIN (SELECT s.i - 1 AS m FROM {d.series('s', 'months')}) m ON m.m < pr.months"
    )
    # Month m (0 = current) is issued m*30+5..14 days before as_of and due 30 days later.
    issued = d.add_days(d.date_param("as_of"), "-(x.m * 30 + 5 + x.id % 10)")
    due = d.add_days(issued, "30")
    # One bill cycle run per issue day: 1 for the oldest month's first day up to 10 * months.
    insert_invoices = text(
        "INSERT INTO invoices (account_id, number, issued_on, due_on, amount, balance, status, disputed, kind, "
        "bill_cycle_run_id) "
        f"SELECT x.id, 'INV-' || {d.zero_pad('x.id', 8)} || '-' || CAST(x.m AS text), {issued}, {due}, "
        "x.amount, CASE WHEN x.is_open = 1 THEN x.amount ELSE 0 END, "
        "CASE WHEN x.is_open = 1 THEN 'OPEN' ELSE 'PAID' END, "
        "CASE WHEN x.is_disputed = 1 THEN true ELSE false END, 'INVOICE', "
        "(:months - 1 - x.m) * 10 + (9 - x.id % 10) + 1 "
        f"FROM ({ledger}) x"
    )
    paid_at = (
        "(CAST(i.due_on AS timestamp) - interval '2 days' + interval '10 hours') AT TIME ZONE 'UTC'"
        if d.is_postgres else "datetime(i.due_on, '-2 days', '+10 hours')"
    )
    insert_payments = text(
        "INSERT INTO payments (account_id, invoice_id, amount, received_at) "
        f"SELECT i.account_id, i.id, i.amount, {paid_at} FROM invoices i WHERE i.status = 'PAID'"
    )
    typed = [bindparam("as_of", type_=Date())]
    return [
        insert_accounts,
        insert_invoices.bindparams(*typed, bindparam("months", value=MONTHS)),
        insert_payments,
    ]


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in (("accounts", tables.accounts), ("invoices", tables.invoices),
                                ("payments", tables.payments))
        }
