"""``/job-types``: the installed job types and the templates of their custom fields."""

from __future__ import annotations

from fastapi import APIRouter

from scheduler.api.deps import ServicesDep, Viewer
from scheduler.api.errors import ERROR_RESPONSES, ErrorBody
from scheduler.api.schemas import JobTypeTemplate, Page
from scheduler.errors import NotFound

router = APIRouter(prefix="/job-types", tags=["job types"], responses=ERROR_RESPONSES)


@router.get("", summary="List installed job types with their property templates")
def list_job_types(services: ServicesDep, _principal: Viewer) -> Page[JobTypeTemplate]:
    """Each type's JSON schemas for job `properties` and manual-run `run_properties`."""
    items = [JobTypeTemplate.model_validate(jt.template()) for jt in services.registry.all()]
    return Page[JobTypeTemplate](items=items)


@router.get("/{name}", summary="Show one job type's property templates",
            responses={404: {"model": ErrorBody, "description": "No such job type"}})
def get_job_type(name: str, services: ServicesDep, _principal: Viewer) -> JobTypeTemplate:
    registry = services.registry
    if name not in registry:
        raise NotFound(f"job type {name!r} is not installed", details={"job_type": name,
                                                                       "known": registry.names()})
    return JobTypeTemplate.model_validate(registry.get(name).template())
