"""Logging set-up, one for every process: readable lines on a terminal, one JSON object per line in containers.

Every record carries the process's ``service`` (``api``, ``beat``, ``worker:<queues>``), ``pid``, ``host``
and ``version``, and the ids of the work in hand wherever they are known: ``run_id``, ``job_id``,
``job_type`` and ``request_id`` (see :func:`run_fields`). uvicorn's and Dramatiq's loggers go through the
same handler, so the API's access log is JSON too.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonLinesFormatter

from scheduler.redact import Redactor
from scheduler.settings import Settings

FieldValue = int | str
CONTEXT_FIELDS = ("run_id", "job_id", "job_type", "request_id")
"""The ids of the work in hand, shown on text lines too when known."""

_FIELDS: ContextVar[dict[str, FieldValue] | None] = ContextVar("scheduler_log_fields", default=None)

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


@cache
def package_version() -> str:
    """The installed version of the scheduler (``unknown`` when run from a bare source tree)."""
    try:
        return version("billing-scheduler")
    except PackageNotFoundError:
        return "unknown"


@contextmanager
def run_fields(**ids: FieldValue) -> Iterator[None]:
    """Records logged inside the block (by this thread or task) carry ``ids``, e.g. ``run_id`` or ``request_id``."""
    token = _FIELDS.set({**(_FIELDS.get() or {}), **ids})
    try:
        yield
    finally:
        _FIELDS.reset(token)


def add_run_fields(**ids: FieldValue | None) -> None:
    """Add ``ids`` (e.g. the ``job_id`` once the run is loaded) to the enclosing :func:`run_fields` block, if any;
    ``None`` values are left out."""
    fields = _FIELDS.get()
    if fields is not None:
        fields.update({k: v for k, v in ids.items() if v is not None})  # this block's own dict: gone with the block


def current_field(name: str) -> FieldValue | None:
    """A field of the enclosing :func:`run_fields` block (e.g. the ``request_id`` of the request in hand)."""
    return (_FIELDS.get() or {}).get(name)


class RunFields(logging.Filter):
    """Puts the ids of the work in hand (:func:`run_fields`) on every record, as ``extra`` would."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_FIELDS.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class ProcessFields(logging.Filter):
    """Puts the process's ``service``, ``host`` and ``version`` on every record (``pid`` is the record's own)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self.host = socket.gethostname()
        self.version = package_version()

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.host = self.host
        record.version = self.version
        return True


class AccessFields(logging.Filter):
    """Splits uvicorn's access line into fields: ``method``, ``path``, ``status`` and ``client``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            record.client, record.method, record.path, _, record.status = args
        return True


class JsonFormatter(_JsonLinesFormatter):
    """One JSON object per record: ``timestamp`` (ISO, UTC), ``level``, ``logger``, ``message``, ``pid``, the
    process's fields and any ``extra`` (run and request ids, the access log's fields)."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s %(process)d",
            rename_fields={"levelname": "level", "name": "logger", "process": "pid", "exc_info": "exc"},
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
            timestamp=True,
        )



class TextFormatter(logging.Formatter):
    """A readable line for a terminal, ending with the ids of the work in hand when there are any."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if hasattr(record, name))
        if not ids:
            return line
        head, newline, rest = line.partition("\n")  # after the message, before any traceback
        return f"{head} [{ids}]{newline}{rest}"


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes: Dramatiq points a forked worker process's
    stderr at its pool's pipe after logging was set up, and a stream replaced since is not written to closed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass  # always the current sys.stderr


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then masks passwords and tokens (tracebacks included): no log line carries one."""

    def __init__(self, inner: logging.Formatter, redactor: Redactor) -> None:
        super().__init__()
        self.inner = inner
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(self.inner.format(record))


def configure_logging(settings: Settings, *, service: str) -> None:
    """Send every record of this process (ours, uvicorn's, Dramatiq's) to one handler on stderr.

    ``service`` names the process on every line unless ``SCHEDULER_LOG_SERVICE`` does. Calling it again
    replaces the handler, so the last call of a process wins.
    """
    service = settings.log_service or service
    handler = StderrHandler()
    handler.addFilter(RunFields())
    handler.addFilter(ProcessFields(service))
    handler.addFilter(AccessFields())
    inner = JsonFormatter() if settings.log_format == "json" else TextFormatter(service)
    handler.setFormatter(RedactingFormatter(inner, settings.redactor()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in (*UVICORN_LOGGERS, "dramatiq"):
        # uvicorn (with log_config=None) and Dramatiq's CLI may have set up handlers of their own: ours only.
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Alembic announces each of its plugins at INFO; the migrations it runs are worth reading, those are not.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

