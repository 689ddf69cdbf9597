"""``/me``: who the caller is and what their role allows, so the page offers only those actions."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from scheduler.api.deps import Viewer
from scheduler.api.errors import ERROR_RESPONSES

router = APIRouter(prefix="/me", tags=["keys"], responses=ERROR_RESPONSES)


class Me(BaseModel):
    name: str = Field(description="the key's name; audit trails record it as key:<name>")
    role: str = Field(description="viewer | operator | admin")
    key_id: int
    via_session: bool = Field(description="authenticated by a page session (else by the key itself)")
    may: dict[str, bool] = Field(description="each action beyond reading and whether this role allows it")


@router.get("", summary="Who the caller is: key name, role and the actions it allows")
def me(principal: Viewer) -> Me:
    return Me(name=principal.name, role=principal.role, key_id=principal.key_id, via_session=principal.via_session,
              may=principal.may())
