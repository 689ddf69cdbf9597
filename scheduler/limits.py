"""What the scheduler accepts: id and integer ranges, the supported time range, text and size bounds.

Every value that reaches the database is checked against these first, so bad input is a 4xx that
names the field, never a driver error. The published OpenAPI document carries the same bounds.
Job types use the annotated types (``SupportedDate``, ``SupportedDatetime``, ``Text``) in their
property models.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field

from scheduler.cron import FIRST_YEAR, LAST_YEAR
from scheduler.settings import Settings

MAX_DB_INT = 2**31 - 1
"""The largest value of an INTEGER column on PostgreSQL (ids, counters, seconds)."""

SUPPORTED_YEARS = (FIRST_YEAR, LAST_YEAR)
"""The years the scheduler works in, those the cron engine computes fires in: date inputs, backfill
ranges, list filters and cursors outside them are refused."""
SUPPORTED_FROM = datetime(SUPPORTED_YEARS[0], 1, 1, tzinfo=UTC)
SUPPORTED_UNTIL = datetime(SUPPORTED_YEARS[1], 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

MAX_NAME_LENGTH = 200
"""Job names, idempotency keys."""
MAX_DESCRIPTION_LENGTH = 2000
MAX_NOTE_LENGTH = 1000
"""Audit notes of job and run actions."""
MAX_NOTIFY_EMAILS = 50
MAX_PAGE_SIZE = 1000
"""The largest ``limit`` of a list request."""
MAX_CURSOR_LENGTH = 200
MAX_WINDOW_SECONDS = 366 * 24 * 3600
"""The longest ``catchup_window`` and ``max_runtime``: a year and a day."""

DEFAULT_MAX_PROPERTIES_BYTES: int = Settings.model_fields["max_properties_bytes"].default
"""``SCHEDULER_MAX_PROPERTIES_BYTES`` (job ``properties``, ``run_properties`` serialized) when none is passed."""

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
"""Visible ASCII, no spaces: UUIDs, ``invoice-batch-42``, ``erp:2026-05:7``."""


def refuse_nul(value: str) -> str:
    """Text never holds NUL: PostgreSQL cannot store it and no user means it."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


def single_line(value: str) -> str:
    """Names and keys hold no control characters (NUL, newlines, tabs, escapes)."""
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise ValueError("must not contain control characters (newlines, tabs, NUL)")
    return value


def within_supported_range(value: datetime) -> datetime:
    """An aware instant inside the supported years, as UTC; a naive one is taken as UTC."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not SUPPORTED_FROM <= aware <= SUPPORTED_UNTIL:
        raise ValueError(f"must be between {SUPPORTED_YEARS[0]}-01-01 and {SUPPORTED_YEARS[1]}-12-31 (UTC)")
    return aware.astimezone(UTC)


def date_within_supported_range(value: date) -> date:
    if not SUPPORTED_YEARS[0] <= value.year <= SUPPORTED_YEARS[1]:
        raise ValueError(f"must be between {SUPPORTED_YEARS[0]}-01-01 and {SUPPORTED_YEARS[1]}-12-31")
    return value


Text = Annotated[str, AfterValidator(refuse_nul)]
"""A string without NUL; give it a ``max_length`` with ``Field``."""
DbId = Annotated[int, Field(ge=1, le=MAX_DB_INT)]
"""A row id as the database holds it."""
SupportedDatetime = Annotated[AwareDatetime, AfterValidator(within_supported_range)]
"""An aware instant inside the supported years, normalised to UTC."""
QueryDatetime = Annotated[datetime, AfterValidator(within_supported_range)]
"""A query-string instant: taken as UTC when it has no offset, inside the supported years."""
SupportedDate = Annotated[date, AfterValidator(date_within_supported_range)]


def json_problem(value: Any, *, max_bytes: int) -> tuple[str, str] | None:
    """Why a JSON value cannot be stored, as ``(where, reason)``, or ``None`` when it can."""
    try:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    except (ValueError, RecursionError):  # nested too deeply to serialize
        return "", "is nested too deeply"
    if size > max_bytes:
        return "", f"is {size} bytes serialized; the limit is {max_bytes}"
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return where, "has a key containing a NUL (\\u0000) character"
                stack.append((f"{where}.{key}" if where else str(key), child))
        elif isinstance(item, list):
            stack.extend((f"{where}.{n}" if where else str(n), child) for n, child in enumerate(item))
        elif isinstance(item, str) and "\x00" in item:
            return where, "must not contain NUL (\\u0000) characters"
        elif isinstance(item, float) and not math.isfinite(item):
            return where, "must be a finite number"
    return None
