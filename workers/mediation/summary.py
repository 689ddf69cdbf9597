"""The usage mediation run summary: files, records read, mediated, filtered, failed, rated amount.

``money``: the rated amount per currency of the records' accounts (6 decimals, as rated).

Counted from the file items, so a preview shows the staged figures and a finished run the applied ones.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from scheduler.jobkit import ItemOutcome, RunContext, RunItems
from scheduler.money import MoneyTotals
from workers.mediation.items import FILE_PREFIX

Out = ItemOutcome
COUNTS = ("records", "mediated", "filtered", "failed")


def summarize(ctx: RunContext) -> dict[str, Any]:
    rows = sorted(RunItems(ctx).all(key_prefix=FILE_PREFIX), key=lambda item: item.key)
    totals = dict.fromkeys(COUNTS, 0)
    amount = Decimal("0.000000")
    by_file: dict[str, dict[str, Any]] = {}
    by_meter: dict[str, dict[str, Any]] = {}
    money = MoneyTotals()
    files = skipped = errored = 0
    for row in rows:
        detail = row.detail
        if detail.get("item") != "file":
            continue
        name = str(detail.get("file"))
        if row.outcome in (Out.PLANNED, Out.OK):
            files += 1
            for key in COUNTS:
                totals[key] += int(detail.get(key) or 0)
            amount += Decimal(str(detail.get("amount") or 0))
            _add_meters(by_meter, detail.get("by_meter") or {})
            for currency, rated in (detail.get("by_currency") or {}).items():
                money.add(currency, "rated", rated)
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
        "money": money.as_dict(names=("rated",), places=6),
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
