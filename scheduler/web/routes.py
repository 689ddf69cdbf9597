"""Routes of the Scheduler page: the HTML shell at ``/`` and its two static files.

The shell carries no data; the script fetches everything from ``/api/v1`` with the session cookie,
so the page sees exactly what the API allows. The product's enums are rendered into the shell
(``<script type="application/json" id="page-config">``) so the script never repeats them.
"""

from __future__ import annotations

import ast
import enum
import functools
import inspect
import itertools
import json
import textwrap
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from scheduler import auth
from scheduler.api.deps import get_services
from scheduler.api.security import pre_session_csrf
from scheduler.jobs import NotifyEvent
from scheduler.lifecycle import ACTIONS, IN_PROGRESS
from scheduler.models import ItemOutcome, JobStatus, MisfirePolicy, OverlapPolicy, RunStatus

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
API_BASE = "/api/v1"

# Only these files are served; anything else under /static is a 404.
STATIC_FILES: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}

templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
router = APIRouter(include_in_schema=False)


@functools.cache
def member_docs(enum_type: type[enum.Enum]) -> dict[str, str]:
    """The one-line docstrings written under enum members in their source (help text for selects)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(enum_type)))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for stmt, after in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.Assign)
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[enum_type[stmt.targets[0].id].value] = after.value.value.strip().replace("``", "")
    return docs


def _choices(enum_type: type[enum.Enum]) -> list[dict[str, str]]:
    docs = member_docs(enum_type)
    return [{"value": m.value, "help": docs.get(m.value, "")} for m in enum_type]


def page_config() -> dict[str, Any]:
    """What the script needs to know about the product that is not data: enums and the API base."""
    return {
        "api_base": API_BASE,
        "csrf_cookie": auth.CSRF_COOKIE,
        "csrf_header": auth.CSRF_HEADER,
        "csrf_field": auth.CSRF_FIELD,
        "run_statuses": _choices(RunStatus),
        "job_statuses": [s.value for s in JobStatus if s is not JobStatus.ARCHIVED],
        "misfire_policies": _choices(MisfirePolicy),
        "overlap_policies": _choices(OverlapPolicy),
        "notify_events": [e.value for e in NotifyEvent],
        "item_outcomes": [o.value for o in ItemOutcome],
        "run_actions": list(ACTIONS),
        "in_progress_statuses": sorted(IN_PROGRESS),
    }


@router.get("/", response_class=HTMLResponse)
def scheduler_page(request: Request) -> HTMLResponse:
    """The page shell; it holds no data (it shows the login form first), so it is served without a key.

    It sets the pre-session CSRF cookie that the login form repeats.
    """
    config = json.dumps(page_config()).replace("<", "\\u003c")
    page = templates.TemplateResponse(request, "index.html", {"config_json": config})
    pre_session_csrf(request, page, get_services(request).settings)
    return page


@router.get("/favicon.ico")
def favicon() -> Response:
    """No icon: answer browsers' automatic request without a 404 in every log."""
    return Response(status_code=204)


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail="not found")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers={"Cache-Control": "no-cache"})
