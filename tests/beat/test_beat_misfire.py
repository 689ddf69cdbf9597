"""Misfire planning as a pure function: which due ticks run, and why the others do not."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from beat.misfire import MAX_ENUMERATED, latest_fires, plan_ticks
from beat.scheduling import overlap_capacity
from scheduler.cron import CronSchedule
from scheduler.models import MisfirePolicy, OverlapPolicy

NOW = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
GRACE = timedelta(seconds=5)
EVERY_MINUTE = CronSchedule.parse("* * * * *", "UTC")


def t(hour: int, minute: int) -> datetime:
    return datetime(2026, 6, 1, hour, minute, tzinfo=UTC)


# next_fire_at, now, policy, window (s), max runs -> run ticks, {reason: count}
CASES = [
    # nothing missed: the one due tick is on time under every policy
    (t(12, 0), t(12, 0) + timedelta(seconds=2), "SKIP", 60, 10, [t(12, 0)], {}),
    (t(12, 0), t(12, 0) + timedelta(seconds=2), "ONCE", 0, 10, [t(12, 0)], {}),
    # one tick, late: SKIP drops it, ONCE and ALL run it
    (t(12, 0), NOW, "SKIP", 3600, 10, [], {"skipped": 1}),
    (t(12, 0), NOW, "ONCE", 3600, 10, [t(12, 0)], {}),
    (t(12, 0), NOW, "ALL", 3600, 10, [t(12, 0)], {}),
    # late beyond the window: recorded as outside it
    (t(12, 0), NOW, "ONCE", 10, 10, [], {"outside_catchup_window": 1}),
    # ten minutes down, window 5 min: 11:51-11:55 outside (5), 11:56-12:00 inside (5)
    (t(11, 51), NOW, "SKIP", 300, 10, [], {"skipped": 5, "outside_catchup_window": 5}),
    (t(11, 51), NOW, "ONCE", 300, 10, [t(12, 0)], {"coalesced": 4, "outside_catchup_window": 5}),
    (t(11, 51), NOW, "ALL", 300, 3, [t(11, 58), t(11, 59), t(12, 0)],
     {"max_catchup_runs": 2, "outside_catchup_window": 5}),
    (t(11, 51), NOW, "ALL", 300, 10, [t(11, 56), t(11, 57), t(11, 58), t(11, 59), t(12, 0)],
     {"outside_catchup_window": 5}),
    # the latest tick is on time, older ones were missed
    (t(11, 58), t(12, 0) + timedelta(seconds=1), "SKIP", 3600, 10, [t(12, 0)], {"skipped": 2}),
    # next_fire_at in a gap between fires: only real fires count
    (t(11, 59) + timedelta(seconds=30), NOW, "ALL", 3600, 10, [t(12, 0)], {}),
]


@pytest.mark.parametrize(("next_fire_at", "now", "policy", "window", "max_runs", "runs", "missed"), CASES)
def test_plan_ticks(
    next_fire_at: datetime,
    now: datetime,
    policy: str,
    window: int,
    max_runs: int,
    runs: list[datetime],
    missed: dict[str, int],
) -> None:
    plan = plan_ticks(
        EVERY_MINUTE,
        next_fire_at=next_fire_at,
        now=now,
        grace=GRACE,
        policy=MisfirePolicy(policy),
        catchup_window=timedelta(seconds=window),
        max_catchup_runs=max_runs,
    )
    assert plan.run_ticks == runs
    assert {m.reason: m.count for m in plan.missed} == missed
    assert all(not m.at_least for m in plan.missed)


def test_missed_groups_carry_the_ticks_to_log() -> None:
    plan = plan_ticks(
        EVERY_MINUTE, next_fire_at=t(11, 51), now=NOW, grace=GRACE, policy=MisfirePolicy.ONCE,
        catchup_window=timedelta(seconds=300), max_catchup_runs=10,
    )
    outside, coalesced = plan.missed
    assert (outside.sample, outside.last) == (tuple(t(11, 51 + n) for n in range(5)), t(11, 55))
    assert (coalesced.sample, coalesced.last) == (tuple(t(11, 56 + n) for n in range(4)), t(11, 59))


@pytest.mark.parametrize("policy", list(MisfirePolicy))
def test_years_behind_every_second_is_bounded(policy: MisfirePolicy) -> None:
    every_second = CronSchedule.parse("* * * * * ?", "UTC")
    started = time.perf_counter()
    plan = plan_ticks(
        every_second, next_fire_at=NOW - timedelta(days=5 * 365), now=NOW, grace=GRACE, policy=policy,
        catchup_window=timedelta(days=3650), max_catchup_runs=5,
    )
    assert time.perf_counter() - started < 5
    expected = {"SKIP": 1, "ONCE": 1, "ALL": 5}[policy]
    assert plan.run_ticks == [NOW - timedelta(seconds=expected - 1 - n) for n in range(expected)]
    [group] = plan.missed
    assert group.at_least and group.count >= MAX_ENUMERATED - expected


def test_latest_fires_finds_the_end_of_a_sparse_burst() -> None:
    # every second of 03:00-03:59 only: the latest fires are far from "now"
    burst = CronSchedule.parse("* * 3 * * ?", "UTC")
    fires = latest_fires(burst, t(0, 0) - timedelta(days=30), t(12, 0), 3)
    assert fires == [t(3, 59) + timedelta(seconds=57 + n) for n in range(3)]


@pytest.mark.parametrize(
    ("policy", "waiting", "running", "capacity"),
    [
        (OverlapPolicy.SKIP, 0, 0, 1),
        (OverlapPolicy.SKIP, 1, 0, 0),
        (OverlapPolicy.SKIP, 0, 1, 0),
        (OverlapPolicy.BUFFER_ONE, 0, 0, 1),
        (OverlapPolicy.BUFFER_ONE, 0, 3, 1),
        (OverlapPolicy.BUFFER_ONE, 1, 1, 0),
        (OverlapPolicy.ALLOW, 5, 5, None),
    ],
)
def test_overlap_capacity(policy: OverlapPolicy, waiting: int, running: int, capacity: int | None) -> None:
    assert overlap_capacity(policy, waiting=waiting, running=running) == capacity
