"""No absolute server path in an API answer: paths under the files root are shown relative to it.

Job types record what happened in words of their own (item details, run errors, event notes), and an
operating-system error names the file it failed on with its absolute path. Every answer under
``/api/`` (JSON and CSV export alike) is passed through :class:`ServerPathFilter`: a path under
``SCHEDULER_FILES_ROOT`` becomes relative to it (``usage/incoming/day-1.csv``, as the job's
properties name it), the root itself ``<files root>``, and anything else under the data directory
``<data dir>/…``. Job types also avoid writing other absolute paths in the first place.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler.settings import Settings

_START = r"(?<![\w.-])"
"""A root starts a path, not a URL's path after its host (``https://erp.example.com/srv/files`` stays)."""
_END = r"(?![\w.-])"
"""A root ends where a path segment ends (``/srv/files`` must not match ``/srv/files2``)."""


class ServerPaths:
    """Rewrites the installation's absolute directories out of a text."""

    def __init__(self, settings: Settings) -> None:
        files_root = _absolute(settings.resolved_files_root)
        data_dir = _absolute(settings.data_dir)
        self._rules: list[tuple[re.Pattern[str], str]] = []
        for root, name, strip_slash in ((files_root, "<files root>", True), (data_dir, "<data dir>", False)):
            for spelled in _spellings(root):
                if strip_slash:
                    self._rules.append((re.compile(_START + re.escape(spelled + "/")), ""))
                self._rules.append((re.compile(_START + re.escape(spelled) + _END), name))

    def scrub(self, text: str) -> str:
        for pattern, replacement in self._rules:
            text = pattern.sub(replacement, text)
        return text


def _absolute(path: Path) -> str:
    return str(path.resolve())


def _spellings(root: str) -> list[str]:
    """The root as it appears in plain text and inside a JSON string (``/`` stays, ``\\`` doubles)."""
    encoded = json.dumps(root, ensure_ascii=False)[1:-1]
    return [root] if encoded == root else [root, encoded]


class ServerPathFilter:
    """ASGI middleware applying :class:`ServerPaths` to the body of every ``/api/`` answer."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.paths = ServerPaths(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        started = False

        async def filtered(message: Message) -> None:
            nonlocal start, started
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            text = message.get("body", b"").decode("utf-8", errors="surrogateescape")
            chunk = self.paths.scrub(text).encode("utf-8", errors="surrogateescape")
            if not started:
                headers = MutableHeaders(scope=start)
                if message.get("more_body", False):
                    # Streamed (the CSV export): each chunk holds whole rows; the length is not known upfront.
                    if "content-length" in headers:
                        del headers["content-length"]
                else:
                    headers["content-length"] = str(len(chunk))
                await send(start)
                started = True
            await send({**message, "body": chunk})

        await self.app(scope, receive, filtered)
