"""Route dependencies: services, a database session per request, the principal and role checks.

See :mod:`scheduler.auth` for the credentials accepted and :mod:`scheduler.sessions` for page sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from scheduler import auth, sessions
from scheduler.api.services import Services
from scheduler.auth import CsrfRejected, InsufficientRole, MissingCredentials, Principal
from scheduler.models import ApiRole

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def get_services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


ServicesDep = Annotated[Services, Depends(get_services)]


def get_db(services: ServicesDep) -> Iterator[Session]:
    with services.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


# Declared for the OpenAPI contract (and the docs' Authorize button); the checks are below.
_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer sch_...`")
_api_key = APIKeyHeader(name="X-Api-Key", auto_error=False, description="an API key, as a header")
_cookie = APIKeyCookie(name=auth.SESSION_COOKIE, auto_error=False,
                       description="the page session set by POST /login; changes also need the X-CSRF-Token header")


async def _csrf_form_field(request: Request) -> str | None:
    """The ``csrf_token`` form field of a cookie-authenticated form post, if any."""
    if request.method in auth.SAFE_METHODS or auth.SESSION_COOKIE not in request.cookies:
        return None
    if not request.headers.get("content-type", "").startswith(_FORM_TYPES):
        return None
    form = await request.form()
    value = form.get(auth.CSRF_FIELD)
    return value if isinstance(value, str) else None


def get_principal(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    form_csrf: Annotated[str | None, Depends(_csrf_form_field)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    """Who the request acts as: 401 without a live key or page session, 403 for a change without CSRF."""
    token = (bearer.credentials.strip() if bearer else "") or (api_key or "").strip()
    if token:
        return services.key_cache.principal(session, token)
    if not cookie:
        raise MissingCredentials()
    page = sessions.resume(session, cookie, now=services.clock.now(), settings=services.settings)
    if request.method not in auth.SAFE_METHODS and not page.csrf_matches(request.headers.get(auth.CSRF_HEADER)
                                                                          or form_csrf):
        raise CsrfRejected()
    return page.principal


def require(role: ApiRole) -> Callable[[Principal], Principal]:
    """A dependency admitting principals with ``role`` or a higher one."""

    def check_role(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.has(role):
            raise InsufficientRole(role, principal)
        return principal

    return check_role


Viewer = Annotated[Principal, Depends(require(ApiRole.VIEWER))]
Operator = Annotated[Principal, Depends(require(ApiRole.OPERATOR))]
Admin = Annotated[Principal, Depends(require(ApiRole.ADMIN))]
