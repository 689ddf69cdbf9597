"""Operations: ``/healthz`` (liveness), ``/readyz`` (database and Redis reachable), ``/metrics``."""

from __future__ import annotations

import logging
from contextlib import suppress

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from scheduler.api.deps import ServicesDep
from scheduler.api.errors import ErrorBody
from scheduler.api.services import Services
from scheduler.metrics import RUNS_IN_STATUS, exposition_registry
from scheduler.models import ACTIVE_RUN_STATUSES, JobRun

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: the database and Redis are reachable",
    responses={503: {"model": ErrorBody, "description": "A backing service is unreachable; names the setting "
                     "(details.setting) and the state of each (details.checks), never a URL"}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    status, body = services.readiness.answer()
    return JSONResponse(body, status_code=status)


def update_runs_in_status(services: Services) -> None:
    """Set ``scheduler_runs_in_status`` from one GROUP BY; absent combinations read 0."""
    stmt = (
        select(col(JobRun.job_type), col(JobRun.status), func.count())
        .where(col(JobRun.status).in_(ACTIVE_RUN_STATUSES))
        .group_by(col(JobRun.job_type), col(JobRun.status))
    )
    with services.session_factory() as session:
        counts = {(job_type, status): n for job_type, status, n in session.execute(stmt).all()}
    job_types = set(services.registry.names()) | {job_type for job_type, _ in counts}
    for job_type in sorted(job_types):
        for status in ACTIVE_RUN_STATUSES:
            RUNS_IN_STATUS.labels(job_type=job_type, status=status.value).set(counts.get((job_type, status), 0))


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
def metrics(services: ServicesDep) -> Response:
    with suppress(Exception):
        services.probe_redis()  # scheduler_broker_up says what this scrape found
    try:
        update_runs_in_status(services)
    except SQLAlchemyError as exc:
        log.warning("scheduler_runs_in_status not updated: %s", exc)
    return Response(generate_latest(exposition_registry()), media_type=CONTENT_TYPE_LATEST)
