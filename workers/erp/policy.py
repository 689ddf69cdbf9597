"""Where ERP HTTP targets may send, and which secrets they may name: the installation's allow-lists.

A target's ``token_env`` must start with ``SCHEDULER_ERP_SECRET_`` or be listed in
``SCHEDULER_ERP_SECRET_NAMES`` (never another ``SCHEDULER_*`` name, so no job can send the scheduler's
own settings, such as ``SCHEDULER_DATABASE_URL``, anywhere). Its host must match
``SCHEDULER_ERP_ALLOWED_HOSTS``: ``host`` (the scheme's default port), ``host:port``, ``host:*`` (any
port) or ``*.domain`` (any subdomain); IPv6 in brackets. Empty, the production default: no HTTP target
at all. Checked when a job is created (422 naming the field) and again before every send (the
batch's items error, nothing is sent), so narrowing a list takes effect at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from scheduler.settings import Settings

SECRET_PREFIX = "SCHEDULER_ERP_SECRET_"
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, kw_only=True)
class TargetPolicy:
    """The allow-lists of one installation."""

    allowed_hosts: tuple[str, ...]
    secret_names: frozenset[str]

    @classmethod
    def of(cls, settings: Settings) -> TargetPolicy:
        return cls(allowed_hosts=tuple(h.strip().lower() for h in settings.erp_allowed_hosts if h.strip()),
                   secret_names=frozenset(n.strip() for n in settings.erp_secret_names if n.strip()))

    def token_env_problem(self, name: str) -> str | None:
        """Why ``name`` may not be sent as a bearer token, or ``None``."""
        if name.startswith(SECRET_PREFIX) and len(name) > len(SECRET_PREFIX):
            return None
        if name.startswith("SCHEDULER_"):
            return (f"{name} is not an ERP secret: token_env must start with {SECRET_PREFIX} (the scheduler's "
                    "own settings are never sent)")
        if name in self.secret_names:
            return None
        return f"{name} is not an ERP secret: name one starting with {SECRET_PREFIX} or listed in " \
               "SCHEDULER_ERP_SECRET_NAMES"

    def url_problem(self, url: str) -> str | None:
        """Why ``url``'s host may not receive batches, or ``None``."""
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        try:
            port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return "the URL's port is not a number"
        if any(_matches(pattern, host, port, parts.scheme) for pattern in self.allowed_hosts):
            return None
        shown = f"{host}:{port}" if port != DEFAULT_PORTS.get(parts.scheme) else host
        if not self.allowed_hosts:
            return f"no ERP host is allowed (SCHEDULER_ERP_ALLOWED_HOSTS is empty); {shown} is refused"
        return f"host {shown} is not in SCHEDULER_ERP_ALLOWED_HOSTS"


def _matches(pattern: str, host: str, port: int | None, scheme: str) -> bool:
    if pattern.startswith("["):
        pattern_host, _, rest = pattern[1:].partition("]")
        pattern_port = rest.removeprefix(":")
    elif pattern.count(":") == 1:
        pattern_host, pattern_port = pattern.split(":")
    else:
        pattern_host, pattern_port = pattern, ""
    pattern_host = pattern_host.rstrip(".")
    if pattern_host.startswith("*."):
        host_ok = host.endswith(pattern_host[1:]) and len(host) > len(pattern_host) - 1
    else:
        host_ok = host == pattern_host
    if pattern_port == "*":
        return host_ok
    wanted = int(pattern_port) if pattern_port.isdigit() else DEFAULT_PORTS.get(scheme)
    return host_ok and port == wanted
