"""Operations: ``/healthz`` (liveness), ``/readyz`` (database and Redis reachable), ``/metrics``."""

from __future__ import annotations

import logging
from contextlib import suppress

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from scheduler.api.deps import ServicesDep
from scheduler.api.errors import ErrorBody
from scheduler.metrics import exposition_registry

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


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
def metrics(services: ServicesDep) -> Response:
    with suppress(Exception):
        services.probe_redis()  # scheduler_broker_up says what this scrape found
    return Response(generate_latest(exposition_registry()), media_type=CONTENT_TYPE_LATEST)
