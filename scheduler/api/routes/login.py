"""``/login`` and ``/logout``: the page's session cookie (see :mod:`scheduler.auth` for CSRF)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from scheduler import auth
from scheduler.api.deps import SessionDep
from scheduler.api.errors import ErrorBody

router = APIRouter(tags=["session"])


class LoggedIn(BaseModel):
    name: str
    role: str
    csrf_token: str = Field(description="repeat it in X-CSRF-Token (or the csrf_token form field) on changes")


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths: never redirect to another host."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


@router.post(
    "/login",
    summary="Log in with an API key: sets the HTTP-only session cookie and the CSRF cookie",
    responses={303: {"description": "Logged in; redirect to `next`"},
               401: {"model": ErrorBody, "description": "Unknown or revoked key"}},
)
def login(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form(min_length=1, max_length=500)],
    next: Annotated[str | None, Form(description="same-site path to go to afterwards")] = None,
) -> Response:
    key = auth.verify(session, api_key)
    csrf = auth.new_csrf_token()
    body = LoggedIn(name=key.name, role=key.role, csrf_token=csrf)
    target = _safe_next(next)
    response: Response = (
        RedirectResponse(target, status_code=303) if target else JSONResponse(body.model_dump())
    )
    secure = request.url.scheme == "https"
    response.set_cookie(auth.SESSION_COOKIE, api_key.strip(), httponly=True, samesite="lax", secure=secure,
                        path="/")
    response.set_cookie(auth.CSRF_COOKIE, csrf, httponly=False, samesite="strict", secure=secure, path="/")
    return response


@router.post("/logout", status_code=204, summary="Log out: clears the session and CSRF cookies")
def logout() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    response.delete_cookie(auth.CSRF_COOKIE, path="/")
    return response
