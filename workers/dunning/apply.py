"""Dunning apply: re-check each staged item against current data, then apply the chunk set-based.

Per chunk: one query reads the current state of the chunk's accounts; the items still justified
become ``dunning_actions`` rows (``UNIQUE(run_id, account_id)``), and a handful of statements join
those rows to set tiers, suspend or reinstate, write off and post late fees. Every statement is
idempotent, so applying a chunk twice changes nothing the second time.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, bindparam, text
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from scheduler.db import UTCDateTime
from scheduler.jobtypes import RunContext
from scheduler.models import ItemOutcome
from workers.billing.tables import AccountStatus, InvoiceKind, InvoiceStatus, dunning_actions
from workers.dunning.evaluate import as_of_date, due_subquery, properties
from workers.dunning.properties import REINSTATE, DunningAction, DunningProperties
from workers.sql import SqlDialect, batched, same_database

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
    same_db = same_database(ctx.engine, ctx.billing_engine)
    with ctx.engine.connect() as conn:
        items = _planned_items(conn, ctx.run_id, chunk_no)
    if not items:
        return
    as_of = as_of_date(ctx)
    now = ctx.clock.now()
    bounds = {"run_id": ctx.run_id, "first_id": spec["first_id"], "last_id": spec["last_id"]}
    with ctx.billing_engine.begin() as billing:
        current = _current_state(billing, bounds, as_of)
        skipped: dict[str, list[str]] = defaultdict(list)
        rows: list[dict[str, Any]] = []
        for key, item in items.items():
            decision = decide(props, item, current.get(int(item["account_id"])))
            if decision.skip_reason is not None:
                skipped[decision.skip_reason].append(key)
            elif decision.action is not None:
                rows.append({**decision.action, "run_id": ctx.run_id, "applied_at": now})
        if rows:
            billing.execute(_insert_ignore(billing), rows)
        _apply_effects(billing, bounds, as_of)
        not_applied = {k for keys in skipped.values() for k in keys}
        webhooks = [k for k, item in items.items()
                    if DunningAction.WEBHOOK in (item.get("actions") or []) and k not in not_applied]
        if same_db:
            _record_outcomes(billing, ctx.run_id, chunk_no, skipped, webhooks, now)
    if not same_db:
        with ctx.engine.begin() as conn:
            _record_outcomes(conn, ctx.run_id, chunk_no, skipped, webhooks, now)


def _planned_items(conn: Connection, run_id: int, chunk_no: int) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        text("SELECT item_key, detail FROM run_item WHERE run_id = :run_id AND chunk_no = :chunk_no "
             "AND outcome = :planned"),
        {"run_id": run_id, "chunk_no": chunk_no, "planned": ItemOutcome.PLANNED},
    ).all()
    return {r.item_key: json.loads(r.detail) if isinstance(r.detail, str) else r.detail for r in rows}


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


def _insert_ignore(conn: Connection) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    return module.insert(dunning_actions).on_conflict_do_nothing()


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
    conn.execute(
        text(
            "INSERT INTO invoices (account_id, number, issued_on, due_on, amount, balance, status, disputed, kind) "
            f"SELECT da.account_id, {number}, {d.date_param('as_of')}, {d.date_param('fee_due')}, "
            f"da.fee_amount, da.fee_amount, '{InvoiceStatus.OPEN}', false, '{InvoiceKind.LATE_FEE}' "
            f"FROM dunning_actions da WHERE {mine} AND da.fee_amount IS NOT NULL "
            "ON CONFLICT (number) DO NOTHING"
        ).bindparams(bindparam("as_of", type_=Date()), bindparam("fee_due", type_=Date())),
        {**bounds, "as_of": as_of, "fee_due": as_of + LATE_FEE_TERMS},
    )


def _record_outcomes(
    conn: Connection, run_id: int, chunk_no: int, skipped: dict[str, list[str]], webhooks: list[str], now: Any
) -> None:
    """Skipped items with their reason, webhook items marked queued, every other planned item ok."""
    d = SqlDialect.of(conn)
    base = "run_id = :run_id AND chunk_no = :chunk_no AND outcome = :planned AND item_key IN :keys"
    params: dict[str, Any] = {"run_id": run_id, "chunk_no": chunk_no, "planned": ItemOutcome.PLANNED}
    stamp = bindparam("now", type_=UTCDateTime())
    keys: BindParameter[Any] = bindparam("keys", expanding=True)
    skip = text(
        f"UPDATE run_item SET outcome = :skipped, applied_at = :now, "
        f"detail = {d.json_merge('detail', [('reason', d.text_param('reason'))])} WHERE {base}"
    ).bindparams(stamp, keys)
    for reason, reason_keys in skipped.items():
        for batch in batched(sorted(reason_keys)):
            conn.execute(skip, {**params, "now": now, "skipped": ItemOutcome.SKIPPED, "reason": reason,
                                "keys": list(batch)})
    merged = d.json_merge("detail", [("webhook", "'queued'")])
    queued = text(f"UPDATE run_item SET detail = {merged} WHERE {base}").bindparams(keys)
    for batch in batched(sorted(webhooks)):
        conn.execute(queued, {**params, "keys": list(batch)})
    conn.execute(
        text("UPDATE run_item SET outcome = :ok, applied_at = :now "
             "WHERE run_id = :run_id AND chunk_no = :chunk_no AND outcome = :planned").bindparams(stamp),
        {**params, "now": now, "ok": ItemOutcome.OK},
    )
