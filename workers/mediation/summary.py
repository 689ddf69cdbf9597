"""The usage mediation run summary: files, records read, mediated, filtered, failed, rated amount.

Counted from the file items, so a preview shows the staged figures and a finished run the applied ones.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from scheduler.jobkit import ItemOutcome
from scheduler.jobtypes import RunContext
from workers.mediation.items import FILE_PREFIX

Out = ItemOutcome
COUNTS = ("records", "mediated", "filtered", "failed")


def summarize(ctx: RunContext) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT outcome, detail FROM run_item WHERE run_id = :run_id AND item_key LIKE :prefix "
                 "ORDER BY item_key"),
            {"run_id": ctx.run_id, "prefix": f"{FILE_PREFIX}%"},
        ).all()
    totals = dict.fromkeys(COUNTS, 0)
    amount = Decimal("0.000000")
    by_file: dict[str, dict[str, Any]] = {}
    by_meter: dict[str, dict[str, Any]] = {}
    files = skipped = errored = 0
    for row in rows:
        detail = json.loads(row.detail) if isinstance(row.detail, str) else dict(row.detail or {})
        if detail.get("item") != "file":
            continue
        name = str(detail.get("file"))
        if row.outcome in (Out.PLANNED, Out.OK):
            files += 1
            for key in COUNTS:
                totals[key] += int(detail.get(key) or 0)
            amount += Decimal(str(detail.get("amount") or 0))
            _add_meters(by_meter, detail.get("by_meter") or {})
            by_file[name] = {key: detail.get(key, 0) for key in COUNTS} | {"amount": detail.get("amount", "0")}
        elif row.outcome == Out.SKIPPED:
            skipped += 1
            by_file[name] = {"skipped": detail.get("reason", "")}
        else:
            errored += 1
            by_file[name] = {"error": detail.get("error", "")}
    summary: dict[str, Any] = {
        "files": files,
        "files_skipped": skipped,
        "files_failed": errored,
        "records_read": totals["records"],
        "mediated": totals["mediated"],
        "filtered": totals["filtered"],
        "failed": totals["failed"],
        "rated_amount": str(amount.quantize(Decimal("0.000001"))),
        "by_meter": by_meter,
        "by_file": by_file,
    }
    if errored:
        summary["notify_events"] = ["source_error"]
    return summary


def _add_meters(into: dict[str, dict[str, Any]], meters: dict[str, Any]) -> None:
    for meter, figures in meters.items():
        mine = into.setdefault(meter, {"unit": figures.get("unit", ""), "events": 0, "quantity": "0",
                                       "amount": "0"})
        mine["events"] += int(figures.get("events") or 0)
        for key in ("quantity", "amount"):
            mine[key] = str(Decimal(mine[key]) + Decimal(str(figures.get(key) or 0)))
