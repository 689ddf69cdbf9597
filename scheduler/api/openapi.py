"""The published contract: every operation lists the error answers it can give, all with ``ErrorBody``.

Routes document their specific answers (404 "No such job", 409 …); this fills in the ones that
follow from an operation's shape, so none is forgotten: 422 wherever there is input, 400 where a
cursor or a body is read, 404 where a path names a resource, 413 where a body is read, 401/403 where a
key is needed. FastAPI's own validation-error model is replaced by ``ErrorBody``, which is what the API
answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from scheduler.api.errors import ErrorBody

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def links(parameter: str, **targets: tuple[str, str]) -> dict[str, Any]:
    """OpenAPI links from a created resource: each target operation gets ``parameter`` = the answer's ``id``.

    ``targets`` maps a link name to ``(operationId, description)``; Schemathesis follows them statefully.
    """
    return {name: {"operationId": operation, "parameters": {parameter: "$response.body#/id"}, "description": text}
            for name, (operation, text) in targets.items()}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def _complete(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    parameters = operation.get("parameters", [])
    needed: dict[str, str] = {}
    if parameters or "requestBody" in operation:
        needed["422"] = "The input is invalid; details name the field"
    if any(p.get("name") == "cursor" for p in parameters):
        needed["400"] = "A cursor the API did not issue"
    if any(p.get("in") == "path" for p in parameters):
        needed["404"] = "No such resource"
    if "requestBody" in operation:
        needed["400"] = "The request body cannot be read (not JSON in UTF-8, or nested too deeply)"
        needed["413"] = "The request body is larger than SCHEDULER_MAX_REQUEST_BYTES"
    if operation.get("security"):
        needed["401"] = "No valid API key"
        needed["403"] = "The key's role does not allow this"
    for status, description in needed.items():
        answer = responses.get(status)
        if answer is None:
            responses[status] = _error(description)
        else:
            answer["content"] = {"application/json": {"schema": _ERROR_REF}}


def contract(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """An ``app.openapi`` that builds the completed document once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, summary=app.summary,
                               description=app.description, routes=app.routes, tags=app.openapi_tags)
        for item in document.get("paths", {}).values():
            for method, operation in item.items():
                if method in _METHODS:
                    _complete(operation)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
        app.openapi_schema = document
        return document

    return openapi
