"""``/runs``: manual runs (idempotent), the run list with CSV export, run details, items, actions.

A run is committed before its message is sent; when Redis is down the request still succeeds,
the run stays ``CREATED`` with ``enqueued_at`` null, and beat's outbox sends it later.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, HTTPException, Query, Request, Response
from sqlalchemy.orm import Session

from scheduler.api.deps import Operator, ServicesDep, SessionDep, Viewer
from scheduler.api.errors import ERROR_RESPONSES, ErrorBody, error_doc
from scheduler.api.export import csv_answer, export_items, export_runs
from scheduler.api.openapi import links
from scheduler.api.params import (
    Cursor,
    JobTypeName,
    OutcomeFilter,
    PageSize,
    RunId,
    RunStatusFilter,
    TriggerFilter,
    id_cursor,
)
from scheduler.api.request_id import request_id
from scheduler.api.schemas import (
    ActionNote,
    BatchRunPublic,
    Page,
    RunBatchPublic,
    RunDetail,
    RunItemPublic,
    RunPublic,
)
from scheduler.api.services import Services
from scheduler.auth import Principal
from scheduler.limits import IDEMPOTENCY_KEY_PATTERN, MAX_DB_INT, MAX_NAME_LENGTH, QueryDatetime, Text
from scheduler.models import Job, RunStatus
from scheduler.run_batch import RunBatchCreate, create_manual_runs
from scheduler.runs import (
    RunCreate,
    RunFilter,
    act_on_run,
    create_manual_run,
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


RUN_LINKS = links(
    "run_id",
    GetRun=("get_one_run", "the run just created"),
    GetRunItems=("get_items", "its detail rows"),
    CancelRun=("cancel_run", "cancel it before it starts"),
    SubmitRun=("submit_run", "submit it once it waits at PREVIEW"),
    DeleteRun=("delete_run", "delete it once it waits at PREVIEW"),
    RetryRun=("retry", "retry it once it FAILED or is INCOMPLETE"),
)


@router.post(
    "",
    status_code=201,
    summary="Create a manual run",
    responses={
        200: {"model": RunDetail, "description": "The Idempotency-Key was used before for the same request: "
              "the first run, nothing new is created", "links": RUN_LINKS},
        201: {"description": "The run, recorded and sent", "links": RUN_LINKS},
        404: {"model": ErrorBody, "description": "No such job"},
        409: {"model": ErrorBody, "description": "The job cannot run manually (job_not_runnable), or the "
              "Idempotency-Key was used for a different request (idempotency_mismatch; details.differs)"},
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
        Header(alias="Idempotency-Key", max_length=MAX_NAME_LENGTH, pattern=IDEMPOTENCY_KEY_PATTERN,
               description="repeat-safe requests: the same key with the same body answers the first run "
               "(200); with a different body 409 idempotency_mismatch. 1-200 visible ASCII characters"),
    ] = None,
) -> RunDetail:
    """Record the run (`CREATED`) and send it to its job type's queue."""
    job = session.get(Job, run_in.job_id)  # held for the answer's job name: create_manual_run reads it once
    run, created = create_manual_run(session=session, registry=services.registry, run_in=run_in,
                                     actor=principal.actor, clock=services.clock,
                                     idempotency_key=idempotency_key, request_id=request_id(),
                                     settings=services.settings, sending=True)
    assert run.id is not None
    if not created:
        response.status_code = 200
        return RunDetail.build(session, get_run(session, run.id), currency=services.settings.currency)
    # Just created (and committed as sent): sent and answered from the row in hand, nothing read again.
    if not services.send_created([(run.id, run.job_type)]):
        run.enqueued_at = None
    assert job is not None
    return RunDetail.created(run, job.name, currency=services.settings.currency)


@router.post(
    "/batch",
    status_code=201,
    summary="Create up to 1,000 manual runs in one request, each with its own idempotency key",
    responses={
        200: {"model": RunBatchPublic, "description": "Every key was used before for the same request: "
              "the first runs, nothing new is created"},
        201: {"description": "The runs, in the order asked: recorded and sent (created true), or the run "
              "an entry's key made before (created false)"},
        404: {"model": ErrorBody, "description": "An entry names no such job (details.index)"},
        409: {"model": ErrorBody, "description": "An entry's job cannot run manually (job_not_runnable), or "
              "an entry's key was used for a different request (idempotency_mismatch); details.index names "
              "the entry and nothing is created"},
        **error_doc(422, "Invalid entries (details.index), a key repeated within the batch, or more than 1,000 runs"),
    },
)
def post_run_batch(batch: RunBatchCreate, response: Response, session: SessionDep, services: ServicesDep,
                   principal: Operator) -> RunBatchPublic:
    """All or nothing: any refused entry refuses the batch. Repeating a batch answers the same runs (200)."""
    runs = create_manual_runs(session=session, registry=services.registry, batch=batch, actor=principal.actor,
                              clock=services.clock, request_id=request_id(), settings=services.settings)
    new = [(run.run_id, run.job_type) for run in runs if run.created]
    services.send_created(new)
    if not new:
        response.status_code = 200
    return RunBatchPublic(created=len(new), runs=[BatchRunPublic(
        id=run.run_id, job_id=run.job_id, idempotency_key=run.idempotency_key, status=RunStatus(run.status),
        created=run.created) for run in runs])


@router.api_route("/batch", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def run_batch_other_methods() -> None:
    """``/runs/batch`` is not a run id: other methods than POST are 405, not a 422 about ``run_id``."""
    raise HTTPException(405, "only POST is allowed on /runs/batch", headers={"Allow": "POST"})


@router.get(
    "",
    summary="List runs, newest first (JSON pages or CSV export)",
    response_model=Page[RunPublic],
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                      "description": "A page of runs, or every filtered run as CSV (one snapshot)"},
               **error_doc(400, "A cursor the API did not issue"),
               **error_doc(422, "Invalid filters, or an export over SCHEDULER_MAX_EXPORT_ROWS (export_too_large)")},
)
def get_runs(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    _principal: Viewer,
    status: RunStatusFilter = None,
    job_id: Annotated[int | None, Query(ge=1, le=MAX_DB_INT, description="only this job's runs")] = None,
    job_type: JobTypeName = None,
    trigger: TriggerFilter = None,
    created_from: Annotated[QueryDatetime | None, Query(description="created at or after (UTC if no offset)")] = None,
    created_to: Annotated[QueryDatetime | None, Query(description="created before (UTC if no offset)")] = None,
    idempotency_key: Annotated[Text | None, Query(
        max_length=MAX_NAME_LENGTH, description="the run a POST /runs or a request_run message with this key made",
    )] = None,
    limit: PageSize = 50,
    cursor: Cursor = None,
    format: Annotated[Literal["json", "csv"] | None, Query(description="csv: export every filtered run")] = None,
) -> Any:
    """Filter by status, job, type, trigger, creation time and idempotency key; `format=csv` or
    `Accept: text/csv` exports."""
    filters = RunFilter(status=list(dict.fromkeys(status)) if status else None, job_id=job_id, job_type=job_type,
                        trigger=trigger, created_from=created_from, created_to=created_to,
                        idempotency_key=idempotency_key)
    wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    if wants_csv:
        session.rollback()
        pages = export_runs(services.engine, filters, max_rows=services.settings.max_export_rows,
                            currency=services.settings.currency)
        return csv_answer(pages, "runs.csv")
    runs, next_cursor = list_runs(session, filters, limit=limit, cursor=cursor)
    return Page[RunPublic](items=RunPublic.page(session, runs, currency=services.settings.currency),
                           next_cursor=next_cursor)


@router.get("/{run_id}", summary="Show a run: common columns, progress, item counts, audit trail",
            responses=NOT_FOUND)
def get_one_run(run_id: RunId, session: SessionDep, services: ServicesDep, _principal: Viewer) -> RunDetail:
    return RunDetail.build(session, get_run(session, run_id), currency=services.settings.currency)


@router.get(
    "/{run_id}/items",
    summary="List a run's per-type detail rows (JSON pages or CSV export)",
    response_model=Page[RunItemPublic],
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                     "description": "A page of items, or every filtered item as CSV (one column per detail field)"},
               **NOT_FOUND, **error_doc(400, "A cursor the API did not issue"),
               **error_doc(422, "Invalid filters, or an export over SCHEDULER_MAX_EXPORT_ROWS (export_too_large)")},
)
def get_items(
    request: Request,
    run_id: RunId,
    session: SessionDep,
    services: ServicesDep,
    _principal: Viewer,
    outcome: OutcomeFilter = None,
    limit: PageSize = 100,
    cursor: Cursor = None,
    format: Annotated[Literal["json", "csv"] | None, Query(description="csv: export every filtered item")] = None,
) -> Any:
    """Filter by outcome; `format=csv` or `Accept: text/csv` exports."""
    if format == "csv" or (format is None and "text/csv" in request.headers.get("accept", "")):
        get_run(session, run_id)
        session.rollback()
        pages = export_items(services.engine, run_id, outcome=outcome, max_rows=services.settings.max_export_rows,
                             currency=services.settings.currency)
        return csv_answer(pages, f"run-{run_id}-items.csv")
    items, next_cursor = list_items(session, run_id, outcome=outcome, limit=limit, after_id=id_cursor(cursor))
    currency = services.settings.currency
    return Page[RunItemPublic](items=[RunItemPublic.of(i, currency=currency) for i in items], next_cursor=next_cursor)


def _act(action: Literal["submit", "delete", "cancel"], run_id: int, body: ActionNote | None, session: Session,
         services: Services, principal: Principal) -> RunDetail:
    act_on_run(session=session, run_id=run_id, action=action, actor=principal.actor, clock=services.clock,
               note=body.note if body else "", settings=services.settings)
    session.commit()  # end the read transaction before other sessions write (SQLite)
    if action == "submit":
        services.send_apply(run_id)
    return RunDetail.build(session, get_run(session, run_id), currency=services.settings.currency)


@router.post("/{run_id}/submit", summary="Submit a previewed run: apply its staged effects",
             responses={**NOT_FOUND, **REFUSED})
def submit_run(run_id: RunId, session: SessionDep, services: ServicesDep, principal: Operator,
               body: NoteBody = None) -> RunDetail:
    return _act("submit", run_id, body, session, services, principal)


@router.post("/{run_id}/delete", summary="Delete a previewed run: nothing is applied, the record stays",
             responses={**NOT_FOUND, **REFUSED})
def delete_run(run_id: RunId, session: SessionDep, services: ServicesDep, principal: Operator,
               body: NoteBody = None) -> RunDetail:
    return _act("delete", run_id, body, session, services, principal)


@router.post("/{run_id}/cancel", summary="Cancel a run that has not started",
             responses={**NOT_FOUND, **REFUSED})
def cancel_run(run_id: RunId, session: SessionDep, services: ServicesDep, principal: Operator,
               body: NoteBody = None) -> RunDetail:
    return _act("cancel", run_id, body, session, services, principal)


@router.post("/{run_id}/retry", status_code=201, summary="Retry a FAILED or INCOMPLETE run as a new run",
             responses={**NOT_FOUND, **REFUSED, 201: {"description": "The new run", "links": RUN_LINKS}})
def retry(run_id: RunId, session: SessionDep, services: ServicesDep, principal: Operator) -> RunDetail:
    """A new run (trigger RETRY, `retry_of` = this run) for the failed items only."""
    run = retry_run(session=session, run_id=run_id, actor=principal.actor, clock=services.clock,
                    request_id=request_id())
    assert run.id is not None
    services.send_run(run.id)
    return RunDetail.build(session, get_run(session, run.id), currency=services.settings.currency)
