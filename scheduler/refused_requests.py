"""Refused ``request_run`` messages: kept with their reason where an operator can see them, for a while.

Another service sends ``request_run`` to the ``scheduler`` queue and gets no answer; when the scheduler
refuses the request (no such job, invalid run properties, a malformed message), the refusal is counted in
``scheduler_refused_requests_total{reason}`` and recorded here, listed by ``GET /api/v1/refused-requests``.
What the message asked for is kept with secret-looking values masked and its size bounded; rows older
than ``SCHEDULER_REFUSED_REQUESTS_RETENTION_DAYS`` (and beyond the newest :data:`MAX_KEPT`) are removed
whenever a new refusal is recorded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.metrics import REFUSED_REQUESTS
from scheduler.models import RefusedRequest
from scheduler.redact import MASK, redact

MAX_KEPT = 100_000
"""Most refusals kept, whatever their age: a sender stuck in a loop cannot fill the database."""
MAX_BODY_CHARS = 4_000
"""A refused message's arguments are kept up to this size (as JSON); a larger one is cut, and says so."""
ENVELOPE = frozenset({"job", "run_properties", "idempotency_key", "preview"})
"""``request_run``'s own argument names: never masked, whatever they contain."""
_SECRET_NAME = re.compile(r"password|passwd|pwd|token|secret|key|auth|credential|cookie", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """A refused request: its reason (an error code), the message for a person, and what was asked."""

    reason: str
    message: str
    job: str | None = None
    idempotency_key: str | None = None
    message_id: str | None = None
    body: Mapping[str, Any] | None = None


def masked(value: Any, *, depth: int = 0) -> Any:
    """``value`` with the values of secret-looking keys replaced by ``***`` and URLs' passwords redacted."""
    if depth > 20:
        return "…"
    if isinstance(value, Mapping):
        return {
            str(k): MASK if (depth > 0 or str(k) not in ENVELOPE) and _SECRET_NAME.search(str(k))
            else masked(v, depth=depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [masked(v, depth=depth + 1) for v in value]
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(repr(value))


def bounded_body(body: Mapping[str, Any] | None) -> dict[str, Any]:
    """The masked body, or a note with its start when its JSON is larger than :data:`MAX_BODY_CHARS`."""
    if not body:
        return {}
    clean = masked(body)
    text = json.dumps(clean, default=str)
    if len(text) <= MAX_BODY_CHARS:
        return dict(clean)
    return {"truncated": True, "start": text[:MAX_BODY_CHARS]}


def record_refusal(session: Session, refusal: Refusal, *, at: datetime, retention: timedelta) -> int:
    """Count and keep ``refusal`` (received ``at``); drop refusals past ``retention``. Commits; returns its id."""
    REFUSED_REQUESTS.labels(reason=refusal.reason).inc()
    row = RefusedRequest(
        received_at=at, reason=refusal.reason[:64], message=refusal.message[:1000],
        job=None if refusal.job is None else redact(refusal.job)[:200],
        idempotency_key=None if refusal.idempotency_key is None else refusal.idempotency_key[:200],
        message_id=None if refusal.message_id is None else refusal.message_id[:64],
        body=bounded_body(refusal.body),
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    floor = row.id - MAX_KEPT
    session.execute(
        delete(RefusedRequest)
        .where((col(RefusedRequest.received_at) < at - retention) | (col(RefusedRequest.id) <= floor))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return row.id


def list_refusals(
    session: Session, *, reason: str | None = None, idempotency_key: str | None = None, limit: int = 50,
    before_id: int | None = None,
) -> tuple[list[RefusedRequest], str | None]:
    """Refusals newest first, filtered by reason and idempotency key; keyset-paginated on the id."""
    stmt = select(RefusedRequest)
    if reason:
        stmt = stmt.where(col(RefusedRequest.reason) == reason)
    if idempotency_key:
        stmt = stmt.where(col(RefusedRequest.idempotency_key) == idempotency_key)
    if before_id is not None:
        stmt = stmt.where(col(RefusedRequest.id) < before_id)
    rows = list(session.scalars(stmt.order_by(col(RefusedRequest.id).desc()).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = str(rows[-1].id)
    return rows, next_cursor

