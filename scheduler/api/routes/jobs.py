"""``/jobs``: create system jobs (immutable afterwards), list and show them, pause/resume/archive."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from scheduler.api.deps import Admin, Operator, ServicesDep, SessionDep, Viewer
from scheduler.api.errors import ERROR_RESPONSES, error_doc
from scheduler.api.openapi import links
from scheduler.api.params import Cursor, JobId, JobStatusFilter, JobTypeName, PageSize, id_cursor
from scheduler.api.schemas import ActionNote, FireTime, JobDetail, NextFires, Page, iso_utc
from scheduler.api.services import Services
from scheduler.auth import Principal
from scheduler.backfill import BackfillRequest, backfill
from scheduler.jobs import (
    JobAction,
    JobCreate,
    JobPublic,
    change_job_status,
    create_job,
    get_job,
    job_schedule,
    list_jobs,
)
from scheduler.models import JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

NOT_FOUND = error_doc(404, "No such job")
REFUSED = error_doc(409, "Not allowed at the job's status; details.allowed_actions")


JOB_LINKS = links(
    "job_id",
    GetJob=("get_one_job", "the job just created"),
    NextFires=("next_fires", "its next fire times"),
    PauseJob=("pause_job", "pause it"),
    ResumeJob=("resume_job", "resume it once paused"),
    ArchiveJob=("archive_job", "archive it"),
    Backfill=("post_backfill", "runs for past ticks"),
) | {"CreateRun": {"operationId": "post_run", "requestBody": {"job_id": "$response.body#/id"},
                   "description": "a manual run of the job"}}


@router.post("", status_code=201, summary="Create a system job",
             responses={**error_doc(409, "A live job has this name, ignoring case and Unicode form "
                                         "(job_name_taken)"),
                        201: {"description": "The job as stored", "links": JOB_LINKS}})
def post_job(job_in: JobCreate, session: SessionDep, services: ServicesDep, principal: Admin) -> JobPublic:
    """Validate everything (type, properties, cron, time zone) and insert; nothing is written on error.

    The definition cannot be edited afterwards; to change it, create a new job.
    """
    job = create_job(session=session, registry=services.registry, job_in=job_in, actor=principal.actor,
                     clock=services.clock, settings=services.settings)
    if job.status == JobStatus.ACTIVE and job.cron:
        services.wake_beat()
    return JobPublic.of(job)


@router.get("", summary="List jobs", responses=error_doc(400, "A cursor the API did not issue"))
def get_jobs(
    session: SessionDep,
    _principal: Viewer,
    status: JobStatusFilter = None,
    job_type: JobTypeName = None,
    include_archived: Annotated[bool, Query(description="also list archived jobs")] = False,
    limit: PageSize = 100,
    cursor: Cursor = None,
) -> Page[JobPublic]:
    """Jobs in id order; archived jobs only when asked for (status=ARCHIVED or include_archived)."""
    after_id = id_cursor(cursor)
    jobs = list_jobs(session, include_archived=include_archived, job_type=job_type,
                     status=status.value if status else None, limit=limit + 1, after_id=after_id)
    next_cursor = None
    if len(jobs) > limit:
        jobs = jobs[:limit]
        next_cursor = str(jobs[-1].id)
    return Page[JobPublic](items=[JobPublic.of(j) for j in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", summary="Show a job with its audit trail and allowed actions", responses=NOT_FOUND)
def get_one_job(job_id: JobId, session: SessionDep, _principal: Viewer) -> JobDetail:
    return JobDetail.build(session, get_job(session, job_id))


def _act(action: JobAction, job_id: int, body: ActionNote | None, session: Session, services: Services,
         principal: Principal) -> JobDetail:
    job = change_job_status(session=session, job_id=job_id, action=action, actor=principal.actor,
                            clock=services.clock, note=body.note if body else "")
    if action == "resume" and job.cron:
        services.wake_beat()
    return JobDetail.build(session, job)


NoteBody = Annotated[ActionNote | None, Body(description="optional note for the audit trail")]


@router.post("/{job_id}/pause", summary="Pause a job: it fires nothing and refuses manual runs",
             responses={**NOT_FOUND, **REFUSED})
def pause_job(job_id: JobId, session: SessionDep, services: ServicesDep, principal: Admin,
              body: NoteBody = None) -> JobDetail:
    return _act("pause", job_id, body, session, services, principal)


@router.post("/{job_id}/resume", summary="Resume a paused job; it is scheduled from now on",
             responses={**NOT_FOUND, **REFUSED})
def resume_job(job_id: JobId, session: SessionDep, services: ServicesDep, principal: Admin,
               body: NoteBody = None) -> JobDetail:
    return _act("resume", job_id, body, session, services, principal)


@router.post("/{job_id}/archive", summary="Archive a job: hidden and inert, history kept, name reusable",
             responses={**NOT_FOUND, **REFUSED})
def archive_job(job_id: JobId, session: SessionDep, services: ServicesDep, principal: Admin,
                body: NoteBody = None) -> JobDetail:
    return _act("archive", job_id, body, session, services, principal)


@router.get("/{job_id}/next-fires", summary="The job's next fire times in UTC and in its zone",
            responses=NOT_FOUND)
def next_fires(
    job_id: JobId,
    session: SessionDep,
    services: ServicesDep,
    _principal: Viewer,
    count: Annotated[int, Query(ge=1, le=1000, description="how many fire times")] = 10,
) -> NextFires:
    """Fires after now, each flagged when the zone's UTC offset changed since the previous one."""
    job = get_job(session, job_id)
    schedule = job_schedule(job)
    if schedule is None:
        return NextFires(description="manual runs only (no schedule)", timezone=job.timezone, fires=[])
    fires = [
        FireTime(utc=iso_utc(f.utc), local=f.local.isoformat(), dst_change=f.dst_change)
        for f in schedule.next_fires(services.clock.now(), count)
    ]
    return NextFires(description=schedule.describe(), timezone=job.timezone, cron_expanded=schedule.expanded,
                     fires=fires)


class BackfillAnswer(BaseModel):
    ticks: int = Field(description="ticks of the job's schedule in the range")
    created: list[int] = Field(description="ids of the runs created")
    unchanged: int = Field(description="ticks that got no new run (already run, or not matching the mode)")


@router.post("/{job_id}/backfill", status_code=201, summary="Create runs for the ticks of a past range",
             responses={**NOT_FOUND, **error_doc(409, "The job is archived")})
def post_backfill(job_id: JobId, request: BackfillRequest, session: SessionDep, services: ServicesDep,
                  principal: Operator) -> BackfillAnswer:
    """Through the same unique ledger as beat: a backfill never duplicates a scheduled run; audited on the job."""
    result = backfill(session=session, job_id=job_id, request=request, actor=principal.actor, clock=services.clock)
    session.commit()
    for run_id in result.created:
        services.send_run(run_id)
    return BackfillAnswer(ticks=result.ticks, created=result.created, unchanged=result.unchanged)
