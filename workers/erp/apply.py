"""ERP transfer apply: send a chunk's staged records as one batch, then record who has what.

Per chunk: one query reads the planned items' records (as the JSON text staged, not decoded), one
checks the delivery ledger for them (a record delivered since the preview is ``skipped``; one this run
already recorded — a step delivered again after a crash — is ``ok`` without sending). The rest go out
as one batch; once the target accepted it, the delivery rows are written (insert-or-ignore on the unique
key) *before* the items are marked, so a crash in between re-sends the same batch under the same
``Idempotency-Key`` and records nothing twice. The batch's items get its outcome in one statement.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from scheduler.jobkit import (
    ItemOutcome,
    RunContext,
    RunItems,
    UTCDateTime,
    batched,
    insert_or_ignore,
    insert_or_ignore_select,
)
from workers.erp.datasets import SOURCES
from workers.erp.policy import TargetPolicy
from workers.erp.properties import HttpTarget, target_key
from workers.erp.scope import properties
from workers.erp.send import Batch, HttpSender, Outcome, write_batch
from workers.erp.stage import record_id_of
from workers.erp.tables import erp_deliveries


def apply_chunk(ctx: RunContext, chunk_no: int, spec: dict[str, Any], sender: HttpSender) -> None:
    props, _ = properties(ctx)
    run_items = RunItems(ctx)
    records = run_items.planned_json(chunk_no, "record")
    if not records:
        return
    key = target_key(props.target)
    ids = {record_id_of(k): k for k in records}
    with ctx.billing_engine.connect() as conn:
        delivered = _deliveries(conn, key, str(props.dataset), sorted(ids))
    ok: list[str] = []
    skipped: dict[str, list[str]] = defaultdict(list)
    to_send: list[int] = []
    for record_id in sorted(ids):
        by_run = delivered.get(record_id)
        if by_run is None:
            to_send.append(record_id)
        elif by_run == ctx.run_id:
            ok.append(ids[record_id])
        else:
            skipped[f"already delivered to this target by run {by_run}"].append(ids[record_id])
    batch_no = int(spec["batch_no"])
    outcome: Outcome | None = None
    outcome_detail: dict[str, Any] = {}
    if to_send:
        batch = Batch(
            run_id=ctx.run_id, batch_no=batch_no, dataset=str(props.dataset), fields=SOURCES[props.dataset].fields,
            records=[records[ids[i]] for i in to_send], format=props.format,
            idempotency_key=str(spec.get("idempotency_key") or f"{ctx.run_id}:{batch_no}"),
        )
        if isinstance(props.target, HttpTarget):
            outcome = sender.send(props.target, batch, TargetPolicy.of(ctx.settings))
        else:
            outcome = write_batch(props.target, ctx.settings.resolved_files_root, batch)
        if outcome.delivered:
            _record_deliveries(ctx, key, str(props.dataset), to_send, batch_no, ctx.clock.now())
        outcome_detail = {**outcome.detail(), "idempotency_key": batch.idempotency_key}
    with run_items.transaction() as outcomes:
        for reason, keys in skipped.items():
            outcomes.record(chunk_no, keys, ItemOutcome.SKIPPED, {"reason": reason})
        outcomes.record(chunk_no, ok, ItemOutcome.OK)
        if outcome is not None:
            # The items still planned are the batch's: the others were recorded just above.
            outcomes.settle(chunk_no, ItemOutcome.OK if outcome.delivered else ItemOutcome.ERROR, outcome_detail)


def _deliveries(conn: Connection, key: str, dataset: str, record_ids: list[int]) -> dict[int, int]:
    """Which of ``record_ids`` the target already has, and the run that delivered each."""
    where = "target_key = :target_key AND dataset = :dataset AND record_id"
    params = {"target_key": key, "dataset": dataset}
    if conn.dialect.name == "postgresql":
        # The batch's ids as one array parameter: one statement, one plan, whatever the batch size.
        rows = conn.execute(text(
            f"SELECT record_id, run_id FROM erp_deliveries WHERE {where} = ANY(CAST(:ids AS bigint[]))"
        ), {**params, "ids": record_ids})
        return {int(row.record_id): int(row.run_id) for row in rows}
    statement = text(f"SELECT record_id, run_id FROM erp_deliveries WHERE {where} IN :record_ids").bindparams(
        bindparam("record_ids", expanding=True))
    found: dict[int, int] = {}
    for part in batched(record_ids):
        for row in conn.execute(statement, {**params, "record_ids": list(part)}):
            found[int(row.record_id)] = int(row.run_id)
    return found


def _record_deliveries(
    ctx: RunContext, key: str, dataset: str, record_ids: list[int], batch_no: int, now: datetime
) -> None:
    with ctx.billing_engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # One INSERT … SELECT over the ids as an array, rather than a row of parameters per record.
            ids = text(
                "SELECT :target_key, :dataset, record_id, :run_id, :batch_no, :now "
                "FROM unnest(CAST(:ids AS bigint[])) AS ids(record_id)"
            ).bindparams(bindparam("now", type_=UTCDateTime()))
            insert_or_ignore_select(
                conn, erp_deliveries, ["target_key", "dataset", "record_id", "run_id", "batch_no", "delivered_at"],
                ids, {"target_key": key, "dataset": dataset, "ids": record_ids, "run_id": ctx.run_id,
                      "batch_no": batch_no, "now": now},
                keys=["target_key", "dataset", "record_id"],
            )
            return
        rows = [{"target_key": key, "dataset": dataset, "record_id": record_id, "run_id": ctx.run_id,
                 "batch_no": batch_no, "delivered_at": now} for record_id in record_ids]
        insert_or_ignore(conn, erp_deliveries, rows)
