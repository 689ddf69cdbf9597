"""Path and query parameters shared by the routes, bounded to what the database holds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BeforeValidator

from scheduler.errors import InvalidCursor
from scheduler.limits import MAX_CURSOR_LENGTH, MAX_DB_INT, MAX_PAGE_SIZE, Text
from scheduler.models import ItemOutcome, JobStatus, RunStatus, RunTrigger

JobId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="the job's id")]
RunId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="the run's id")]
KeyId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="the API key's id")]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"items per page, 1 to {MAX_PAGE_SIZE}")]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH, description="next_cursor of the previous page")]
JobTypeName = Annotated[Text | None, Query(max_length=64, description="only this job type")]



def _upper(value: Any) -> Any:
    """Query filters match enum members in any case (``failed`` is ``FAILED``)."""
    return value.strip().upper() if isinstance(value, str) else value


def _upper_list(value: Any) -> Any:
    """Repeated and comma-separated values: ``status=FAILED,INCOMPLETE`` (the page sends this form)."""
    if isinstance(value, list):
        return [part.strip().upper() for item in value for part in str(item).split(",") if part.strip()]
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


RunStatusFilter = Annotated[list[RunStatus] | None, BeforeValidator(_upper_list),
                            Query(description="only runs in these statuses; repeat or comma-separate, any case")]
TriggerFilter = Annotated[RunTrigger | None, BeforeValidator(_upper),
                          Query(description="only runs of this trigger, any case")]
JobStatusFilter = Annotated[JobStatus | None, BeforeValidator(_upper),
                            Query(description="only jobs in this status, any case")]
OutcomeFilter = Annotated[ItemOutcome | None, BeforeValidator(_lower),
                          Query(description="only items with this outcome, any case")]

_DIGITS = re.compile(r"[0-9]{1,10}")


def id_cursor(cursor: str | None) -> int | None:
    """The id after which a page of an id-ordered list starts (ASCII digits the API issued)."""
    if not cursor:
        return None
    if not _DIGITS.fullmatch(cursor) or not 1 <= int(cursor) <= MAX_DB_INT:
        raise InvalidCursor(cursor)
    return int(cursor)
