"""CSV exports of runs and of a run's items: one consistent snapshot, built before the first byte, safe to open
in a spreadsheet.

The whole file is read in one snapshot transaction (see :func:`scheduler.db.read_snapshot`) and held in
memory before the answer starts, so a database error is a JSON error, never a 200 with a cut file;
``SCHEDULER_MAX_EXPORT_ROWS`` bounds its size. Each field of a run's summary (or an item's detail) is a
column of its own: a mapping of plain values spreads over ``field.key`` columns, an amount of money is its
amount in the currency's decimals next to a ``field_currency`` column, and a summary's ``money`` totals are a
``money.<currency>.<name>`` column each (see :mod:`scheduler.money`). Text
cells that a spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage
return) get a leading ``'`` (OWASP's CSV injection advice); numeric columns stay numbers, negative ones included.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi.responses import StreamingResponse
from sqlalchemy import Engine, func, select
from sqlmodel import col

from scheduler.api.schemas import iso_utc, job_names
from scheduler.db import read_snapshot
from scheduler.errors import ExportTooLarge
from scheduler.models import JobRun, RunItem
from scheduler.money import amounts, as_money, bare_currency, display, money_totals
from scheduler.runs import RunFilter, count_runs, list_items, list_runs

RUN_COLUMNS = (
    "id", "job_id", "job_name", "job_type", "trigger", "status", "preview", "scheduled_for", "created_at",
    "enqueued_at", "started_at", "finished_at", "heartbeat_at", "created_by", "worker", "attempt", "retry_of",
    "error",
)
ITEM_COLUMNS = ("id", "key", "chunk_no", "outcome", "applied_at")
PAGE = 1000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text, never runs as a formula; numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, int | Decimal | float):  # bool included
        return value
    if isinstance(value, datetime):
        return iso_utc(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def spread(values: dict[str, Any], currency: str, *, prefix: str = "") -> dict[str, Any]:
    """A summary or detail as CSV cells, one column per field (see the module's note)."""
    cells: dict[str, Any] = {}
    bare = bare_currency(values, currency)
    for key, value in values.items():
        name = f"{prefix}{key}"
        found = as_money(key, value, bare)
        if found is not None:
            one = len({m.currency for m in found}) == 1
            cells[name] = sum((m.rounded for m in found), Decimal(0)) if one else display(found)
            cells[f"{name}_currency"] = found[0].currency if one else ""
        elif key == "money" and not prefix and money_totals(value) is not None:
            cells.update({f"money.{a.money.currency}.{a.name}": a.money.rounded
                          for a in amounts({"money": value}, currency)})
        elif isinstance(value, dict) and not prefix and all(not isinstance(v, dict | list) for v in value.values()):
            cells.update(spread(value, currency, prefix=f"{name}."))
        elif isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
            cells[name] = ", ".join(str(v) for v in value)
        elif isinstance(value, dict | list):
            cells[name] = json.dumps(value, sort_keys=True, default=str)
        else:
            cells[name] = value
    return cells


def write_csv(fixed: tuple[str, ...], rows: list[dict[str, Any]]) -> list[str]:
    """The CSV text of ``rows`` in pages: the ``fixed`` columns, then every other column in order of appearance."""
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in fixed))
    columns = [*fixed, *extra]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    pages: list[str] = []
    for start in range(0, max(len(rows), 1), PAGE):
        writer.writerows([safe_cell(row.get(c)) for c in columns] for row in rows[start:start + PAGE])
        pages.append(buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()
    return pages


def csv_answer(pages: Iterable[str], filename: str) -> StreamingResponse:
    return StreamingResponse(iter(pages), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def export_runs(engine: Engine, filters: RunFilter, *, max_rows: int, currency: str) -> list[str]:
    """Every filtered run, newest first, one column per summary field; :class:`ExportTooLarge` past ``max_rows``."""
    with read_snapshot(engine) as session:
        total = count_runs(session, filters)
        if total > max_rows:
            raise ExportTooLarge(total, max_rows)
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            runs, cursor = list_runs(session, filters, limit=PAGE, cursor=cursor)
            names = job_names(session, [r.job_id for r in runs])
            rows.extend(_run_row(run, names.get(run.job_id, ""), currency) for run in runs)
            if cursor is None:
                return write_csv(RUN_COLUMNS, rows)


def _run_row(run: JobRun, job_name: str, currency: str) -> dict[str, Any]:
    row: dict[str, Any] = {**run.model_dump(include=set(RUN_COLUMNS)), "job_name": job_name}
    return {**row, **_beside(row, spread(run.summary or {}, currency), "summary")}


def _beside(fixed: dict[str, Any], cells: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``cells`` renamed ``prefix.name`` where a fixed column has their name already."""
    return {f"{prefix}.{k}" if k in fixed else k: v for k, v in cells.items()}


def export_items(engine: Engine, run_id: int, *, outcome: str | None, max_rows: int, currency: str) -> list[str]:
    """Every item of a run (of one outcome), one column per detail field; :class:`ExportTooLarge` past ``max_rows``."""
    with read_snapshot(engine) as session:
        counted = select(func.count()).select_from(RunItem).where(col(RunItem.run_id) == run_id)
        if outcome:
            counted = counted.where(col(RunItem.outcome) == outcome)
        total = int(session.scalar(counted) or 0)
        if total > max_rows:
            raise ExportTooLarge(total, max_rows)
        return write_csv(ITEM_COLUMNS, list(_item_rows(session, run_id, outcome, currency)))


def _item_rows(session: Any, run_id: int, outcome: str | None, currency: str) -> Iterator[dict[str, Any]]:
    after: int | None = None
    while True:
        items, cursor = list_items(session, run_id, outcome=outcome, limit=PAGE, after_id=after)
        for item in items:
            row = {"id": item.id, "key": item.item_key, "chunk_no": item.chunk_no, "outcome": item.outcome,
                   "applied_at": item.applied_at}
            yield {**row, **_beside(row, spread(item.detail or {}, currency), "detail")}
        if cursor is None:
            return
        after = int(cursor)
