"""``/keys``: API keys, managed by admins. A key's token is shown once, in the create answer."""

from __future__ import annotations

from fastapi import APIRouter

from scheduler import auth
from scheduler.api.deps import Admin, ServicesDep, SessionDep
from scheduler.api.errors import ERROR_RESPONSES, ErrorBody
from scheduler.api.openapi import links
from scheduler.api.params import KeyId
from scheduler.api.schemas import KeyCreate, KeyCreated, KeyPublic, Page

router = APIRouter(prefix="/keys", tags=["keys"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, summary="Create an API key (the token is shown only here)",
             responses={409: {"model": ErrorBody, "description": "A key with this name exists"},
                        201: {"description": "The key with its token",
                              "links": links("key_id", RevokeKey=("revoke_key", "revoke the key just created"))}})
def create_key(key_in: KeyCreate, session: SessionDep, principal: Admin) -> KeyCreated:
    """Key names are unique; the audit records which key created it."""
    key, token = auth.create_key(session, key_in.name, key_in.role, actor=principal.actor)
    return KeyCreated(**KeyPublic.of(key).model_dump(), token=token)


@router.get("", summary="List API keys (never their tokens)")
def list_keys(session: SessionDep, _principal: Admin) -> Page[KeyPublic]:
    return Page[KeyPublic](items=[KeyPublic.of(k) for k in auth.list_keys(session)])


@router.post("/{key_id}/revoke",
             summary="Revoke an API key; it and its page sessions stop working at once in this API process, "
                     "within SCHEDULER_API_KEY_CACHE_SECONDS (1 s) in other API processes",
             responses={404: {"model": ErrorBody, "description": "No such key"}})
def revoke_key(key_id: KeyId, session: SessionDep, services: ServicesDep, principal: Admin) -> KeyPublic:
    key, _ended = auth.revoke_key(session, key_id, actor=principal.actor)
    services.key_cache.forget()
    return KeyPublic.of(key)
