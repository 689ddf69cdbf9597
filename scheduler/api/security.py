"""Security headers on every answer (page and API), whether a request came over HTTPS, the CSRF cookie.

The page is served under a strict Content-Security-Policy: scripts, styles and everything else only
from this origin, no inline script, no framing. Swagger UI at ``/docs`` loads its bundle from a CDN
and starts it with an inline script, so ``/docs`` alone gets a relaxed policy that allows that CDN
and that one inline script (by its hash); it renders no data, only the published contract. HSTS is
sent only over HTTPS; ``X-Forwarded-Proto`` counts only when ``SCHEDULER_TRUST_FORWARDED_PROTO`` says
the proxy in front sets it.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.openapi.docs import get_swagger_ui_html
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler import auth
from scheduler.settings import Settings

DOCS_PATH = "/docs"
OPENAPI_PATH = "/openapi.json"
DOCS_CDN = "https://cdn.jsdelivr.net"

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"


def docs_html() -> str:
    """The Swagger UI page of the API (served at ``/docs``)."""
    return bytes(get_swagger_ui_html(openapi_url=OPENAPI_PATH, title="Billing Scheduler — API").body).decode()


def docs_csp() -> str:
    """The relaxed policy of ``/docs``: the CDN's bundle and the page's own inline start-up script, nothing else."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in re.findall(r"<script>(.*?)</script>", docs_html(), re.S)
    )
    return (f"default-src 'self'; script-src 'self' {DOCS_CDN} {hashes}; style-src 'self' {DOCS_CDN} 'unsafe-inline'; "
            "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'")


def is_https(connection: HTTPConnection, settings: Settings) -> bool:
    """Whether the browser reached us over HTTPS (directly, or through a trusted proxy)."""
    if connection.url.scheme == "https":
        return True
    if not settings.trust_forwarded_proto:
        return False
    forwarded = connection.headers.get("x-forwarded-proto", "")
    return forwarded.split(",")[0].strip().lower() == "https"


class SecurityHeaders:
    """ASGI middleware adding the security headers to every HTTP answer (streamed ones too)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.docs_policy = docs_csp()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = is_https(HTTPConnection(scope), self.settings)
        policy = self.docs_policy if scope["path"] == DOCS_PATH else PAGE_CSP
        api = scope["path"].startswith(("/api/", "/login", "/logout"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", policy)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if api:
                    headers.setdefault("Cache-Control", "no-store")
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def set_csrf_cookie(response: Response, request: Request, settings: Settings, token: str) -> None:
    """The readable CSRF cookie the page's script repeats in ``X-CSRF-Token``."""
    response.set_cookie(auth.CSRF_COOKIE, token, httponly=False, samesite="strict",
                        secure=is_https(request, settings), path="/")


def pre_session_csrf(request: Request, response: Response, settings: Settings) -> str:
    """The login form's CSRF token: the browser's current cookie, or a new one set on ``response``."""
    token = request.cookies.get(auth.CSRF_COOKIE)
    if not token or len(token) > 100:
        token = auth.new_secret()
        set_csrf_cookie(response, request, settings, token)
    return token
