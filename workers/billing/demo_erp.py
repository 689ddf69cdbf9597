"""The demo ERP transfer job: an "ERP sink" of JSON files under the files root, fed every 10 minutes.

Its runs write each invoice once, in batches, to ``erp/outbox`` (``<dataset>-<run id>-<batch no>.json``);
the first run takes every invoice of the demo ledger, later ones only what is new.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEMO_OUTBOX = "erp/outbox"
"""The sink's directory, relative to the files root."""

DEMO_JOB: dict[str, Any] = {
    "name": "ERP sink: invoices to files (every 10 minutes)",
    "job_type": "erp_transfer",
    "description": "Writes new invoices as JSON batches of 500 to erp/outbox under the files root, each invoice once.",
    "cron": "*/10 * * * *",
    "timezone": "UTC",
    "properties": {
        "dataset": "invoices",
        "target": {"kind": "file", "directory": DEMO_OUTBOX},
        "format": "json",
        "batch_size": 500,
        "auto_send": True,
    },
}


def prepare_outbox(files_root: Path) -> Path:
    """Create the sink's directory, so it can be opened before the first run writes to it."""
    outbox = files_root / DEMO_OUTBOX
    outbox.mkdir(parents=True, exist_ok=True)
    return outbox
