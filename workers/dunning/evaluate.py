"""Dunning planning and evaluation: keyset chunks of accounts and one set-based statement per chunk.

``plan`` cuts the accounts in scope into id ranges of ``chunk_size`` with one window query.
``evaluate`` computes every account's target tier in one statement and stages escalations and
clearances as ``planned`` run items: straight ``INSERT … SELECT`` when the billing tables live in
the scheduler's database, else one ``SELECT`` and one bulk insert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Numeric, bindparam, text
from sqlalchemy.sql.elements import BindParameter, TextClause

from scheduler.jobkit import RunContext, RunItems, SqlDialect
from workers.billing.tables import AccountStatus, InvoiceStatus
from workers.dunning.properties import REINSTATE, DunningAction, DunningProperties, DunningRunProperties


@dataclass(frozen=True, kw_only=True)
class Scope:
    """Which accounts a run looks at, as a SQL condition on ``accounts a`` with its parameters."""

    condition: str
    params: dict[str, Any] = field(default_factory=dict)
    expanding: tuple[str, ...] = ()
    empty: bool = False

    def bind(self, statement: TextClause) -> TextClause:
        extra: list[BindParameter[Any]] = [bindparam(name, expanding=True) for name in self.expanding]
        return statement.bindparams(*extra) if extra else statement


def properties(ctx: RunContext) -> tuple[DunningProperties, DunningRunProperties]:
    assert isinstance(ctx.properties, DunningProperties)
    assert isinstance(ctx.run_properties, DunningRunProperties)
    return ctx.properties, ctx.run_properties


def as_of_date(ctx: RunContext) -> date:
    """The evaluation date: the run's ``as_of`` property, else the run's as-of instant in the job's zone."""
    _, run_props = properties(ctx)
    if run_props.as_of is not None:
        return run_props.as_of
    return ctx.as_of.astimezone(ZoneInfo(str(ctx.extra.get("timezone") or "UTC"))).date()


def scope(ctx: RunContext) -> Scope:
    """Open accounts of the job's category, narrowed to the run's account numbers and a retry's failures."""
    props, run_props = properties(ctx)
    parts = [f"a.status <> '{AccountStatus.CLOSED}'"]
    params: dict[str, Any] = {}
    expanding: list[str] = []
    if props.account_category:
        parts.append("a.category = :category")
        params["category"] = props.account_category
    keys: set[str] | None = set(run_props.account_numbers) if run_props.account_numbers else None
    retry_keys = RunItems(ctx).retry_keys()
    if retry_keys is not None:
        keys = set(retry_keys) if keys is None else keys & set(retry_keys)
    if keys is not None:
        if not keys:
            return Scope(condition="1 = 0", empty=True)
        parts.append("a.account_number IN :account_numbers")
        params["account_numbers"] = sorted(keys)
        expanding.append("account_numbers")
    return Scope(condition=" AND ".join(parts), params=params, expanding=tuple(expanding))


def plan_chunks(ctx: RunContext) -> list[dict[str, Any]]:
    """Keyset ranges of ``chunk_size`` accounts in scope, from one window query."""
    where = scope(ctx)
    if where.empty:
        return []
    statement = where.bind(
        text(
            "SELECT bucket, MIN(id) AS first_id, MAX(id) AS last_id, COUNT(*) AS accounts FROM ("
            " SELECT a.id, (ROW_NUMBER() OVER (ORDER BY a.id) - 1) / :chunk_size AS bucket"
            f" FROM accounts a WHERE {where.condition}"
            ") numbered GROUP BY bucket ORDER BY bucket"
        )
    )
    params = {**where.params, "chunk_size": max(1, ctx.settings.chunk_size)}
    with ctx.billing_engine.connect() as conn:
        rows = conn.execute(statement, params).all()
    return [{"first_id": r.first_id, "last_id": r.last_id, "accounts": r.accounts} for r in rows]


def due_subquery(d: SqlDialect, accounts: str = "i.account_id BETWEEN :first_id AND :last_id") -> str:
    """Per account in the chunk (or of the condition ``accounts``): the oldest due date and the total of
    past-due, undisputed open balances."""
    return (
        "SELECT i.account_id, MIN(i.due_on) AS oldest_due, "
        f"{d.money_sum('i.balance')} AS amount_due FROM invoices i "
        f"WHERE {accounts} "
        f"AND i.status = '{InvoiceStatus.OPEN}' AND i.balance > 0 AND NOT i.disputed "
        f"AND i.due_on < {d.date_param('as_of')} "
        "GROUP BY i.account_id"
    )


def scored_subquery(d: SqlDialect, condition: str) -> str:
    """Each account in the chunk with its current tier, amount due and days past due."""
    days = d.days_between(d.date_param("as_of"), "d.oldest_due")
    return (
        "SELECT a.id AS account_id, a.account_number, a.dunning_tier AS from_tier, a.status AS account_status, "
        "a.currency, "
        "COALESCE(d.amount_due, 0) AS amount_due, "
        f"COALESCE({days}, 0) AS days_past_due "
        f"FROM accounts a LEFT JOIN ({due_subquery(d)}) d ON d.account_id = a.id "
        f"WHERE a.id BETWEEN :first_id AND :last_id AND {condition}"
    )


def target_tier(props: DunningProperties, amount_due: str, days_past_due: str) -> str:
    """SQL for :meth:`DunningProperties.target_tier` of two column expressions (``:minimum`` is the minimum due)."""
    by_days = " ".join(
        f"WHEN {days_past_due} >= {t.min_days_past_due} THEN {t.code}"
        for t in sorted(props.ladder, key=lambda t: -t.min_days_past_due)
    )
    return f"CASE WHEN {amount_due} > 0 AND {amount_due} >= :minimum THEN CASE {by_days} ELSE 0 END ELSE 0 END"


def _staging_select(d: SqlDialect, props: DunningProperties, where: Scope) -> tuple[str, dict[str, Any]]:
    """``SELECT account_number, detail`` of every account to escalate or clear in the chunk."""
    params: dict[str, Any] = {"minimum": props.minimum_account_due, "none_name": props.no_dunning_name,
                              "reinstate": json.dumps([REINSTATE]), "no_actions": "[]"}
    target = target_tier(props, "s.amount_due", "s.days_past_due")
    names, actions, fees, write_offs = [], [], [], []
    for tier in props.ladder:
        if DunningAction.WRITE_OFF in tier.actions:
            write_offs.append(f"WHEN {tier.code} THEN {d.money_text('t.amount_due')}")
        params[f"name_{tier.code}"] = tier.name
        params[f"actions_{tier.code}"] = json.dumps([str(a) for a in tier.actions])
        names.append(f"WHEN {tier.code} THEN {d.text_param(f'name_{tier.code}')}")
        actions.append(f"WHEN {tier.code} THEN {d.text_param(f'actions_{tier.code}')}")
        if tier.late_fee is not None:
            params[f"fee_{tier.code}"] = str(tier.late_fee)
            fees.append(f"WHEN {tier.code} THEN {d.text_param(f'fee_{tier.code}')}")
    clear_actions = (
        f"CASE WHEN t.account_status = '{AccountStatus.SUSPENDED}' THEN {d.text_param('reinstate')} "
        f"ELSE {d.text_param('no_actions')} END"
    )
    detail = d.json_object([
        ("account_id", "t.account_id"),
        ("account_number", "t.account_number"),
        ("change", "CASE WHEN t.to_tier = 0 THEN 'clear' ELSE 'escalate' END"),
        ("from_tier", "t.from_tier"),
        ("to_tier", "t.to_tier"),
        ("tier_name", f"CASE t.to_tier {' '.join(names)} ELSE {d.text_param('none_name')} END"),
        ("days_past_due", "t.days_past_due"),
        ("amount_due", d.money_text("t.amount_due")),
        ("actions", d.json_parse(f"CASE t.to_tier WHEN 0 THEN {clear_actions} {' '.join(actions)} END")),
        ("late_fee", f"CASE t.to_tier {' '.join(fees)} END" if fees else "NULL"),
        ("write_off", f"CASE t.to_tier {' '.join(write_offs)} END" if write_offs else "NULL"),
        ("currency", "t.currency"),
    ])
    sql = (
        f"SELECT t.account_number AS item_key, {detail} AS detail "
        f"FROM (SELECT s.*, {target} AS to_tier FROM ({scored_subquery(d, where.condition)}) s) t "
        "WHERE t.to_tier > t.from_tier OR (t.amount_due = 0 AND t.from_tier > 0)"
    )
    return sql, params


def typed(statement: TextClause) -> TextClause:
    """Give the date and money parameters their SQL types (SQLite gets ISO strings and floats)."""
    return statement.bindparams(bindparam("as_of", type_=Date()), bindparam("minimum", type_=Numeric(18, 2)))


def evaluate_chunk(ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
    """Stage the chunk's escalations and clearances; returns how many items the chunk has staged."""
    props, _ = properties(ctx)
    where = scope(ctx)
    if where.empty:
        return 0
    d = SqlDialect.of(ctx.billing_engine)
    select_sql, params = _staging_select(d, props, where)
    params.update(where.params, as_of=as_of_date(ctx), first_id=spec["first_id"], last_id=spec["last_id"])
    with RunItems(ctx).billing_transaction() as (billing, items):
        items.stage_select(chunk_no, where.bind(typed(text(select_sql))), params, source=billing)
        return items.count(chunk_no)
