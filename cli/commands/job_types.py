"""``scheduler job-types [NAME]``: the installed job types, and a type's job and run property fields.

It reads no database: the fields come from each type's JSON schemas (the API's ``GET /job-types``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.commands.base import emit, registry, table
from scheduler.errors import UnknownJobType
from scheduler.settings import Settings


def add(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("job-types", help="list job types, or show a type's fields", parents=[common])
    p.set_defaults(handler=run)
    p.add_argument("name", nargs="?", help="a job type's name (e.g. dunning): show its fields")


def run(args: argparse.Namespace, settings: Settings) -> int:
    types = registry(settings)
    if args.name is None:
        templates = [t.template() for t in types.all()]
        emit(args, templates, lambda: table(["NAME", "LABEL", "QUEUE", "PREVIEW", "DESCRIPTION"], [
            [t["name"], t["label"], t["queue"], "yes" if t["supports_preview"] else "no",
             t["description"].splitlines()[0] if t["description"] else ""] for t in templates]))
        return 0
    name = args.name.strip().lower()
    if name not in types:
        raise UnknownJobType(args.name, types.names())
    template = types.get(name).template()
    emit(args, template, lambda: [f"{template['label']} ({template['name']}, queue {template['queue']})",
                                  *([template["description"]] if template["description"] else []),
                                  "", "Job properties (`properties` of `scheduler jobs create`):",
                                  *table(["FIELD", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION"],
                                         fields(template["job_properties"]), empty="(none)"),
                                  "", "Run properties (`--properties` of `scheduler runs create`):",
                                  *table(["FIELD", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION"],
                                         fields(template["run_properties"]), empty="(none)")])
    return 0


def fields(schema: dict[str, Any], root: dict[str, Any] | None = None, prefix: str = "") -> list[list[str]]:
    """One row per field, nested objects and lists of objects as ``tiers[].name``."""
    root = root or schema
    schema = _deref(schema, root)
    required = set(schema.get("required", []))
    rows: list[list[str]] = []
    for name, prop in (schema.get("properties") or {}).items():
        prop = _deref(prop, root)
        path = f"{prefix}{name}"
        default = json.dumps(prop["default"], default=str) if "default" in prop else "-"
        if len(default) > 30:
            default = default[:29] + "…"
        rows.append([path, _type(prop, root), "yes" if name in required else "no", default,
                     " ".join(str(prop.get("description", "")).replace("``", "").split())])
        items = _deref(prop.get("items") or {}, root)
        if items.get("properties"):
            rows.extend(fields(items, root, f"{path}[]."))
        elif prop.get("properties"):
            rows.extend(fields(prop, root, f"{path}."))
    return rows


def _deref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target = root.get("$defs", {}).get(schema["$ref"].split("/")[-1], {})
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    if len(schema.get("allOf", [])) == 1:
        schema = {**_deref(schema["allOf"][0], root), **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


def _type(schema: dict[str, Any], root: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return " or ".join(dict.fromkeys(_type(_deref(o, root), root) for o in options))
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(_deref(schema.get('items') or {}, root), root)}"
    if kind == "object":
        return str(schema.get("title") or "object")
    return f"{kind} ({schema['format']})" if "format" in schema else str(kind)
