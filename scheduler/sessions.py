"""Page sessions: a random id in an HTTP-only cookie, the session itself in the ``api_session`` table.

The cookie never holds the API key. Only SHA-256 hashes of the session id and of its CSRF token are
stored, so a copy of the table opens no session. A session ends at logout, when its key is
revoked, after ``session_idle_seconds`` without a request, and ``session_max_seconds`` after login,
whichever comes first. ``last_seen_at`` is written at most once a minute, so reading pages does
not turn every request into a write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.auth import Principal, hash_token, new_secret, principal_of, same_secret
from scheduler.errors import Unauthorized
from scheduler.models import ApiKey, ApiSession
from scheduler.settings import Settings

log = logging.getLogger(__name__)

TOUCH_EVERY = timedelta(seconds=60)


class SessionEnded(Unauthorized):
    code = "session_ended"

    def __init__(self) -> None:
        super().__init__("the page session has ended (logged out, expired, or its key was revoked): log in again")


@dataclass(frozen=True, kw_only=True)
class StartedSession:
    """What the login answer hands to the browser: the session id (cookie) and its CSRF token."""

    session_id: str
    csrf_token: str
    expires_at: datetime
    principal: Principal


@dataclass(frozen=True, kw_only=True)
class PageSession:
    """A live session found from its cookie."""

    principal: Principal
    csrf_hash: str

    def csrf_matches(self, presented: str | None) -> bool:
        return bool(presented) and same_secret(self.csrf_hash, hash_token(presented or ""))


def start(session: Session, key: ApiKey, *, now: datetime, settings: Settings) -> StartedSession:
    """Open a session for ``key`` (already verified); expired sessions are swept on the way."""
    assert key.id is not None
    sweep(session, now=now, settings=settings)
    session_id, csrf = new_secret(), new_secret()
    expires_at = now + timedelta(seconds=settings.session_max_seconds)
    session.add(ApiSession(id_hash=hash_token(session_id), key_id=key.id, csrf_hash=hash_token(csrf),
                           created_at=now, last_seen_at=now, expires_at=expires_at))
    session.commit()
    log.info("login: key %s (id %s) opened a page session", key.name, key.id,
             extra={"event": "login", "key_id": key.id})
    return StartedSession(session_id=session_id, csrf_token=csrf, expires_at=expires_at,
                          principal=principal_of(key, via_session=True))


def resume(session: Session, session_id: str, *, now: datetime, settings: Settings) -> PageSession:
    """The live session of this cookie value; :class:`SessionEnded` when there is none."""
    row = session.execute(
        select(ApiSession, ApiKey).join(ApiKey, col(ApiKey.id) == col(ApiSession.key_id))
        .where(col(ApiSession.id_hash) == hash_token(session_id))
    ).first()
    if row is None:
        raise SessionEnded()
    page, key = row[0], row[1]
    idle = timedelta(seconds=settings.session_idle_seconds)
    if key.revoked_at is not None or now >= page.expires_at or now >= page.last_seen_at + idle:
        session.delete(page)
        session.commit()
        raise SessionEnded()
    if now - page.last_seen_at >= TOUCH_EVERY:
        page.last_seen_at = now
        session.commit()
    return PageSession(principal=principal_of(key, via_session=True), csrf_hash=page.csrf_hash)


def end(session: Session, session_id: str) -> bool:
    """Log out: delete the session; ``False`` if there was none."""
    page = session.get(ApiSession, hash_token(session_id))
    if page is None:
        return False
    key_id = page.key_id
    session.delete(page)
    session.commit()
    log.info("logout: a page session of key id %s ended", key_id, extra={"event": "logout", "key_id": key_id})
    return True


def sweep(session: Session, *, now: datetime, settings: Settings) -> int:
    """Delete sessions past their absolute or idle timeout; returns how many."""
    idle_since = now - timedelta(seconds=settings.session_idle_seconds)
    result = session.execute(delete(ApiSession).where(
        or_(col(ApiSession.expires_at) <= now, col(ApiSession.last_seen_at) <= idle_since)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
