"""Dunning apply: re-check each staged item against current data, then apply the chunk set-based.

Per chunk: the current state of the chunk's accounts decides which items still hold; those become
``dunning_actions`` rows (``UNIQUE(run_id, account_id)``), and a handful of statements join those
rows to set tiers, suspend or reinstate, write off and post late fees. Every statement is idempotent,
so applying a chunk twice changes nothing the second time.

On PostgreSQL with the billing tables in the scheduler's database the decisions, the actions and the
items' outcomes are one statement (:func:`_settle_in_sql`); elsewhere (SQLite, a billing database of
its own) the items and the accounts are read and decided in Python (:func:`decide`), the same rules.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, bindparam, text
from sqlalchemy.engine import Connection

from scheduler.jobkit import (
    ItemOutcome,
    ItemWriter,
    RunContext,
    RunItems,
    SqlDialect,
    UTCDateTime,
    insert_or_ignore,
    insert_or_ignore_select,
)
from workers.billing.tables import AccountStatus, InvoiceKind, InvoiceStatus, dunning_actions, invoices
from workers.dunning.evaluate import as_of_date, due_subquery, properties, target_tier
from workers.dunning.properties import REINSTATE, DunningAction, DunningProperties

LATE_FEE_TERMS = timedelta(days=14)


@dataclass(frozen=True, kw_only=True)
class AccountNow:
    """An account's state at apply time."""

    tier: int
    status: str
    amount_due: Decimal
    days_past_due: int
    applied: bool


@dataclass(frozen=True, kw_only=True)
class Decision:
    action: dict[str, Any] | None = None
    skip_reason: str | None = None


def decide(props: DunningProperties, item: dict[str, Any], now: AccountNow | None) -> Decision:
    """Whether a staged item still holds: its ``dunning_actions`` row, or why it is skipped."""
    if now is None:
        return Decision(skip_reason="account no longer in scope")
    if now.applied:
        return Decision()
    from_tier, to_tier = int(item["from_tier"]), int(item["to_tier"])
    if now.status == AccountStatus.CLOSED:
        return Decision(skip_reason="account closed since preview")
    if now.tier != from_tier:
        return Decision(skip_reason=f"tier changed since preview (now {now.tier})")
    if to_tier > 0:
        if props.target_tier(now.amount_due, now.days_past_due) < to_tier:
            paid = now.amount_due < Decimal(str(item["amount_due"]))
            return Decision(skip_reason="paid since preview" if paid else "no longer past due")
    elif now.amount_due > 0:
        return Decision(skip_reason="past due again since preview")
    actions = [str(a) for a in item.get("actions") or []]
    new_status = None
    if DunningAction.SUSPEND in actions:
        new_status = AccountStatus.SUSPENDED
    elif REINSTATE in actions and now.status == AccountStatus.SUSPENDED:
        new_status = AccountStatus.ACTIVE
    fee = item.get("late_fee") if DunningAction.LATE_FEE in actions else None
    return Decision(action={
        "account_id": int(item["account_id"]),
        "from_tier": from_tier,
        "to_tier": to_tier,
        "actions": actions,
        "new_status": new_status,
        "fee_amount": Decimal(str(fee)) if fee is not None else None,
        "write_off_amount": now.amount_due if DunningAction.WRITE_OFF in actions else None,
    })


def apply_chunk(ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
    props, _ = properties(ctx)
    run_items = RunItems(ctx)
    as_of = as_of_date(ctx)
    bounds = {"run_id": ctx.run_id, "first_id": spec["first_id"], "last_id": spec["last_id"]}
    if run_items.share_billing_database and SqlDialect.of(ctx.billing_engine).is_postgres:
        with run_items.billing_transaction() as (billing, outcomes):
            if _settle_in_sql(outcomes, props, chunk_no, bounds, as_of):
                _apply_effects(billing, bounds, as_of)
        return
    items = run_items.planned(chunk_no)
    if not items:
        return
    with run_items.billing_transaction() as (billing, outcomes):
        current = _current_state(billing, bounds, as_of)
        skipped: dict[str, list[str]] = defaultdict(list)
        rows: list[dict[str, Any]] = []
        for key, item in items.items():
            decision = decide(props, item, current.get(int(item["account_id"])))
            if decision.skip_reason is not None:
                skipped[decision.skip_reason].append(key)
            elif decision.action is not None:
                rows.append({**decision.action, "run_id": ctx.run_id})
        # Stamped with the instant the items' outcomes get: an action and its item are applied together.
        _insert_actions(billing, rows, outcomes.now)
        _apply_effects(billing, bounds, as_of)
        _record_outcomes(outcomes, chunk_no, items, skipped)


def _settle_in_sql(outcomes: ItemWriter, props: DunningProperties, chunk_no: int, bounds: dict[str, Any],
                   as_of: Any) -> int:
    """PostgreSQL, billing tables beside the items: :func:`decide` and :func:`_insert_actions` as one statement.

    The chunk's accounts are locked first (in id order, until the apply commits: an overlapping run
    waits, then sees "tier changed"), so the next statement reads them as they are now: each planned
    item is joined to its account and its past-due invoices (index lookups, whatever the planner
    guesses of a new run's items), gets its skip reason or its ``dunning_actions`` row, and every item
    its outcome, without a row reaching Python. Returns how many items were settled (none: the chunk
    was applied already).
    """
    conn = outcomes.conn
    conn.execute(text("SELECT COUNT(*) FROM (SELECT a.id FROM accounts a WHERE a.id BETWEEN :first_id AND :last_id "
                      "ORDER BY a.id FOR UPDATE) locked"), bounds)
    d = SqlDialect.of(conn)
    days = d.days_between(d.date_param("as_of"), "d.oldest_due")
    item = "CAST(detail ->> '{}' AS {})"
    reason = (
        "CASE WHEN a.id IS NULL THEN 'account no longer in scope' "
        "WHEN da.account_id IS NOT NULL THEN NULL "
        f"WHEN a.status = '{AccountStatus.CLOSED}' THEN 'account closed since preview' "
        "WHEN a.dunning_tier <> p.from_tier THEN 'tier changed since preview (now ' || a.dunning_tier || ')' "
        f"WHEN p.to_tier > 0 AND {target_tier(props, 'COALESCE(d.amount_due, 0)', f'COALESCE({days}, 0)')} "
        "< p.to_tier THEN CASE WHEN COALESCE(d.amount_due, 0) < p.previewed_due THEN 'paid since preview' "
        "ELSE 'no longer past due' END "
        "WHEN p.to_tier = 0 AND d.amount_due > 0 THEN 'past due again since preview' END"
    )
    staged = (
        f"SELECT item_id, {item.format('account_id', 'integer')} AS account_id, "
        f"{item.format('from_tier', 'integer')} AS from_tier, {item.format('to_tier', 'integer')} AS to_tier, "
        f"{item.format('amount_due', 'numeric')} AS previewed_due, {item.format('late_fee', 'numeric')} AS late_fee, "
        "COALESCE(detail -> 'actions', CAST('[]' AS jsonb)) AS actions FROM planned"
    )
    decide = (
        "SELECT x.*, CASE WHEN x.reason IS NULL THEN :ok ELSE :skipped END AS outcome, "
        "CASE WHEN x.reason IS NOT NULL THEN jsonb_build_object('reason', x.reason) "
        f"WHEN {_has('x.actions', DunningAction.WEBHOOK)} THEN CAST(:webhook AS jsonb) END AS facts "
        "FROM (SELECT p.*, a.status, COALESCE(d.amount_due, 0) AS amount_due, "
        f"da.account_id IS NOT NULL AS applied, {reason} AS reason FROM ({staged}) p "
        "LEFT JOIN accounts a ON a.id = p.account_id "
        f"LEFT JOIN LATERAL ({due_subquery(d, 'i.account_id = p.account_id')}) d ON true "
        # An action of this run already there (its items set back to planned): ok, nothing applied twice.
        "LEFT JOIN dunning_actions da ON da.run_id = :run_id AND da.account_id = p.account_id) x"
    )
    actions = (
        "INSERT INTO dunning_actions (run_id, account_id, from_tier, to_tier, actions, new_status, fee_amount, "
        "write_off_amount, applied_at) "
        "SELECT :run_id, account_id, from_tier, to_tier, CAST(actions AS json), "
        f"CASE WHEN {_has('actions', DunningAction.SUSPEND)} THEN '{AccountStatus.SUSPENDED}' "
        f"WHEN {_has('actions', REINSTATE)} AND status = '{AccountStatus.SUSPENDED}' THEN '{AccountStatus.ACTIVE}' "
        f"END, CASE WHEN {_has('actions', DunningAction.LATE_FEE)} THEN late_fee END, "
        f"CASE WHEN {_has('actions', DunningAction.WRITE_OFF)} THEN amount_due END, :now "
        "FROM decided WHERE reason IS NULL AND NOT applied ON CONFLICT (run_id, account_id) DO NOTHING"
    )
    params = {**bounds, "as_of": as_of, "minimum": props.minimum_account_due, "ok": ItemOutcome.OK,
              "skipped": ItemOutcome.SKIPPED, "webhook": json.dumps({"webhook": "queued"})}
    return outcomes.settle_decided(chunk_no, decide, params, writes={"actions": actions})


def _has(actions: str, action: str) -> str:
    """Whether the ``jsonb`` array ``actions`` lists ``action``."""
    return f"{actions} @> CAST('[\"{action}\"]' AS jsonb)"


def _record_outcomes(outcomes: ItemWriter, chunk_no: int, items: dict[str, dict[str, Any]],
                     skipped: dict[str, list[str]]) -> None:
    """In the apply's transaction: skipped items with their reason, webhook items marked queued, every other
    planned item ok."""
    for reason, keys in skipped.items():
        outcomes.record(chunk_no, keys, ItemOutcome.SKIPPED, {"reason": reason})
    webhooks = [k for k, item in items.items() if DunningAction.WEBHOOK in (item.get("actions") or [])]
    outcomes.record(chunk_no, webhooks, None, {"webhook": "queued"})
    outcomes.settle(chunk_no, ItemOutcome.OK)


def _insert_actions(conn: Connection, rows: list[dict[str, Any]], applied_at: datetime) -> None:
    """The chunk's ``dunning_actions`` rows; one already there (a re-delivered apply) stays as it is."""
    if conn.dialect.name != "postgresql":
        insert_or_ignore(conn, dunning_actions, [{**row, "applied_at": applied_at} for row in rows])
        return
    if not rows:
        return
    # One statement for the chunk: its rows as one JSON parameter (money as decimal strings, exact).
    records = [{**row, "fee_amount": _text(row["fee_amount"]), "write_off_amount": _text(row["write_off_amount"])}
               for row in rows]
    conn.execute(text(
        "INSERT INTO dunning_actions (run_id, account_id, from_tier, to_tier, actions, new_status, fee_amount, "
        "write_off_amount, applied_at) SELECT r.run_id, r.account_id, r.from_tier, r.to_tier, r.actions, "
        "r.new_status, r.fee_amount, r.write_off_amount, :applied_at "
        "FROM json_to_recordset(CAST(:rows AS json)) AS r(run_id integer, account_id integer, from_tier integer, "
        "to_tier integer, actions json, new_status text, fee_amount numeric, write_off_amount numeric) "
        "ON CONFLICT (run_id, account_id) DO NOTHING"
    ).bindparams(bindparam("applied_at", type_=UTCDateTime())),
        {"rows": json.dumps(records), "applied_at": applied_at})


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _current_state(conn: Connection, bounds: dict[str, Any], as_of: Any) -> dict[int, AccountNow]:
    """The chunk's accounts as they are now, locked until the apply commits."""
    d = SqlDialect.of(conn)
    days = d.days_between(d.date_param("as_of"), "d.oldest_due")
    statement = text(
        "SELECT a.id, a.dunning_tier, a.status, "
        f"{d.money_text('COALESCE(d.amount_due, 0)')} AS amount_due, COALESCE({days}, 0) AS days_past_due, "
        "CASE WHEN da.id IS NULL THEN 0 ELSE 1 END AS applied "
        f"FROM accounts a LEFT JOIN ({due_subquery(d)}) d ON d.account_id = a.id "
        "LEFT JOIN dunning_actions da ON da.run_id = :run_id AND da.account_id = a.id "
        "WHERE a.id BETWEEN :first_id AND :last_id"
        # Another run applying these accounts now waits until it commits, then this one sees its changes
        # ("tier changed"): two overlapping runs cannot both escalate an account (SQLite locks at BEGIN).
        + (" FOR UPDATE OF a" if conn.dialect.name == "postgresql" else "")
    ).bindparams(bindparam("as_of", type_=Date()))
    return {
        r.id: AccountNow(tier=r.dunning_tier, status=r.status, amount_due=Decimal(r.amount_due),
                         days_past_due=int(r.days_past_due), applied=bool(r.applied))
        for r in conn.execute(statement, {**bounds, "as_of": as_of})
    }


def _apply_effects(conn: Connection, bounds: dict[str, Any], as_of: Any) -> None:
    """Set tiers and statuses, write off, post late fees: each joined to this run's actions in the chunk."""
    d = SqlDialect.of(conn)
    mine = "da.run_id = :run_id AND da.account_id BETWEEN :first_id AND :last_id"
    conn.execute(
        text(
            "UPDATE accounts SET dunning_tier = da.to_tier, status = COALESCE(da.new_status, accounts.status) "
            f"FROM dunning_actions da WHERE {mine} AND da.account_id = accounts.id "
            f"AND accounts.status <> '{AccountStatus.CLOSED}'"
        ),
        bounds,
    )
    conn.execute(
        text(
            f"UPDATE invoices SET balance = 0, status = '{InvoiceStatus.WRITTEN_OFF}' "
            f"FROM dunning_actions da WHERE {mine} AND da.write_off_amount IS NOT NULL "
            f"AND invoices.account_id = da.account_id AND invoices.status = '{InvoiceStatus.OPEN}' "
            f"AND invoices.balance > 0 AND NOT invoices.disputed AND invoices.due_on < {d.date_param('as_of')}"
        ).bindparams(bindparam("as_of", type_=Date())),
        {**bounds, "as_of": as_of},
    )
    number = "'LF-' || CAST(da.run_id AS text) || '-' || CAST(da.account_id AS text)"
    fees = text(
        f"SELECT da.account_id, {number}, {d.date_param('as_of')}, {d.date_param('fee_due')}, "
        f"da.fee_amount, da.fee_amount, '{InvoiceStatus.OPEN}', false, '{InvoiceKind.LATE_FEE}' "
        f"FROM dunning_actions da WHERE {mine} AND da.fee_amount IS NOT NULL"
    ).bindparams(bindparam("as_of", type_=Date()), bindparam("fee_due", type_=Date()))
    insert_or_ignore_select(
        conn, invoices, ["account_id", "number", "issued_on", "due_on", "amount", "balance", "status", "disputed",
                         "kind"], fees, {**bounds, "as_of": as_of, "fee_due": as_of + LATE_FEE_TERMS}, keys=["number"],
    )
