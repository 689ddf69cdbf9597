"""ASGI middleware of the API: bounded request bodies, and ``OPTIONS``/``405`` answers with the right ``Allow``.

A body larger than ``SCHEDULER_MAX_REQUEST_BYTES`` is refused with 413 ``payload_too_large``: at
once when ``Content-Length`` says so, otherwise while it is read (chunked uploads), before the
route sees any of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler.api.errors import error_response


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, counting what is actually received."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes (SCHEDULER_MAX_REQUEST_BYTES)"

    def _too_large(self) -> ASGIApp:
        return error_response(413, "payload_too_large", self._message(), {"limit_bytes": self.max_bytes},
                              headers={"Connection": "close"})


class AllowedMethods:
    """Answer ``OPTIONS`` with 204 and ``Allow``; give every 405 the ``Allow`` of all the path's operations.

    The methods come from the published OpenAPI document, the contract clients read. Starlette alone
    answers with the methods of the first route that matched the path, so ``OPTIONS /api/v1/jobs``
    said ``Allow: GET`` although POST is served there too. Paths outside the document (the page,
    its static files) are left to the router.
    """

    def __init__(self, app: ASGIApp, *, openapi: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.openapi = openapi
        self._paths: list[tuple[re.Pattern[str], str]] | None = None

    def allowed(self, path: str) -> str | None:
        """The ``Allow`` value of a documented path, or ``None`` for a path outside the document."""
        if self._paths is None:
            self._paths = [
                (re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))),
                 ", ".join(sorted({method.upper() for method in item} | {"OPTIONS"})))
                for template, item in self.openapi().get("paths", {}).items()
            ]
        return next((allow for pattern, allow in self._paths if pattern.fullmatch(path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (allow := self.allowed(scope["path"])) is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)
            return

        async def with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow.encode())]}
            await send(message)

        await self.app(scope, receive, with_allow)
