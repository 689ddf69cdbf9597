"""API request metrics by route template: ``scheduler_http_requests_total`` and the latency histogram.

The ``route`` label is the matched route's path (``/api/v1/runs/{run_id}``), never the raw path, and
``unmatched`` for a path no route knows, so the label set stays as small as the API.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "scheduler_http_requests_total", "API requests by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "scheduler_http_request_duration_seconds", "API request latency by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Any other method is counted as ``OTHER``: a client cannot grow the label set."""


def route_template(scope: Scope) -> str:
    """The template of the route that matched the request, prefixes included, or ``unmatched``.

    FastAPI may report a route of an included router by its own path (``/runs/{run_id}``); the
    prefix it was mounted under is what of the request's path precedes the part that route matched.
    """
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str) or not path:
        return UNMATCHED
    found = _route_regex(path).search(scope.get("path", ""))
    prefix = scope.get("path", "")[: found.start()] if found else ""
    return prefix + path


@lru_cache(maxsize=1024)
def _route_regex(path: str) -> re.Pattern[str]:
    regex, _format, _convertors = compile_path(path)
    return re.compile(regex.pattern.removeprefix("^"))


class HttpMetrics:
    """ASGI middleware: counts and times every HTTP request once its answer has started."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            route = route_template(scope)
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_DURATION.labels(method=method, route=route).observe(time.perf_counter() - started)
