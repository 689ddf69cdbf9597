"""The one-line outcome of a run, from its status, counts, reasons and error."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.outcomes import outcome_line

PAID = {"skipped": {"paid since preview": 12}}


@pytest.mark.parametrize(("status", "summary", "error", "line"), [
    ("COMPLETED", {"items": {}}, None, "nothing to do"),
    ("COMPLETED", {"items": {"skipped": 12}, "reasons": PAID}, None,
     "nothing applied: 12 skipped at apply: paid since preview"),
    ("COMPLETED", {"items": {"ok": 1204, "skipped": 12}, "reasons": PAID}, None,
     "applied 1,204 items, 12 skipped at apply: paid since preview"),
    ("INCOMPLETE", {"items": {"ok": 1204, "error": 3}, "reasons": {"error": {"ERP target refused": 3}}}, "3 of …",
     "applied 1,204 items, 3 failed: ERP target refused"),
    ("INCOMPLETE", {"items": {"ok": 1, "error": 5},
                    "reasons": {"error": {"BAD_QUANTITY": 3, "unknown account": 1, "other": 1}}}, None,
     "applied 1 item, 5 failed (BAD_QUANTITY: 3; unknown account: 1; 1 more reason)"),
    ("FAILED", {"items": {}}, "Cannot reach the ERP target at erp.example:8443: connection refused",
     "failed, nothing applied: Cannot reach the ERP target at erp.example:8443: connection refused"),
    ("FAILED", {"items": {"error": 2}, "reasons": {"error": {"ledger timed out": 2}}}, None,
     "nothing applied: 2 failed: ledger timed out"),
    ("PREVIEW", {"items": {"planned": 40}}, None, "awaiting review: 40 items to apply"),
    ("PREVIEW", {"items": {}}, None, "awaiting review: nothing to do"),
    ("DELETED", {"items": {"planned": 40}}, None, "preview deleted: nothing applied (40 staged items discarded)"),
    ("CANCELLED", {}, None, "cancelled before it started: nothing applied"),
    ("CREATED", {}, None, "waiting for a worker"),
    ("SUBMITTED", {"items": {"ok": 3, "planned": 7}}, None, "applying: 3 of 10 items done"),
])
def test_every_status_has_a_line_a_person_understands(
    status: str, summary: dict[str, Any], error: str | None, line: str
) -> None:
    assert outcome_line(status, summary, error) == line
