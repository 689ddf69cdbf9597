"""A run's outcome in one line a person understands, and its items counted by outcome and reason.

The line is built from what the run keeps: its status, its summary's item counts (``summary["items"]``)
and reasons (``summary["reasons"]``, written when the run is evaluated and when it ends) and its error.
An item's reason is its ``code`` (a stable code a job type may give), else its ``reason`` (skipped items)
or its ``error`` (failed ones). A failed item whose detail says ``"retryable": false`` was refused for its
data: a retry cannot redo it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.models import ItemOutcome, JobRun, RunItem, RunStatus

S = RunStatus
Out = ItemOutcome

MAX_REASONS = 20
"""Reasons kept per outcome (the most frequent); the rest are counted as ``other reasons``."""
SHOWN_REASONS = 2
"""Reasons named in the one-line outcome."""
REASON_LENGTH = 160


class ItemTally(NamedTuple):
    """A run's items counted in one aggregate: by outcome, the skipped and failed ones by reason, and why a
    retry would redo nothing (``None`` when it may be retried)."""

    counts: dict[str, int]
    reasons: dict[str, dict[str, int]]
    retry_refusal: str | None


def item_tally(session: Session, run_id: int) -> ItemTally:
    """The run's items by outcome and by reason (``{"skipped": {"paid since preview": 12}}``), in one query."""
    detail = col(RunItem.detail)
    outcome = col(RunItem.outcome)
    reason = case((outcome.in_([Out.SKIPPED, Out.ERROR]),
                   func.coalesce(detail["code"].as_string(), detail["reason"].as_string(),
                                 detail["error"].as_string(), "no reason recorded")))
    refused = detail["retryable"].as_boolean().is_(False)
    rows = session.execute(
        select(outcome, reason, func.count(), func.count().filter(refused))
        .where(col(RunItem.run_id) == run_id)
        .group_by(outcome, reason)
    ).all()
    counts: dict[str, int] = {}
    for o, _, n, _ in rows:
        counts[str(o)] = counts.get(str(o), 0) + int(n)
    reasons: dict[str, dict[str, int]] = {}
    for kind in (Out.SKIPPED, Out.ERROR):
        if by_reason := [(str(r), int(n)) for o, r, n, _ in rows if o == kind]:
            reasons[str(kind)] = _most_frequent(by_reason)
    refused_items = sum(int(k) for o, _, _, k in rows if o == Out.ERROR)
    return ItemTally(counts, reasons, _refusal(counts.get(Out.ERROR, 0), refused_items))


def _most_frequent(by_reason: list[tuple[str, int]]) -> dict[str, int]:
    """The ``MAX_REASONS`` most frequent reasons, readable; the rest counted as ``other reasons``."""
    counted = sorted(((_readable(r), n) for r, n in by_reason), key=lambda p: (-p[1], p[0]))
    kept: dict[str, int] = {}
    for text, n in counted[:MAX_REASONS]:
        kept[text] = kept.get(text, 0) + n
    if rest := sum(n for _, n in counted[MAX_REASONS:]):
        kept["other reasons"] = rest
    return kept


def retry_refusal(session: Session, run: JobRun) -> str | None:
    """Why a retry of this FAILED or INCOMPLETE run would redo nothing, or ``None`` when it may be retried."""
    assert run.id is not None
    errors = col(RunItem.outcome) == Out.ERROR
    refused = col(RunItem.detail)["retryable"].as_boolean().is_(False)
    failed, data_refused = session.execute(
        select(func.count().filter(errors), func.count().filter(errors, refused))
        .where(col(RunItem.run_id) == run.id)
    ).one()
    return _refusal(int(failed), int(data_refused))


def _refusal(failed: int, data_refused: int) -> str | None:
    if failed and failed == data_refused:
        return (f"a retry would redo nothing: its {_n(failed, 'failed item')} were refused for their data; "
                "correct the source and run the job again")
    return None


class _Tally(NamedTuple):
    ok: int
    skipped: int
    failed: int
    planned: int


def outcome_line(status: str, summary: Mapping[str, Any], error: str | None) -> str:
    """What became of a run, in one line: "nothing to do", "12 skipped at apply: paid since preview", …"""
    counts: Mapping[str, int] = summary.get("items") or {}
    reasons: Mapping[str, Mapping[str, int]] = summary.get("reasons") or {}
    tally = _Tally(*(int(counts.get(o, 0)) for o in (Out.OK, Out.SKIPPED, Out.ERROR, Out.PLANNED)))
    at_apply = " at apply" if tally.ok or status != S.PREVIEW else ""
    skipped_part = f"{tally.skipped:,} skipped{at_apply}" + _why(reasons, Out.SKIPPED)
    line = _before_the_end(status, tally, skipped_part)
    if line is not None:
        return line
    return _at_the_end(status, tally, skipped_part, f"{tally.failed:,} failed" + _why(reasons, Out.ERROR), error)


def _before_the_end(status: str, tally: _Tally, skipped_part: str) -> str | None:
    """The line of a run still under way, or that ended without running (cancelled, deleted); else None."""
    ok, skipped, failed, planned = tally
    if status == S.CREATED:
        return "waiting for a worker"
    if status == S.PROCESSING:
        return f"evaluating: {_n(planned, 'item')} staged so far"
    if status == S.PREVIEW:
        if not planned:
            return "awaiting review: nothing to do"
        return f"awaiting review: {_n(planned, 'item')} to apply" + (f"; {skipped_part}" if skipped else "")
    if status == S.SUBMITTED:
        return f"applying: {ok + skipped + failed:,} of {ok + skipped + failed + planned:,} items done"
    if status == S.CANCELLED:
        return "cancelled before it started: nothing applied"
    if status == S.DELETED:
        return f"preview deleted: nothing applied ({_n(planned, 'staged item')} discarded)"
    return None


def _at_the_end(status: str, tally: _Tally, skipped_part: str, failed_part: str, error: str | None) -> str:
    """The line of a run that ran to its end: COMPLETED, INCOMPLETE or FAILED."""
    parts = [f"applied {_n(tally.ok, 'item')}"] if tally.ok else []
    if tally.skipped:
        parts.append(skipped_part)
    if tally.failed:
        parts.append(failed_part)
    if status == S.FAILED and not tally.failed:
        return "failed, nothing applied: " + _clip(error or "no reason recorded")
    if not parts:
        return "nothing to do"
    if not tally.ok:
        return "nothing applied: " + ", ".join(parts)
    return ", ".join(parts)


def _why(reasons: Mapping[str, Mapping[str, int]], outcome: str) -> str:
    by_reason = reasons.get(outcome) or {}
    if not by_reason:
        return ""
    named = list(by_reason.items())[:SHOWN_REASONS]
    if len(named) == 1 and len(by_reason) == 1:
        return f": {named[0][0]}"
    shown = "; ".join(f"{reason}: {n:,}" for reason, n in named)
    more = len(by_reason) - len(named)
    rest = f"; {_n(more, 'more reason')}" if more > 0 else ""
    return f" ({shown}{rest})"


def _readable(reason: str) -> str:
    """A stable code (``UNKNOWN_ACCOUNT``) as words; any reason cut to one short line."""
    if reason.isupper() and " " not in reason:
        reason = reason.replace("_", " ").lower()
    return _clip(reason)


def _clip(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= REASON_LENGTH else line[: REASON_LENGTH - 1] + "…"


def _n(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
