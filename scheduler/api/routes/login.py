"""``/login`` and ``/logout``: the page's server-side session (see :mod:`scheduler.sessions`).

The login form is CSRF-protected too: ``GET /login`` (and the page shell) set a pre-session
``scheduler_csrf`` cookie, and ``POST /login`` must repeat it in the ``csrf_token`` field or the
``X-CSRF-Token`` header, so another site cannot log a browser in under its own key. A successful
login replaces that cookie with the session's own CSRF token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from scheduler import auth, sessions
from scheduler.api.deps import ServicesDep, SessionDep
from scheduler.api.errors import ErrorBody
from scheduler.api.security import is_https, pre_session_csrf, set_csrf_cookie

router = APIRouter(tags=["session"])


class LoginForm(BaseModel):
    csrf_token: str = Field(description="repeat it as the csrf_token form field (or X-CSRF-Token) of POST /login")


class LoggedIn(BaseModel):
    name: str
    role: str
    csrf_token: str = Field(description="repeat it in X-CSRF-Token (or the csrf_token form field) on changes")


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths: never redirect to another host."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


@router.get("/login", summary="A CSRF token for the login form (also set as the scheduler_csrf cookie)")
def login_form(request: Request, response: Response, services: ServicesDep) -> LoginForm:
    return LoginForm(csrf_token=pre_session_csrf(request, response, services.settings))


@router.post(
    "/login",
    summary="Log in with an API key: opens a server-side session (HTTP-only cookie) and sets the CSRF cookie",
    responses={303: {"description": "Logged in; redirect to `next`"},
               401: {"model": ErrorBody, "description": "Unknown or revoked key"},
               403: {"model": ErrorBody, "description": "The login form's CSRF token is missing or wrong"}},
)
def login(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    api_key: Annotated[str, Form(min_length=1, max_length=500)],
    csrf_token: Annotated[str | None, Form(max_length=200, description="the scheduler_csrf cookie's value")] = None,
    next: Annotated[str | None, Form(description="same-site path to go to afterwards")] = None,
) -> Response:
    presented = csrf_token or request.headers.get(auth.CSRF_HEADER)
    if not auth.same_secret(request.cookies.get(auth.CSRF_COOKIE), presented):
        raise auth.CsrfRejected()
    key = auth.verify(session, api_key)
    if previous := request.cookies.get(auth.SESSION_COOKIE):
        sessions.end(session, previous)
    started = sessions.start(session, key, now=services.clock.now(), settings=services.settings)
    body = LoggedIn(name=key.name, role=key.role, csrf_token=started.csrf_token)
    target = _safe_next(next)
    response: Response = (
        RedirectResponse(target, status_code=303) if target else JSONResponse(body.model_dump())
    )
    response.set_cookie(auth.SESSION_COOKIE, started.session_id, httponly=True, samesite="lax",
                        secure=is_https(request, services.settings), path="/",
                        max_age=int(services.settings.session_max_seconds))
    set_csrf_cookie(response, request, services.settings, started.csrf_token)
    return response


@router.post("/logout", status_code=204, summary="Log out: ends the server-side session and clears its cookie")
def logout(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    response = Response(status_code=204)
    if session_id := request.cookies.get(auth.SESSION_COOKIE):
        sessions.end(session, session_id)
    response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=is_https(request, services.settings))
    set_csrf_cookie(response, request, services.settings, auth.new_secret())  # for the next login form
    return response
