"""Which records a run transfers: its date range (rolling or explicit), bill cycle run, and not-yet-delivered.

The range is decided once, when the run is planned, and travels in every chunk spec, so the run's
evaluation, apply and summary all see the same range; a retry reuses its original run's range.
A rolling range starts ``lookback_days`` before the day the job's last ``COMPLETED`` rolling run
ended (its summary's ``range_end``), never before the job's inception date, and ends on the run's
as-of date. Reading recent days again is what catches records entered late (a payment booked today
with yesterday's date, an invoice back-dated by a correction); the delivery ledger leaves out what
was already sent, so nothing goes twice. A record dated before the look-back when it is entered is
only sent by a run of an explicit range.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, bindparam
from sqlalchemy.sql.elements import BindParameter

from scheduler.jobkit import RunContext, UTCDateTime, chunk_spec, latest_summary_value
from workers.erp.datasets import Source
from workers.erp.properties import ErpProperties, ErpRunProperties


class RangeKind(enum.StrEnum):
    ROLLING = "rolling"
    """From the end of the job's last completed rolling run (less the look-back; or its inception date) to
    the run's date."""
    EXPLICIT = "explicit"
    """The run's own date range and/or bill cycle run."""


def properties(ctx: RunContext) -> tuple[ErpProperties, ErpRunProperties]:
    assert isinstance(ctx.properties, ErpProperties)
    assert isinstance(ctx.run_properties, ErpRunProperties)
    return ctx.properties, ctx.run_properties


def zone(ctx: RunContext) -> ZoneInfo:
    return ZoneInfo(str(ctx.extra.get("timezone") or "UTC"))


def as_of_date(ctx: RunContext) -> date:
    """The run's as-of instant as a date in the job's time zone."""
    return ctx.as_of.astimezone(zone(ctx)).date()


@dataclass(frozen=True, kw_only=True)
class Scope:
    """The records of one run: days ``start``..``end`` (inclusive, either open) and a bill cycle run."""

    kind: RangeKind
    start: date | None = None
    end: date | None = None
    bill_cycle_run_id: int | None = None

    def spec(self) -> dict[str, Any]:
        return {
            "range_kind": str(self.kind),
            "range_start": self.start.isoformat() if self.start else None,
            "range_end": self.end.isoformat() if self.end else None,
            "bill_cycle_run_id": self.bill_cycle_run_id,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Scope:
        start, end = spec.get("range_start"), spec.get("range_end")
        return cls(
            kind=RangeKind(spec.get("range_kind") or RangeKind.EXPLICIT),
            start=date.fromisoformat(start) if start else None,
            end=date.fromisoformat(end) if end else None,
            bill_cycle_run_id=spec.get("bill_cycle_run_id"),
        )

    @property
    def empty(self) -> bool:
        return self.start is not None and self.end is not None and self.start > self.end

    def condition(self, source: Source, tz: ZoneInfo) -> tuple[str, dict[str, Any], list[BindParameter[Any]]]:
        """A SQL condition on ``r`` (the dataset's table) with its parameters and typed binds."""
        if self.empty:
            return "1 = 0", {}, []
        parts: list[str] = []
        params: dict[str, Any] = {}
        binds: list[BindParameter[Any]] = []
        column = f"r.{source.day_column}"
        if source.day_is_instant:
            # Days are the job's local days: [start 00:00, end + 1 day 00:00) in its zone, compared in UTC.
            if self.start is not None:
                parts.append(f"{column} >= :day_from")
                params["day_from"] = _midnight(self.start, tz)
                binds.append(bindparam("day_from", type_=UTCDateTime()))
            if self.end is not None:
                parts.append(f"{column} < :day_until")
                params["day_until"] = _midnight(self.end + timedelta(days=1), tz)
                binds.append(bindparam("day_until", type_=UTCDateTime()))
        else:
            if self.start is not None:
                parts.append(f"{column} >= :day_from")
                params["day_from"] = self.start
                binds.append(bindparam("day_from", type_=Date()))
            if self.end is not None:
                parts.append(f"{column} <= :day_to")
                params["day_to"] = self.end
                binds.append(bindparam("day_to", type_=Date()))
        if self.bill_cycle_run_id is not None:
            parts.append(source.cycle_condition)
            params["bill_cycle_run_id"] = self.bill_cycle_run_id
        return " AND ".join(parts) or "1 = 1", params, binds


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


NOT_DELIVERED = (
    "NOT EXISTS (SELECT 1 FROM erp_deliveries dl WHERE dl.target_key = :target_key "
    "AND dl.dataset = :dataset AND dl.record_id = r.id)"
)
"""The anti-join that leaves out records already delivered to the target (uses the unique index)."""


def resolve_scope(ctx: RunContext) -> Scope:
    """The run's scope: its original run's (a retry), its own properties, or the rolling range."""
    props, run_props = properties(ctx)
    if ctx.retry_of is not None:
        original = first_chunk_spec(ctx, ctx.retry_of)
        if original is not None:
            return Scope.from_spec(original)
    if run_props.explicit:
        return Scope(kind=RangeKind.EXPLICIT, start=run_props.date_from, end=run_props.date_to,
                     bill_cycle_run_id=run_props.bill_cycle_run_id)
    last_end = last_rolling_end(ctx)
    looked_back = last_end - timedelta(days=props.lookback_days) if last_end is not None else None
    starts = [d for d in (props.inception_date, looked_back) if d is not None]
    return Scope(kind=RangeKind.ROLLING, start=max(starts) if starts else None, end=as_of_date(ctx))


def first_chunk_spec(ctx: RunContext, run_id: int) -> dict[str, Any] | None:
    return chunk_spec(ctx, 0, run_id=run_id)


def last_rolling_end(ctx: RunContext) -> date | None:
    """``range_end`` of the job's latest completed rolling run, from the run summaries."""
    value = latest_summary_value(ctx, "range_end", where={"range_kind": RangeKind.ROLLING})
    return date.fromisoformat(value) if value else None
