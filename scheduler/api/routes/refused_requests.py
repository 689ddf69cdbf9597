"""``/refused-requests``: the ``request_run`` messages the scheduler refused, with why (for operators)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from scheduler.api.deps import Operator, SessionDep
from scheduler.api.errors import ERROR_RESPONSES
from scheduler.api.params import Cursor, PageSize, id_cursor
from scheduler.api.schemas import Page
from scheduler.limits import MAX_NAME_LENGTH, Text
from scheduler.models import RefusedRequest
from scheduler.refused_requests import list_refusals

router = APIRouter(prefix="/refused-requests", tags=["runs"], responses=ERROR_RESPONSES)


class RefusedRequestPublic(BaseModel):
    """A refused ``request_run`` message."""

    id: int
    received_at: datetime
    reason: str = Field(description="error code: job_not_found, invalid_properties, job_not_runnable, "
                                    "idempotency_conflict, invalid_message …")
    message: str = Field(description="why, for a person")
    job: str | None = Field(description="the job the message named (id or name), as sent")
    idempotency_key: str | None
    message_id: str | None = Field(description="the Dramatiq message id")
    body: dict[str, Any] = Field(description="the message's arguments, secret-looking values masked")

    @classmethod
    def of(cls, row: RefusedRequest) -> RefusedRequestPublic:
        return cls.model_validate(row.model_dump())


@router.get("", summary="List refused request_run messages, newest first")
def get_refused_requests(
    session: SessionDep,
    _principal: Operator,
    reason: Annotated[Text | None, Query(max_length=64, description="an error code, e.g. job_not_found")] = None,
    idempotency_key: Annotated[Text | None, Query(max_length=MAX_NAME_LENGTH)] = None,
    limit: PageSize = 50,
    cursor: Cursor = None,
) -> Page[RefusedRequestPublic]:
    """Kept for `SCHEDULER_REFUSED_REQUESTS_RETENTION_DAYS` (30 by default); each is also counted in
    `scheduler_refused_requests_total{reason}`."""
    rows, next_cursor = list_refusals(session, reason=reason, idempotency_key=idempotency_key, limit=limit,
                                      before_id=id_cursor(cursor))
    return Page[RefusedRequestPublic](items=[RefusedRequestPublic.of(r) for r in rows], next_cursor=next_cursor)
