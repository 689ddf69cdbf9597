"""Logging set-up: readable text on a terminal, one JSON object per line in containers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from scheduler.redact import Redactor
from scheduler.settings import Settings

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_RUN_FIELDS: ContextVar[dict[str, int] | None] = ContextVar("scheduler_run_fields", default=None)


@contextmanager
def run_fields(**ids: int) -> Iterator[None]:
    """Records logged inside the block (by this thread) carry ``ids``, e.g. ``run_id``; see :class:`RunFields`."""
    token = _RUN_FIELDS.set({**(_RUN_FIELDS.get() or {}), **ids})
    try:
        yield
    finally:
        _RUN_FIELDS.reset(token)


def add_run_fields(**ids: int) -> None:
    """Add ``ids`` (e.g. the ``job_id`` once the run is loaded) to the enclosing :func:`run_fields` block, if any."""
    fields = _RUN_FIELDS.get()
    if fields is not None:
        fields.update(ids)  # this block's own dict: gone with the block


class RunFields(logging.Filter):
    """Puts the ids of the run being worked on (:func:`run_fields`) on every record, as ``extra`` would."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_RUN_FIELDS.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with any ``extra`` fields such as ``run_id`` and ``job_id``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then masks passwords and tokens (tracebacks included): no log line carries one."""

    def __init__(self, inner: logging.Formatter, redactor: Redactor) -> None:
        super().__init__()
        self.inner = inner
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(self.inner.format(record))


def configure_logging(settings: Settings, *, process: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RunFields())
    if settings.log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s")
    handler.setFormatter(RedactingFormatter(formatter, settings.redactor()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Alembic announces each of its plugins at INFO; the migrations it runs are worth reading, those are not.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
