"""The one place that builds Redis clients: plain, over TLS (``rediss://``), or through Redis Sentinel.

Dramatiq's broker, beat's wake-up listener and broker watch, the API's readiness check and the
dispatcher all use the client built here, so a TLS or Sentinel setting applies to every connection.

- TLS: a ``rediss://`` URL; ``SCHEDULER_REDIS_SSL_CA_CERTS`` names the CA that signed the server's
  certificate (else the system's CAs), ``SCHEDULER_REDIS_SSL_CERTFILE`` / ``…_KEYFILE`` a client
  certificate when the server asks for one.
- Sentinel: ``SCHEDULER_REDIS_SENTINELS=host:port,host:port`` and ``SCHEDULER_REDIS_SENTINEL_SERVICE``
  (default ``mymaster``). The client asks the sentinels for the current primary on every new
  connection, so after a fail-over it reconnects to the new one. The URL's host is then ignored;
  its scheme (TLS), password and database number still apply.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from scheduler.errors import InvalidInput
from scheduler.settings import Settings

SOCKET_TIMEOUT = 10.0
"""Seconds a command may wait on the socket: beyond Dramatiq's 5 s blocking fetch, short of a hang."""


def tls_options(settings: Settings, url: str) -> dict[str, Any]:
    """The ``ssl_*`` connection options of a ``rediss://`` URL (none for any other scheme)."""
    if not url.startswith("rediss://"):
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required"}
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        value = getattr(settings, f"redis_{name}")
        if value is not None:
            options[name] = str(value)
    return options


def sentinel_addresses(text: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` as addresses; a malformed entry is refused naming the setting."""
    addresses = []
    for entry in (part.strip() for part in text.split(",")):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidInput(f"SCHEDULER_REDIS_SENTINELS: {entry!r} is not host:port",
                               details={"setting": "SCHEDULER_REDIS_SENTINELS"})
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def redis_client(settings: Settings, url: str, *, timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    """A client for ``url`` with the TLS and Sentinel settings applied; ``timeout`` bounds each socket wait."""
    common: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                              "health_check_interval": 30, **tls_options(settings, url)}
    if not settings.redis_sentinels:
        return redis.Redis.from_url(url, **common)
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinel_addresses(settings.redis_sentinels),
        sentinel_kwargs={"password": settings.redis_sentinel_password, "socket_timeout": SOCKET_TIMEOUT},
        **common,
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_service,
        db=int(path) if path.isdigit() else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
    return client
