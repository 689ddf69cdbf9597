"""Redaction: the one function that takes passwords and tokens out of anything printed or logged.

Every place that prints a URL or a settings value (an error naming the setting, a log line, a health
answer) passes it through :func:`redact`: the password of every ``scheme://user:password@host`` URL
and the value of secret-looking query parameters (``?password=…``, ``token``, ``secret``, ``key`` …)
become ``***``. :class:`Redactor` also removes given secret strings wherever they appear (an error a
driver raised may quote a password without its URL); the log formatter of every process uses one built
from the settings' URLs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"

_URL_CREDENTIALS = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://(?P<user>[^\s:/?#@]*):)(?P<password>[^\s/?#]*)@"
)
"""``scheme://user:password@``; the password runs to the last ``@`` before the host (unencoded ``@`` included)."""
_SECRET_PARAMETER = re.compile(
    r"(?P<head>[?&;](?:[a-zA-Z0-9_\-]*(?:password|passwd|pwd|token|secret|key|auth|credential)[a-zA-Z0-9_\-]*)=)"
    r"(?P<value>[^&;#\s\"']*)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it and every secret query parameter's value masked."""
    text = _URL_CREDENTIALS.sub(lambda m: m["head"] + (MASK if m["password"] else "") + "@", text)
    return _SECRET_PARAMETER.sub(lambda m: m["head"] + (MASK if m["value"] else ""), text)


def url_secrets(url: str | None) -> set[str]:
    """The password of ``url`` and its secret query parameters' values (raw and URL-decoded)."""
    if not url:
        return set()
    found: set[str] = set()
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        password = None
    if password:
        found.add(password)
    for match in _SECRET_PARAMETER.finditer(url):
        if match["value"]:
            found.add(match["value"])
    return found | {unquote(s) for s in found}


class Redactor:
    """:func:`redact`, plus every one of ``secrets`` replaced wherever it appears."""

    MIN_SECRET = 4
    """Shorter "secrets" (``pw``) would mask ordinary words; their URLs are still redacted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= self.MIN_SECRET}, key=len, reverse=True)

    @classmethod
    def of_urls(cls, *urls: str | None) -> Redactor:
        """A redactor for the secrets of these URLs (database, Redis, SMTP …)."""
        return cls(s for url in urls for s in url_secrets(url))

    def __call__(self, text: str) -> str:
        text = redact(text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
