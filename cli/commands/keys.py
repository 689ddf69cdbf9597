"""``scheduler keys``: create, list and revoke API keys on the database directly.

The bootstrap path before any key exists (``scheduler api`` mints none).
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.commands.base import Db, emit, enum_values, positive_int, table
from scheduler.models import ApiRole
from scheduler.settings import Settings


def add(sub: Any, common: argparse.ArgumentParser) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys", parents=[common])
    keys.set_defaults(handler=run)
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common], help="a key; its token is shown once")
    create.add_argument("--name", required=True)
    create.add_argument("--role", type=enum_values(ApiRole), default=ApiRole.VIEWER.value,
                        help="viewer (default), operator or admin")
    actions.add_parser("list", parents=[common], help="every key, revoked ones included")
    actions.add_parser("revoke", parents=[common], help="revoke a key and end its page sessions").add_argument(
        "id", type=positive_int)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler import auth

    with Db(settings).session() as session:
        if args.action == "create":
            key, token = auth.create_key(session, args.name, args.role, actor="cli")
            emit(args, {"id": key.id, "name": key.name, "role": key.role, "token": token},
                 lambda: [f"created {key.role} key {key.name!r} (id {key.id}); it is shown once:", token])
        elif args.action == "list":
            keys = auth.list_keys(session)
            emit(args, [k.model_dump(exclude={"token_hash"}) for k in keys], lambda: table(
                ["ID", "ROLE", "STATE", "CREATED (UTC)", "CREATED BY", "NAME"],
                [[k.id, k.role, "revoked" if k.revoked_at else "active", k.created_at, k.created_by, k.name]
                 for k in keys], empty="no keys yet: create one with `scheduler keys create --name NAME --role admin`"))
        elif args.action == "revoke":
            key, ended = auth.revoke_key(session, args.id, actor="cli")
            emit(args, {"id": key.id, "revoked_at": key.revoked_at, "sessions_ended": ended},
                 lambda: [f"key {key.id} ({key.name}) revoked; {ended} page session(s) ended"])
    return 0
