"""The request id: taken from ``X-Request-Id`` (or made), returned on every answer, on every log line of the
request (uvicorn's access line included) and stored with a run the request creates.

A caller's id is kept only when it is short and plain (letters, digits, ``.``, ``_``, ``:``, ``-``, at
most 128 characters), so nobody can forge log lines or fill them; anything else gets a fresh id.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler.logs import current_field, run_fields

HEADER = "X-Request-Id"
_RAW_HEADER = HEADER.lower().encode()
_SAFE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def accepted_request_id(given: str | None) -> str:
    """The caller's id when it is safe to log and store, else a new one."""
    if given is not None and _SAFE.fullmatch(given):
        return given
    return uuid.uuid4().hex


def request_id() -> str | None:
    """The id of the request being served (``None`` outside a request)."""
    value = current_field("request_id")
    return str(value) if value is not None else None


class RequestIdMiddleware:
    """Pure ASGI middleware (no task of its own), so the id is in the context of everything the request runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == _RAW_HEADER), None)
        rid = accepted_request_id(given.decode("latin-1") if given is not None else None)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = [h for h in message.get("headers", []) if h[0].lower() != _RAW_HEADER]
                message = {**message, "headers": [*headers, (_RAW_HEADER, rid.encode())]}
            await send(message)

        # Kept on the scope too: a 500 is answered outside this middleware, once the block below has ended.
        scope.setdefault("state", {})["request_id"] = rid
        with run_fields(request_id=rid):
            await self.app(scope, receive, send_with_id)
