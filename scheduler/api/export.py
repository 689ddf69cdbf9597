"""CSV export of runs: one consistent snapshot, built before the first byte, safe to open in a spreadsheet.

The whole file is read in one snapshot transaction (see :func:`scheduler.db.read_snapshot`) and
held in memory before the answer starts, so a database error is a JSON error, never a 200 with a
cut file; ``SCHEDULER_MAX_EXPORT_ROWS`` bounds its size. Text cells that a spreadsheet would read as
a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) get a leading ``'``
(OWASP's CSV injection advice); numeric columns stay numbers, negative ones included.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from scheduler.api.schemas import iso_utc, job_names
from scheduler.db import read_snapshot
from scheduler.errors import ExportTooLarge
from scheduler.models import JobRun
from scheduler.runs import RunFilter, count_runs, list_runs

CSV_COLUMNS = (
    "id", "job_id", "job_name", "job_type", "trigger", "status", "preview", "scheduled_for", "created_at",
    "enqueued_at", "started_at", "finished_at", "heartbeat_at", "created_by", "worker", "attempt", "retry_of",
    "error", "summary",
)
PAGE = 1000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text, never runs as a formula; numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, int | Decimal | float):  # bool included
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export_runs(engine: Engine, filters: RunFilter, *, max_rows: int) -> list[str]:
    """The CSV text of every filtered run, newest first, in pages; :class:`ExportTooLarge` past ``max_rows``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    pages: list[str] = []
    with read_snapshot(engine) as session:
        total = count_runs(session, filters)
        if total > max_rows:
            raise ExportTooLarge(total, max_rows)
        cursor: str | None = None
        while True:
            runs, cursor = list_runs(session, filters, limit=PAGE, cursor=cursor)
            names = job_names(session, [r.job_id for r in runs])
            writer.writerows(_row(run, names.get(run.job_id, "")) for run in runs)
            pages.append(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()
            if cursor is None:
                return pages


def _row(run: JobRun, job_name: str) -> list[Any]:
    row: dict[str, Any] = {**run.model_dump(), "job_name": job_name}
    values: list[Any] = []
    for column in CSV_COLUMNS:
        value = row[column]
        if isinstance(value, datetime):
            value = iso_utc(value)
        elif column == "summary":
            value = json.dumps(value, sort_keys=True)
        values.append(safe_cell(value))
    return values
