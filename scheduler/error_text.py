"""What went wrong, in words a user can act on: never a Python exception name, a traceback or a secret.

Everything that reaches a run's ``error``, an item's ``error`` or an audit note from an exception goes
through :func:`explain`; the exception itself (with its class and traceback) goes to the log only.
"""

from __future__ import annotations

import errno
import socket
import ssl
import urllib.error

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from scheduler.errors import SchedulerError, first_line
from scheduler.redact import redact

MAX_LENGTH = 300

_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by the other side",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ENOENT: "no such file or directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the file system is read-only",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "not a directory",
}


def explain(exc: BaseException) -> str:
    """One line saying what failed, e.g. ``connection refused`` or ``permission denied: usage/in/a.csv``."""
    return _clip(redact(_words(exc)))


def _words(exc: BaseException) -> str:
    if isinstance(exc, SchedulerError):
        return exc.message
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return _words(exc.reason)
    if isinstance(exc, OSError):
        return _os_words(exc)
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return "lost the connection to the database"
        return f"the database refused the statement: {first_line(exc)}"
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {first_line(exc)}"
    return first_line(exc) if str(exc).strip() else "an unexpected error (details are in the worker's log)"


def _os_words(exc: OSError) -> str:
    """A network or file problem: what happened, and the file it happened to."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message or 'verification failed'}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or 'handshake error'}"
    words = _ERRNO_WORDS.get(exc.errno or -1) or (exc.strerror or "").lower() or first_line(exc)
    return f"{words}: {exc.filename}" if isinstance(exc.filename, str) else words


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 1] + "…"
