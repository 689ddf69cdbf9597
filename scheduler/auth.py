"""API keys and who is asking: key creation (the token is shown once), verification, roles.

Tokens look like ``sch_<prefix>_<secret>``; only their SHA-256 hex digest is stored, plus the short
``prefix`` so an operator can tell keys apart. Roles are ordered ``viewer < operator < admin``:
viewers read, operators also create runs and act on them, admins also create, pause, resume and
archive jobs and manage keys.

Bootstrap: while no key exists at all (revoked ones count), the API is open and every request acts
as the anonymous admin, so a first run on a laptop needs no set-up; once a key exists (``scheduler
keys create --role admin`` or ``POST /api/v1/keys``), every API request needs one.

Credentials, in the order they are looked at:

1. ``Authorization: Bearer <token>`` or ``X-Api-Key: <token>`` — for services and scripts;
2. the ``scheduler_session`` cookie — for the page. ``POST /login`` with the form field ``api_key``
   sets it (HTTP-only, ``SameSite=Lax``) together with a readable ``scheduler_csrf`` cookie, and
   ``POST /logout`` clears both. A cookie-authenticated request with an unsafe method (anything
   but GET, HEAD, OPTIONS) must repeat the ``scheduler_csrf`` cookie's value in the
   ``X-CSRF-Token`` header or in a ``csrf_token`` form field (double-submit), or it is refused
   with 403 ``csrf_rejected``.

The actor recorded in audit trails and ``created_by`` is ``key:<name>`` or ``anonymous``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.clock import utcnow
from scheduler.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from scheduler.models import ApiKey, ApiRole

TOKEN_SCHEME = "sch"
PREFIX_LENGTH = 8
SESSION_COOKIE = "scheduler_session"
CSRF_COOKIE = "scheduler_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_RANK = {ApiRole.VIEWER: 0, ApiRole.OPERATOR: 1, ApiRole.ADMIN: 2}


class MissingCredentials(Unauthorized):
    code = "missing_credentials"

    def __init__(self) -> None:
        super().__init__(
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'",
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
            f"a cookie-authenticated change must repeat the {CSRF_COOKIE} cookie's value in the "
            f"{CSRF_HEADER} header or the {CSRF_FIELD} form field",
        )


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"

    def __init__(self, key_id: int) -> None:
        super().__init__(f"API key {key_id} does not exist", details={"key_id": key_id})


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who a request acts as."""

    name: str
    role: ApiRole
    key_id: int | None = None

    @property
    def actor(self) -> str:
        """The name written to audit trails and ``created_by``."""
        return "anonymous" if self.key_id is None else f"key:{self.name}"

    def has(self, role: ApiRole) -> bool:
        return _RANK[self.role] >= _RANK[role]


ANONYMOUS_ADMIN = Principal(name="anonymous", role=ApiRole.ADMIN)


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


def create_key(session: Session, name: str, role: str) -> tuple[ApiKey, str]:
    """Store a new key and return it with its token, which is never shown again."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("a key name must have 1 to 100 characters", details={"name": name})
    api_role = parse_role(role)
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    token = f"{TOKEN_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(name=name, prefix=prefix, token_hash=hash_token(token), role=api_role, created_at=utcnow())
    session.add(key)
    session.commit()
    session.refresh(key)
    return key, token


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(col(ApiKey.id))))


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revoke a key; revoking it again changes nothing."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise ApiKeyNotFound(key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()
        session.refresh(key)
    return key


def keys_exist(session: Session) -> bool:
    """Whether any key was ever created; while none was, the API is open."""
    return bool(session.scalar(select(exists().select_from(ApiKey))))


def verify(session: Session, token: str) -> ApiKey:
    """The live key holding ``token``; :class:`InvalidApiKey` otherwise."""
    digest = hash_token(token.strip())
    key = session.scalar(select(ApiKey).where(col(ApiKey.token_hash) == digest))
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.token_hash, digest):
        raise InvalidApiKey()
    return key


def principal_of(key: ApiKey) -> Principal:
    return Principal(name=key.name, role=ApiRole(key.role), key_id=key.id)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(cookie: str | None, presented: str | None) -> bool:
    if not cookie or not presented:
        return False
    return hmac.compare_digest(cookie.encode(), presented.encode())
