"""The FastAPI application: REST API under ``/api/v1``, the page at ``/``, probes, metrics, login.

``create_app`` connects to nothing: the engine, the job type registry and the dispatcher are
built from the settings on first use unless given (tests pass their own), and live in
``app.state.services``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from sqlalchemy import Engine

from scheduler.api.errors import install_error_handlers
from scheduler.api.http_metrics import HttpMetrics
from scheduler.api.middleware import AllowedMethods, BodySizeLimit
from scheduler.api.openapi import contract
from scheduler.api.request_id import RequestIdMiddleware
from scheduler.api.routes import health, job_types, jobs, keys, login, me, refused_requests, runs
from scheduler.api.security import DOCS_PATH, SecurityHeaders, docs_html
from scheduler.api.server_paths import ServerPathFilter
from scheduler.api.services import Services
from scheduler.clock import Clock
from scheduler.dispatch import Dispatcher
from scheduler.jobtypes import JobTypeRegistry
from scheduler.settings import Settings
from scheduler.web import router as page_router

API_PREFIX = "/api/v1"

TAGS: list[dict[str, Any]] = [
    {"name": "job types", "description": "Installed job types and the templates of their custom fields."},
    {"name": "jobs", "description": "System jobs: create (immutable afterwards), list, pause, resume, archive."},
    {"name": "runs", "description": "Job runs: manual runs, review (submit/delete), cancel, retry, audit."},
    {"name": "keys", "description": "API keys (admin). Tokens are shown once."},
    {"name": "session", "description": "Cookie login for the page (CSRF double-submit)."},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics."},
]


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    registry: JobTypeRegistry | None = None,
    dispatcher: Dispatcher | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """Build the API application; nothing connects until a request needs it."""
    services = Services(settings, engine=engine, registry=registry, dispatcher=dispatcher, clock=clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()

    app = FastAPI(
        title="Billing Scheduler",
        version="1.0.0",
        summary="Schedule, run and audit billing jobs: dunning, usage mediation, ERP transfer, GL collection.",
        description=(
            "Errors are always JSON `{code, message, details}`; `details.field` names the field at fault. "
            "Statuses are upper-case strings; timestamps are ISO-8601 UTC ending in `Z`, between 1900 and 2999. "
            "Request bodies are limited to SCHEDULER_MAX_REQUEST_BYTES (413 beyond). Every route under `/api/v1` "
            "needs a key: `Authorization: Bearer <key>` or `X-Api-Key`, or the page's session cookie."
        ),
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=_operation_id,
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(HttpMetrics)
    app.add_middleware(ServerPathFilter, settings=settings)
    app.add_middleware(SecurityHeaders, settings=settings)

    @app.get(DOCS_PATH, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        """Swagger UI; its CSP (see :mod:`scheduler.api.security`) admits exactly this page's scripts."""
        return HTMLResponse(docs_html())

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(job_types.router)
    api.include_router(jobs.router)
    api.include_router(runs.router)
    api.include_router(refused_requests.router)
    api.include_router(keys.router)
    api.include_router(me.router)
    app.include_router(api)
    app.include_router(login.router)
    app.include_router(health.router)
    app.include_router(page_router)
    app.openapi = contract(app)  # type: ignore[method-assign]
    app.add_middleware(AllowedMethods, openapi=app.openapi)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app


def _operation_id(route: APIRoute) -> str:
    """The handler's name (``post_run``, ``get_one_job``): stable ids that OpenAPI links refer to."""
    return route.name
