"""Apply one file: post its mediated events and daily totals once, keep its rejects, move it aside.

In one billing transaction: claim the file in ``usage_files`` (its checksum is unique, so a second
apply — by this run or any other — changes nothing), add the per-account, meter and day totals to
``usage_daily``, keep the rejects, and insert the events (``usage_events``, keyed by event id).
What evaluation found is re-checked against current data without classifying the file again: the
events insert proves it (a unique violation means another apply posted some of the events first; a
short count means accounts were suspended meanwhile) and, if it does not hold, the transaction is
rolled back, the changed records are filtered, and the file is posted again. Then the file is moved
to the archive directory and the staging table is dropped. A re-delivered apply finishes the work
and changes nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from scheduler.jobkit import ItemOutcome, ItemWriter, RunContext, RunItems, insert_or_ignore_statement
from workers.billing.tables import AccountStatus
from workers.mediation import classify, items, staging
from workers.mediation.evaluate import properties
from workers.mediation.files import archive, resolve_dirs
from workers.mediation.properties import MediationProperties
from workers.mediation.records import RejectReason
from workers.mediation.tables import usage_files

log = logging.getLogger(__name__)

Out = ItemOutcome
ATTEMPTS = 5
RETRYABLE = {"40001", "40P01"}  # serialization failure, deadlock (PostgreSQL)
COUNTS = ("records", "mediated", "filtered", "failed", "amount", "by_meter", "by_reason")
R = RejectReason


class StagingLost(RuntimeError):
    """The staged records of a file are missing; nothing was applied and the file stays for the next run."""


class _Changed(Exception):
    """Fewer events were posted than evaluated: accounts changed meanwhile (or the staging was lost)."""


class _Raced(Exception):
    """Another apply mediated some of the file's events meanwhile: filter them and try again."""


@dataclass(frozen=True, kw_only=True)
class Claim:
    file_id: int
    run_id: int
    fresh: bool


def apply_file(ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
    props, _ = properties(ctx)
    name = str(spec["file"])
    stage = staging.table_name(ctx.run_id, chunk_no)
    found = RunItems(ctx).get(items.file_key(name))
    if found is None or found.outcome not in (Out.PLANNED, Out.OK):
        # Skipped or unreadable at evaluation: nothing to apply.
        staging.drop(ctx.billing_engine, staging.raw_name(ctx.run_id, chunk_no), stage)
        return
    detail = found.detail
    if found.outcome == Out.PLANNED:
        detail = _post(ctx, props, chunk_no, name, stage, detail)
    if detail.get("applied_by_run", ctx.run_id) == ctx.run_id and "archived_as" not in detail:
        _archive(ctx, props, name, detail)
    staging.drop(ctx.billing_engine, stage)


def _post(ctx: RunContext, props: MediationProperties, chunk_no: int, name: str, stage: str,
          detail: dict[str, Any]) -> dict[str, Any]:
    """The billing transaction (again, re-checking, when data changed under it), then the items' outcomes."""
    now = ctx.clock.now()
    careful = False
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with RunItems(ctx).billing_transaction() as (conn, writer):
                posted = _post_once(conn, ctx, props, name, stage, detail, now, careful=careful)
                _record(writer, conn, chunk_no, name, posted)
            break
        except _Raced:
            # Some events were mediated by another apply since evaluation: filter them, then post the rest.
            with ctx.billing_engine.begin() as conn:
                marked = classify.recheck_events(conn, stage)
            log.info("run %s: %s: %d event(s) mediated meanwhile (attempt %d)", ctx.run_id, name, marked, attempt)
        except _Changed:
            log.info("run %s: %s: accounts changed since evaluation (attempt %d); re-checking", ctx.run_id, name,
                     attempt)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) not in RETRYABLE or attempt == ATTEMPTS:
                raise
            log.info("run %s: %s: %s (attempt %d); retrying", ctx.run_id, name, exc.orig, attempt)
        careful = True
    else:
        raise RuntimeError(f"{name}: gave up after {ATTEMPTS} attempts racing other applies")
    return posted


def _post_once(conn: Connection, ctx: RunContext, props: MediationProperties, name: str, stage: str,
               detail: dict[str, Any], now: datetime, *, careful: bool) -> dict[str, Any]:
    """Claim the file and post it. The first attempt trusts the evaluation's counts and lets the inserts
    prove them; a ``careful`` attempt (after they did not) re-checks every account and counts again."""
    claim = _claim(conn, ctx, props, name, detail, now)
    if claim.run_id != ctx.run_id:
        return {**detail, "applied_by_run": claim.run_id, "file_id": claim.file_id,
                "reason": f"already processed by run {claim.run_id}"}
    if not claim.fresh:
        return {**detail, **_applied_counts(conn, claim.file_id), "file_id": claim.file_id}
    counted = _recount(conn, props, name, stage, detail, careful=careful)
    expected = counted.mediated if counted is not None else int(detail.get("mediated") or 0)
    daily_rows = _insert_file(conn, stage, {"run_id": ctx.run_id, "file_id": claim.file_id}, expected)
    counts = counted.as_detail() if counted is not None else {k: detail.get(k) for k in COUNTS}
    conn.execute(text(
        "UPDATE usage_files SET records = :records, mediated = :mediated, filtered = :filtered, failed = :failed, "
        "amount = :amount WHERE id = :file_id"
    ), {"file_id": claim.file_id, **{k: counts[k] for k in ("records", "mediated", "filtered", "failed", "amount")}})
    changes = {key: {"previewed": detail.get(key), "applied": counts[key]}
               for key in ("mediated", "filtered") if detail.get(key) != counts[key]}
    updated = {**detail, **counts, "daily_rows": daily_rows, "file_id": claim.file_id}
    if changes:
        updated["changed_since_evaluation"] = changes
    return updated


def _recount(conn: Connection, props: MediationProperties, name: str, stage: str, detail: dict[str, Any], *,
             careful: bool) -> classify.Totals | None:
    """Re-check the staged records' accounts; their totals counted again when any changed (or when ``careful``),
    else None: the evaluation's counts stand."""
    if not staging.exists(conn, stage):
        raise StagingLost(_lost(name, detail, 0))
    classify.roomy(conn)
    by_reason = detail.get("by_reason") or {}
    changed = careful and classify.deactivated(conn, stage) > 0
    if careful or by_reason.get(R.UNKNOWN_ACCOUNT) or by_reason.get(R.INACTIVE_ACCOUNT):
        changed = classify.reactivated(conn, stage) > 0 or changed
    if not (changed or careful):
        return None
    counted = classify.totals(conn, stage, {m.meter: m.unit for m in props.meters})
    if counted.records != detail.get("records"):
        raise StagingLost(_lost(name, detail, counted.records))
    return counted


def _insert_file(conn: Connection, stage: str, params: dict[str, Any], expected: int) -> int:
    """Post the staged file: daily totals, rejects, then its ``expected`` events; the daily rows touched.

    Totals and rejects go first, while the staged rows are fresh in the buffer cache; if the events insert
    then finds fewer events to post, all of it is rolled back.
    """
    daily_rows = _add_daily(conn, stage)
    conn.execute(text(
        "INSERT INTO usage_rejects (file_id, run_id, line_no, event_id, account_number, meter, kind, reason, "
        f"message) SELECT :file_id, :run_id, line_no, SUBSTR(event_id, 1, 100), SUBSTR(account_number, 1, 64), "
        f"SUBSTR(meter, 1, 64), {classify.kind_sql()}, reason, SUBSTR(message, 1, 300) FROM {stage} "
        "WHERE reason IS NOT NULL"
    ), params)
    try:
        # A plain insert of the records still mediated, of accounts still active: a unique violation
        # (another apply got there first) or a count that differs rolls the file back to be re-checked.
        inserted = conn.execute(text(
            "INSERT INTO usage_events (event_id, account_id, meter, quantity, amount, occurred_at, usage_day, "
            "file_id, line_no, run_id) SELECT c.event_id, c.account_id, c.meter, c.quantity, c.amount, "
            f"c.occurred_at, c.usage_day, :file_id, c.line_no, :run_id FROM {stage} c "
            f"JOIN accounts a ON a.id = c.account_id AND a.status = '{AccountStatus.ACTIVE}' WHERE c.reason IS NULL"
        ), params).rowcount
    except IntegrityError as exc:
        raise _Raced() from exc
    if inserted != expected:
        raise _Changed()
    return daily_rows


def _lost(name: str, detail: dict[str, Any], left: int) -> str:
    return (f"{name}: {detail.get('records')} records were staged but {left} remain (was the database restarted?); "
            "nothing was applied and the file stays in place for the next run")


def _claim(conn: Connection, ctx: RunContext, props: MediationProperties, name: str, detail: dict[str, Any],
           now: datetime) -> Claim:
    """Record the file as processed by this run, unless a run (this one included) already did."""
    claimed = conn.execute(
        insert_or_ignore_statement(conn, usage_files, keys=["checksum"]).values(
            checksum=detail["checksum"], name=detail.get("path", name), size_bytes=detail.get("size_bytes", 0),
            format=str(props.format), job_id=ctx.job_id, run_id=ctx.run_id, records=0, mediated=0, filtered=0,
            failed=0, amount=0, processed_at=now,
        ).returning(usage_files.c.id)
    ).first()
    if claimed is not None:
        return Claim(file_id=int(claimed.id), run_id=ctx.run_id, fresh=True)
    row = conn.execute(text("SELECT id, run_id FROM usage_files WHERE checksum = :checksum"),
                       {"checksum": detail["checksum"]}).one()
    return Claim(file_id=int(row.id), run_id=int(row.run_id), fresh=False)


def _add_daily(conn: Connection, stage: str) -> int:
    """Add the file's mediated totals per account, meter and UTC day (sorted, so concurrent applies queue)."""
    if conn.dialect.name == "postgresql":
        quantity, amount = "SUM(quantity)", "SUM(amount)"
        add = "usage_daily.{0} + excluded.{0}"
    else:
        quantity, amount = "ROUND(SUM(quantity), 6)", "ROUND(SUM(amount), 6)"
        add = "ROUND(usage_daily.{0} + excluded.{0}, 6)"
    return int(conn.execute(text(
        "INSERT INTO usage_daily (account_id, meter, usage_day, events, quantity, amount) "
        f"SELECT account_id, meter, usage_day, COUNT(*), {quantity}, {amount} FROM {stage} "
        "WHERE reason IS NULL GROUP BY account_id, meter, usage_day ORDER BY account_id, meter, usage_day "
        "ON CONFLICT (account_id, meter, usage_day) DO UPDATE SET events = usage_daily.events + excluded.events, "
        f"quantity = {add.format('quantity')}, amount = {add.format('amount')}"
    )).rowcount)


def _applied_counts(conn: Connection, file_id: int) -> dict[str, Any]:
    row = conn.execute(text("SELECT records, mediated, filtered, failed, amount FROM usage_files WHERE id = :id"),
                       {"id": file_id}).one()
    return {"records": row.records, "mediated": row.mediated, "filtered": row.filtered, "failed": row.failed,
            "amount": str(classify.decimal(row.amount))}


def _record(writer: ItemWriter, billing: Connection, chunk_no: int, name: str, detail: dict[str, Any]) -> None:
    """The items' outcomes: the file ok (or skipped), each reject error (failed) or skipped (filtered)."""
    by_other = detail.get("applied_by_run", writer.run_id) != writer.run_id
    writer.replace(items.file_key(name), outcome=Out.SKIPPED if by_other else Out.OK, detail=detail,
                   only_planned=False)
    if by_other:
        writer.settle(chunk_no, Out.SKIPPED, {"reason": f"the file was processed by run {detail['applied_by_run']} "
                                                        "meanwhile"})
        return
    rejects = items.Rejects(source="usage_rejects", where="usage_rejects.file_id = :file_id", name=name,
                            params={"file_id": detail["file_id"]})
    items.stage_rejects(writer, billing, chunk_no, rejects, outcome_sql=items.APPLIED_OUTCOME)
    # Rejected at evaluation but mediated now (e.g. the account was reinstated since the preview).
    writer.settle(chunk_no, Out.OK, {"reason": "mediated: the reason found at evaluation no longer held when applied"})


def _archive(ctx: RunContext, props: MediationProperties, name: str, detail: dict[str, Any]) -> None:
    """Move the applied file aside and note where on ``usage_files`` and the file's item."""
    moved = archive(resolve_dirs(ctx.settings, props), name, str(detail["checksum"]))
    if moved.archived_as is not None:
        with ctx.billing_engine.begin() as conn:
            conn.execute(text("UPDATE usage_files SET archived_as = :archived_as WHERE id = :id"),
                         {"archived_as": moved.archived_as, "id": detail["file_id"]})
        update: dict[str, Any] = {"archived_as": moved.archived_as}
    else:
        log.warning("run %s: %s applied but not archived: %s", ctx.run_id, name, moved.problem)
        update = {"archive_problem": moved.problem}
    with RunItems(ctx).transaction() as writer:
        writer.replace(items.file_key(name), outcome=Out.OK, detail={**detail, **update}, only_planned=False)
