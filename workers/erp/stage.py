"""ERP transfer planning and evaluation: one chunk per batch of records, one statement per chunk.

``plan`` cuts the run's not-yet-delivered records into keyset batches of ``batch_size`` with one
window query (a retry batches its original run's failed records instead, keeping a batch that may
have reached the target under its original ``Idempotency-Key``). ``evaluate`` reads a batch's
records — still leaving out any delivered since — and stages one ``planned`` item per record (on
PostgreSQL with one ``INSERT … SELECT`` from the source tables; SQLite's records go through Python).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import bindparam, text

from scheduler.jobkit import ItemOutcome, RunContext, RunItems
from scheduler.jobkit.sql import SqlDialect
from workers.erp.datasets import SOURCES, Source, record_fields
from workers.erp.properties import FileTarget, target_key
from workers.erp.scope import NOT_DELIVERED, Scope, properties, resolve_scope, zone


def item_key(dataset: str, record_id: int) -> str:
    return f"{dataset}:{record_id}"


def record_id_of(key: str) -> int:
    return int(key.rsplit(":", 1)[1])


def plan_chunks(ctx: RunContext) -> list[dict[str, Any]]:
    """The run's batches as chunk specs; always at least one, so the run's range is kept even when empty."""
    props, _ = properties(ctx)
    if isinstance(props.target, FileTarget):
        props.target.resolve(ctx.settings.resolved_files_root)
    scope = resolve_scope(ctx)
    retry = retry_batches(ctx, props.batch_size)
    if retry is not None:
        specs = [{"record_ids": ids, "records": len(ids), "idempotency_key": key} for ids, key in retry]
    else:
        specs = keyset_batches(ctx, scope)
    if not specs:
        specs = [{"records": 0}]
    return [{**scope.spec(), "batch_no": n, **spec} for n, spec in enumerate(specs, start=1)]


def keyset_batches(ctx: RunContext, scope: Scope) -> list[dict[str, Any]]:
    props, _ = properties(ctx)
    source = SOURCES[props.dataset]
    condition, params, binds = scope.condition(source, zone(ctx))
    statement = text(
        "SELECT bucket, MIN(id) AS first_id, MAX(id) AS last_id, COUNT(*) AS records FROM ("
        " SELECT r.id, (ROW_NUMBER() OVER (ORDER BY r.id) - 1) / :batch_size AS bucket"
        f" FROM {source.table} r WHERE {condition} AND {NOT_DELIVERED}"
        ") numbered GROUP BY bucket ORDER BY bucket"
    ).bindparams(*binds)
    params.update(batch_size=props.batch_size, target_key=target_key(props.target), dataset=str(props.dataset))
    with ctx.billing_engine.connect() as conn:
        rows = conn.execute(statement, params).all()
    return [{"first_id": r.first_id, "last_id": r.last_id, "records": r.records} for r in rows]


def retry_batches(ctx: RunContext, batch_size: int) -> list[tuple[list[int], str | None]] | None:
    """A retry's batches of failed record ids, or ``None`` to redo the original run's whole range.

    Records of a batch whose fate is uncertain (no answer after the last try) keep their batch and its
    ``Idempotency-Key``, so a target that did take it answers from its record instead of taking it twice.
    """
    items = RunItems(ctx)
    keys = items.retry_keys()
    if keys is None:
        return None
    assert ctx.retry_of is not None
    failed = items.all(run_id=ctx.retry_of, outcome=ItemOutcome.ERROR)
    uncertain: dict[str, list[int]] = defaultdict(list)
    fresh: list[int] = []
    for item in failed:
        record_id = record_id_of(item.key)
        key = item.detail.get("idempotency_key")
        if item.detail.get("uncertain") and key:
            uncertain[str(key)].append(record_id)
        else:
            fresh.append(record_id)
    batches: list[tuple[list[int], str | None]] = [(sorted(ids), key) for key, ids in sorted(uncertain.items())]
    fresh.sort()
    batches += [(fresh[i : i + batch_size], None) for i in range(0, len(fresh), batch_size)]
    return batches


def evaluate_chunk(ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
    """Stage the batch's records not yet delivered to the target; returns how many the chunk has staged."""
    props, _ = properties(ctx)
    source = SOURCES[props.dataset]
    d = SqlDialect.of(ctx.billing_engine)
    params: dict[str, Any] = {"target_key": target_key(props.target), "dataset": str(props.dataset)}
    binds: list[Any] = []
    if spec.get("record_ids"):
        params["record_ids"] = [int(i) for i in spec["record_ids"]]
        if d.is_postgres:
            where = "r.id = ANY(CAST(:record_ids AS bigint[]))"
        else:
            where = "r.id IN :record_ids"
            binds.append(bindparam("record_ids", expanding=True))
    elif spec.get("first_id") is not None:
        condition, scope_params, binds = Scope.from_spec(spec).condition(source, zone(ctx))
        where = f"r.id BETWEEN :first_id AND :last_id AND {condition}"
        params.update(scope_params, first_id=spec["first_id"], last_id=spec["last_id"])
    else:
        return 0
    records = f"{source.select(d)} WHERE {where} AND {NOT_DELIVERED}"
    batch_no = int(spec["batch_no"])
    if d.is_postgres:
        return _stage_in_database(ctx, chunk_no, source, records, binds, params, batch_no)
    statement = text(f"{records} ORDER BY r.id").bindparams(*binds).columns(**source.typed_columns())
    with ctx.billing_engine.connect() as conn:
        rows = conn.execute(statement, params).all()
    with RunItems(ctx).transaction() as items:
        items.stage(chunk_no, {
            item_key(source.dataset, int(row.id)): {
                "batch_no": batch_no, "record": (record := record_fields(source, row)), "currency": row.currency,
                **{name: record[name] for name in source.money},
            }
            for row in rows
        })
        return items.count(chunk_no)


def _stage_in_database(
    ctx: RunContext, chunk_no: int, source: Source, records: str, binds: list[Any], params: dict[str, Any],
    batch_no: int,
) -> int:
    """PostgreSQL: the items and their details built by the database, one ``INSERT … SELECT`` from the
    source tables when the scheduler's tables share the billing database (no record through Python)."""
    money = "".join(f", '{name}', s.{name}" for name in source.money)
    statement = text(
        f"SELECT CAST(:key_prefix AS text) || CAST(s.id AS text) AS item_key, "
        f"json_build_object('batch_no', CAST(:batch_no AS integer), 'record', {source.record_json('s')}, "
        f"'currency', s.currency{money}) AS detail "
        f"FROM ({records}) s"
    ).bindparams(*binds)
    with RunItems(ctx).billing_transaction() as (billing, items):
        items.stage_select(chunk_no, statement, {**params, "key_prefix": f"{source.dataset}:", "batch_no": batch_no},
                           source=billing)
        return items.count(chunk_no)
