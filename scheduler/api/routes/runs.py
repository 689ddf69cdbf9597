"""``/runs``: manual runs (idempotent), the run list with CSV export, run details, items, actions.

A run is committed before its message is sent; when Redis is down the request still succeeds,
the run stays ``CREATED`` with ``enqueued_at`` null, and beat's outbox sends it later.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from scheduler.api.deps import Operator, ServicesDep, SessionDep, Viewer
from scheduler.api.errors import ERROR_RESPONSES, ErrorBody, MalformedRequest, error_doc
from scheduler.api.request_id import request_id
from scheduler.api.schemas import ActionNote, Page, RunDetail, RunItemPublic, RunPublic, id_cursor, iso_utc, job_names
from scheduler.api.services import Services
from scheduler.auth import Principal
from scheduler.errors import InvalidInput
from scheduler.models import ItemOutcome, JobRun, RunStatus, RunTrigger
from scheduler.runs import (
    RunCreate,
    RunFilter,
    act_on_run,
    create_manual_run,
    decode_cursor,
    get_run,
    list_items,
    list_runs,
    retry_run,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/runs", tags=["runs"], responses=ERROR_RESPONSES)

NOT_FOUND = error_doc(404, "No such run")
REFUSED = error_doc(409, "Not allowed at the run's status; details.allowed_actions")
NoteBody = Annotated[ActionNote | None, Body(description="optional note for the audit trail")]

CSV_COLUMNS = (
    "id", "job_id", "job_name", "job_type", "trigger", "status", "preview", "scheduled_for", "created_at",
    "enqueued_at", "started_at", "finished_at", "heartbeat_at", "created_by", "worker", "attempt", "retry_of",
    "error", "summary",
)
CSV_PAGE = 500


@router.post(
    "",
    status_code=201,
    summary="Create a manual run",
    responses={
        200: {"model": RunDetail, "description": "The Idempotency-Key was used before for this job: its run"},
        404: {"model": ErrorBody, "description": "No such job"},
        409: {"model": ErrorBody, "description": "The job cannot run manually, or the key was used for another job"},
    },
)
def post_run(
    run_in: RunCreate,
    response: Response,
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", max_length=200, description="repeat-safe requests: same key, same run"),
    ] = None,
) -> RunDetail:
    """Record the run (`CREATED`) and send it to its job type's queue."""
    run, created = create_manual_run(session=session, registry=services.registry, run_in=run_in,
                                     actor=principal.actor, clock=services.clock,
                                     idempotency_key=idempotency_key, request_id=request_id())
    assert run.id is not None
    if created:
        services.send_run(run.id)
    else:
        response.status_code = 200
    return RunDetail.build(session, get_run(session, run.id))


def _choices(values: list[str] | None, enum: type[StrEnum], name: str) -> list[str] | None:
    """Repeatable and comma-separated enum filters, case-insensitive."""
    if not values:
        return None
    chosen = [v.strip().upper() for value in values for v in value.split(",") if v.strip()]
    allowed = [m.value for m in enum]
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise InvalidInput(f"unknown {name} {unknown[0]!r}; use one of: {', '.join(allowed)}",
                           details={name: unknown, "allowed": allowed})
    return chosen or None


def _aware(moment: datetime | None) -> datetime | None:
    """Query datetimes without an offset are taken as UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _check_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        created, _ = decode_cursor(cursor)
    except InvalidInput:
        created = None
    if created is None or created.tzinfo is None:
        raise MalformedRequest("invalid cursor: pass back the next_cursor of the previous page",
                               details={"cursor": cursor})
    return cursor


def _csv_rows(factory: sessionmaker[Session], filters: RunFilter) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    cursor: str | None = None
    with factory() as session:
        while True:
            runs, cursor = list_runs(session, filters, limit=CSV_PAGE, cursor=cursor)
            names = job_names(session, [r.job_id for r in runs])
            for run in runs:
                writer.writerow(_csv_values(run, names.get(run.job_id, "")))
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            session.rollback()  # release SQLite's lock between pages
            if cursor is None:
                return


def _csv_values(run: JobRun, job_name: str) -> list[Any]:
    row: dict[str, Any] = {**run.model_dump(), "job_name": job_name}
    values: list[Any] = []
    for column in CSV_COLUMNS:
        value = row[column]
        if isinstance(value, datetime):
            value = iso_utc(value)
        elif column == "summary":
            value = json.dumps(value, sort_keys=True)
        values.append("" if value is None else value)
    return values


@router.get(
    "",
    summary="List runs, newest first (JSON pages or CSV export)",
    response_model=Page[RunPublic],
    responses={200: {"content": {"text/csv": {}}, "description": "A page of runs, or every filtered run as CSV"}},
)
def get_runs(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    _principal: Viewer,
    status: Annotated[list[str] | None, Query(description="status; repeat or comma-separate")] = None,
    job_id: Annotated[int | None, Query()] = None,
    job_type: Annotated[str | None, Query()] = None,
    trigger: Annotated[str | None, Query(description="SCHEDULED, MANUAL, RETRY or BACKFILL")] = None,
    created_from: Annotated[datetime | None, Query(description="created at or after (UTC if no offset)")] = None,
    created_to: Annotated[datetime | None, Query(description="created before (UTC if no offset)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    format: Annotated[Literal["json", "csv"] | None, Query(description="csv: export every filtered run")] = None,
) -> Any:
    """Filter by status, job, type, trigger and creation time; `format=csv` or `Accept: text/csv` exports."""
    triggers = _choices([trigger] if trigger else None, RunTrigger, "trigger")
    filters = RunFilter(
        status=_choices(status, RunStatus, "status"),
        job_id=job_id,
        job_type=job_type,
        trigger=triggers[0] if triggers else None,
        created_from=_aware(created_from),
        created_to=_aware(created_to),
    )
    wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    if wants_csv:
        session.rollback()
        return StreamingResponse(
            _csv_rows(services.session_factory, filters),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="runs.csv"'},
        )
    runs, next_cursor = list_runs(session, filters, limit=limit, cursor=_check_cursor(cursor))
    names = job_names(session, [r.job_id for r in runs])
    return Page[RunPublic](items=[RunPublic.of(r, names.get(r.job_id, "")) for r in runs], next_cursor=next_cursor)


@router.get("/{run_id}", summary="Show a run: common columns, progress, item counts, audit trail",
            responses=NOT_FOUND)
def get_one_run(run_id: int, session: SessionDep, _principal: Viewer) -> RunDetail:
    return RunDetail.build(session, get_run(session, run_id))


@router.get("/{run_id}/items", summary="List a run's per-type detail rows", responses=NOT_FOUND)
def get_items(
    run_id: int,
    session: SessionDep,
    _principal: Viewer,
    outcome: Annotated[str | None, Query(description="planned | ok | error | skipped")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Page[RunItemPublic]:
    if outcome is not None:
        outcome = outcome.strip().lower()
        allowed = [o.value for o in ItemOutcome]
        if outcome not in allowed:
            raise InvalidInput(f"unknown outcome {outcome!r}; use one of: {', '.join(allowed)}",
                               details={"outcome": outcome, "allowed": allowed})
    items, next_cursor = list_items(session, run_id, outcome=outcome, limit=limit, after_id=id_cursor(cursor))
    return Page[RunItemPublic](items=[RunItemPublic.of(i) for i in items], next_cursor=next_cursor)


def _act(action: str, run_id: int, body: ActionNote | None, session: Session, services: Services,
         principal: Principal) -> RunDetail:
    act_on_run(session=session, run_id=run_id, action=action, actor=principal.actor, clock=services.clock,
               note=body.note if body else "", settings=services.settings)
    session.commit()  # end the read transaction before other sessions write (SQLite)
    if action == "submit":
        services.send_apply(run_id)
    return RunDetail.build(session, get_run(session, run_id))


@router.post("/{run_id}/submit", summary="Submit a previewed run: apply its staged effects",
             responses={**NOT_FOUND, **REFUSED})
def submit_run(run_id: int, session: SessionDep, services: ServicesDep, principal: Operator,
               body: NoteBody = None) -> RunDetail:
    return _act("submit", run_id, body, session, services, principal)


@router.post("/{run_id}/delete", summary="Delete a previewed run: nothing is applied, the record stays",
             responses={**NOT_FOUND, **REFUSED})
def delete_run(run_id: int, session: SessionDep, services: ServicesDep, principal: Operator,
               body: NoteBody = None) -> RunDetail:
    return _act("delete", run_id, body, session, services, principal)


@router.post("/{run_id}/cancel", summary="Cancel a run that has not started",
             responses={**NOT_FOUND, **REFUSED})
def cancel_run(run_id: int, session: SessionDep, services: ServicesDep, principal: Operator,
               body: NoteBody = None) -> RunDetail:
    return _act("cancel", run_id, body, session, services, principal)


@router.post("/{run_id}/retry", status_code=201, summary="Retry a FAILED or INCOMPLETE run as a new run",
             responses={**NOT_FOUND, **REFUSED})
def retry(run_id: int, session: SessionDep, services: ServicesDep, principal: Operator) -> RunDetail:
    """A new run (trigger RETRY, `retry_of` = this run) for the failed items only."""
    run = retry_run(session=session, run_id=run_id, actor=principal.actor, clock=services.clock,
                    request_id=request_id())
    assert run.id is not None
    services.send_run(run.id)
    return RunDetail.build(session, get_run(session, run.id))
