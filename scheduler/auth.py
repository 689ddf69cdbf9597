"""API keys and who is asking: key creation (the token is shown once), verification, roles.

Tokens look like ``sch_<prefix>_<secret>``; only their SHA-256 hex digest is stored, plus the short
``prefix`` so an operator can tell keys apart. Key names are unique. Roles are ordered
``viewer < operator < admin``: viewers read, operators also create runs and act on them, admins
also create, pause, resume and archive jobs and manage keys.

Closed by default: every API request needs a key, from the very first start; there is no
anonymous mode. The first key comes from ``scheduler keys create`` (the database directly) or,
for the all-in-one ``scheduler up``, from its first start.

Credentials, in the order they are looked at:

1. ``Authorization: Bearer <token>`` or ``X-Api-Key: <token>`` — for services and scripts;
2. the ``scheduler_session`` cookie — for the page: a random server-side session id (see
   :mod:`scheduler.sessions`), never the key itself. A cookie-authenticated request with an unsafe
   method (anything but GET, HEAD, OPTIONS) must repeat the session's CSRF token (the readable
   ``scheduler_csrf`` cookie) in the ``X-CSRF-Token`` header or a ``csrf_token`` form field, or it is
   refused with 403 ``csrf_rejected``.

The actor recorded in audit trails and ``created_by`` is ``key:<name>``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.clock import utcnow
from scheduler.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from scheduler.models import ApiKey, ApiRole, ApiSession

log = logging.getLogger(__name__)

TOKEN_SCHEME = "sch"
PREFIX_LENGTH = 8
NAME_MAX = 100
SESSION_COOKIE = "scheduler_session"
CSRF_COOKIE = "scheduler_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_RANK = {ApiRole.VIEWER: 0, ApiRole.OPERATOR: 1, ApiRole.ADMIN: 2}

ROLE_ACTIONS: dict[str, ApiRole] = {
    "create_job": ApiRole.ADMIN,
    "change_job": ApiRole.ADMIN,
    "manage_keys": ApiRole.ADMIN,
    "create_run": ApiRole.OPERATOR,
    "act_on_run": ApiRole.OPERATOR,
    "backfill": ApiRole.OPERATOR,
}
"""What each role may do beyond reading, by the least role that may (the page hides the rest)."""


class MissingCredentials(Unauthorized):
    code = "missing_credentials"

    def __init__(self) -> None:
        super().__init__(
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-Api-Key: <key>', "
            "or log in on the page",
        )


class InvalidApiKey(Unauthorized):
    code = "invalid_api_key"

    def __init__(self) -> None:
        super().__init__("the API key is unknown or revoked")


class InsufficientRole(Forbidden):
    code = "insufficient_role"

    def __init__(self, required: ApiRole, principal: Principal) -> None:
        super().__init__(
            f"this needs the {required} role; {principal.actor} has {principal.role}",
            details={"required_role": str(required), "role": str(principal.role)},
        )


class CsrfRejected(Forbidden):
    code = "csrf_rejected"

    def __init__(self) -> None:
        super().__init__(
            f"a cookie-authenticated change (and the login form) must repeat the {CSRF_COOKIE} cookie's value "
            f"in the {CSRF_HEADER} header or the {CSRF_FIELD} form field",
        )


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"

    def __init__(self, key_id: int) -> None:
        super().__init__(f"API key {key_id} does not exist", details={"key_id": key_id})


class DuplicateKeyName(Conflict):
    code = "duplicate_key_name"

    def __init__(self, name: str) -> None:
        super().__init__(f"an API key named {name!r} already exists; key names are unique", details={"name": name})


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who a request acts as: a live key, presented directly or through a page session."""

    name: str
    role: ApiRole
    key_id: int
    via_session: bool = False

    @property
    def actor(self) -> str:
        """The name written to audit trails and ``created_by``."""
        return f"key:{self.name}"

    def has(self, role: ApiRole) -> bool:
        return _RANK[self.role] >= _RANK[role]

    def may(self) -> dict[str, bool]:
        """Each action of :data:`ROLE_ACTIONS`: whether this principal's role allows it."""
        return {action: self.has(least) for action, least in ROLE_ACTIONS.items()}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_role(role: str) -> ApiRole:
    try:
        return ApiRole(role.lower())
    except ValueError:
        raise InvalidInput(
            f"unknown role {role!r}; use one of: {', '.join(r.value for r in ApiRole)}",
            details={"role": role, "allowed": [r.value for r in ApiRole]},
        ) from None


def create_key(session: Session, name: str, role: str, *, actor: str) -> tuple[ApiKey, str]:
    """Store a new key and return it with its token, which is never shown again."""
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise InvalidInput(f"a key name must have 1 to {NAME_MAX} characters", details={"name": name})
    api_role = parse_role(role)
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    token = f"{TOKEN_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(name=name, prefix=prefix, token_hash=hash_token(token), role=api_role, created_at=utcnow(),
                 created_by=actor)
    session.add(key)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise DuplicateKeyName(name) from exc
    session.refresh(key)
    log.info("API key %s (id %s, %s) created by %s", key.name, key.id, key.role, actor,
             extra={"event": "key_created", "key_id": key.id, "actor": actor})
    return key, token


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(col(ApiKey.id))))


def revoke_key(session: Session, key_id: int, *, actor: str) -> tuple[ApiKey, int]:
    """Revoke a key and end its page sessions at once; returns the key and how many sessions ended.

    Revoking it again changes nothing.
    """
    key = session.get(ApiKey, key_id)
    if key is None:
        raise ApiKeyNotFound(key_id)
    ended = 0
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        key.revoked_by = actor
        result = session.execute(delete(ApiSession).where(col(ApiSession.key_id) == key_id))
        ended = int(result.rowcount or 0)  # type: ignore[attr-defined]
        session.commit()
        session.refresh(key)
        log.info("API key %s (id %s) revoked by %s; %d page sessions ended", key.name, key.id, actor, ended,
                 extra={"event": "key_revoked", "key_id": key.id, "actor": actor})
    return key, ended


def keys_exist(session: Session) -> bool:
    """Whether any key was ever created (revoked ones count)."""
    return bool(session.scalar(select(exists().select_from(ApiKey))))


def verify(session: Session, token: str) -> ApiKey:
    """The live key holding ``token``; :class:`InvalidApiKey` otherwise."""
    digest = hash_token(token.strip())
    key = session.scalar(select(ApiKey).where(col(ApiKey.token_hash) == digest))
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.token_hash, digest):
        raise InvalidApiKey()
    return key


def principal_of(key: ApiKey, *, via_session: bool = False) -> Principal:
    assert key.id is not None
    return Principal(name=key.name, role=ApiRole(key.role), key_id=key.id, via_session=via_session)


def new_secret() -> str:
    """A random URL-safe token (session ids, CSRF tokens)."""
    return secrets.token_urlsafe(32)


def same_secret(expected: str | None, presented: str | None) -> bool:
    """Constant-time comparison; an empty value never matches."""
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())
