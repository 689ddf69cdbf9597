"""Labelled counters start at 0 in every process, so the first failure after a restart is an increase."""

from __future__ import annotations

from prometheus_client import REGISTRY

from beat.misfire import MissReason
from scheduler.metrics import start_at_zero


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_every_job_type_trigger_status_reason_and_outcome_is_exported_at_zero() -> None:
    start_at_zero(["zero_type"], items=True, missed_reasons=MissReason.ALL)
    for trigger in ("SCHEDULED", "MANUAL", "RETRY", "BACKFILL"):
        for status in ("COMPLETED", "INCOMPLETE", "FAILED", "CANCELLED", "DELETED"):
            assert _value("scheduler_runs_total", job_type="zero_type", trigger=trigger, status=status) == 0
    for outcome in ("ok", "error", "skipped"):
        assert _value("scheduler_items_total", job_type="zero_type", outcome=outcome) == 0
    assert _value("scheduler_items_total", job_type="zero_type", outcome="planned") is None  # not a final outcome
    for reason in ("skipped", "coalesced", "max_catchup_runs", "outside_catchup_window", "overlap",
                   "awaiting_review"):
        assert _value("scheduler_missed_ticks_total", job_type="zero_type", reason=reason) == 0
