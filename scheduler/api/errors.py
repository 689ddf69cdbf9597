"""The one place where errors become HTTP answers, always ``{code, message, details}``.

``SchedulerError`` subclasses map by family (invalid input 422, not found 404, conflict 409,
unauthorized 401, forbidden 403, service unavailable 503; a cursor the API did not issue 400);
FastAPI's request validation errors become 422 with one readable message naming the field. A
database refusing a value (``DataError``) or a constraint (``IntegrityError``) is a backstop for
input the validation missed: 422 or 409, logged so the gap gets closed. Anything unexpected is
logged and answered 500 ``internal_error`` without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException

from scheduler.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidCursor,
    InvalidInput,
    NotFound,
    SchedulerError,
    ServiceUnavailable,
    Unauthorized,
)

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    code: str = Field(description="stable machine-readable error code, e.g. invalid_cron")
    message: str = Field(description="one readable sentence saying what is wrong")
    details: dict[str, Any] = Field(default_factory=dict, description="structured context")


# Most specific first: InvalidCursor is also an InvalidInput.
_STATUS: tuple[tuple[type[SchedulerError], int], ...] = (
    (InvalidCursor, 400),
    (InvalidInput, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthorized, 401),
    (Forbidden, 403),
    (ServiceUnavailable, 503),
)

Responses = dict[int | str, dict[str, Any]]


def error_doc(status: int, description: str) -> Responses:
    """An OpenAPI ``responses`` entry for an error answer."""
    return {status: {"model": ErrorBody, "description": description}}


ERROR_RESPONSES: Responses = {
    **error_doc(401, "No valid API key"),
    **error_doc(403, "The key's role does not allow this"),
    **error_doc(422, "The input is invalid"),
}


def status_of(exc: SchedulerError) -> int:
    for family, status in _STATUS:
        if isinstance(exc, family):
            return status
    return 500


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"code": code, "message": message, "details": jsonable_encoder(details or {})}
    return JSONResponse(body, status_code=status, headers=headers)


async def _scheduler_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SchedulerError)
    status = status_of(exc)
    if status == 500:
        log.error("unmapped scheduler error %s: %s", exc.code, exc.message)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.code, exc.message, exc.details, headers)


def _location(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        where, rest = parts[0], parts[1:]
        return f"{where} field {'.'.join(rest)}" if rest else f"request {where}"
    return ".".join(parts)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "invalid value")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    if errors:
        first = errors[0]
        message = f"{_location(first['loc'])}: {first['msg']}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    else:
        message = "the request is invalid"
    return error_response(422, "invalid_request", message, {"errors": errors})


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = "no such path"
    return error_response(exc.status_code, code, message, {}, dict(exc.headers or {}))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OperationalError)
    log.error("database error on %s %s: %s", request.method, request.url.path, exc.orig)
    reason = _first_line(exc.orig)
    unavailable = DatabaseUnavailable(request.app.state.services.database_url(), reason)
    return error_response(503, unavailable.code, unavailable.message, unavailable.details)


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DataError)
    log.warning("database refused a value on %s %s: %s", request.method, request.url.path, exc.orig)
    return error_response(422, "invalid_value", "a value is out of the range the database can store",
                          {"reason": _first_line(exc.orig)})


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IntegrityError)
    log.warning("database constraint on %s %s: %s", request.method, request.url.path, exc.orig)
    return error_response(409, "conflict", "the request conflicts with stored data",
                          {"reason": _first_line(exc.orig)})


def _first_line(error: BaseException | None) -> str:
    return (str(error).strip().splitlines() or ["error"])[0][:200] if error else "error"


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Answered outside the request id middleware (Starlette's outermost layer): the id is on the scope.
    rid = request.scope.get("state", {}).get("request_id")
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc,
                  extra={"request_id": rid} if rid else None)
    return error_response(500, "internal_error", "an unexpected error occurred; it has been logged",
                          headers={"X-Request-Id": rid} if rid else None)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SchedulerError, _scheduler_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(Exception, _unexpected)
