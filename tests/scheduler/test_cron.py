"""Cron parsing, matching and the DST policy of DESIGN.md section 5, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.cron import CronSchedule, Fire, validate_timezone
from scheduler.errors import InvalidCron, UnknownTimezone

NY = "America/New_York"
LONDON = "Europe/London"


def z(text: str) -> datetime:
    """An aware UTC datetime from ``2026-03-08T07:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, zone: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def quarter_hours(first: str, last: str) -> list[datetime]:
    start, stop = z(first), z(last)
    return [start + timedelta(minutes=15 * i) for i in range(int((stop - start) / timedelta(minutes=15)) + 1)]


# --- DST policy ----------------------------------------------------------------------------------


# NY 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00Z.  NY 2026-11-01: 02:00 EDT -> 01:00 EST at 06:00Z.
# London 2026-03-29: 01:00 GMT -> 02:00 BST at 01:00Z.  London 2026-10-25: 02:00 BST -> 01:00 GMT at 01:00Z.
@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        # spring-forward: a skipped fixed time fires once, at the first instant after the gap
        ("30 2 * * *", NY, "2026-03-08T05:00", "2026-03-08T07:00"),
        ("0 2 * * *", NY, "2026-03-08T05:00", "2026-03-08T07:00"),
        ("30 2 * * *", NY, "2026-03-08T07:00", "2026-03-09T06:30"),
        ("*/15 2 * * *", NY, "2026-03-08T05:00", "2026-03-08T07:00"),
        ("*/15 2 * * *", NY, "2026-03-08T07:00", "2026-03-09T06:00"),
        ("30 1 * * *", LONDON, "2026-03-29T00:00", "2026-03-29T01:00"),
        ("0 1 * * *", LONDON, "2026-03-29T00:00", "2026-03-29T01:00"),
        ("*/15 1 * * *", LONDON, "2026-03-29T00:00", "2026-03-29T01:00"),
        ("*/15 1 * * *", LONDON, "2026-03-29T01:00", "2026-03-30T00:00"),
        ("0 30 2 * * ?", NY, "2026-03-08T05:00", "2026-03-08T07:00"),
        # spring-forward: wildcard/step hours have no fires inside the gap
        ("*/15 * * * *", NY, "2026-03-08T06:45", "2026-03-08T07:00"),
        ("5 * * * *", NY, "2026-03-08T06:05", "2026-03-08T07:05"),
        ("0 * * * *", LONDON, "2026-03-29T00:00", "2026-03-29T01:00"),
        ("30 */1 * * *", LONDON, "2026-03-29T00:30", "2026-03-29T01:30"),
        # fall-back: a fixed time fires once, on the first pass
        ("30 1 * * *", NY, "2026-11-01T04:00", "2026-11-01T05:30"),
        ("30 1 * * *", NY, "2026-11-01T05:30", "2026-11-02T06:30"),
        ("30 1 * * *", LONDON, "2026-10-24T23:00", "2026-10-25T00:30"),
        ("30 1 * * *", LONDON, "2026-10-25T00:30", "2026-10-26T01:30"),
        # fall-back: wildcard/step hours fire in both passes
        ("*/15 * * * *", NY, "2026-11-01T05:45", "2026-11-01T06:00"),
        ("*/15 * * * *", NY, "2026-11-01T06:10", "2026-11-01T06:15"),  # `after` inside the second pass
        ("*/15 * * * *", NY, "2026-11-01T06:45", "2026-11-01T07:00"),
        ("0 */2 * * *", NY, "2026-11-01T04:30", "2026-11-01T07:00"),  # hour 1 is not in the set
        ("*/20 * * * * ?", NY, "2026-11-01T06:00:50", "2026-11-01T06:01:00"),
        ("0 * * * *", LONDON, "2026-10-25T00:00", "2026-10-25T01:00"),
        # UTC has no DST
        ("30 2 * * *", "UTC", "2026-03-08T00:00", "2026-03-08T02:30"),
        ("30 1 * * *", "UTC", "2026-11-01T01:30", "2026-11-02T01:30"),
    ],
)
def test_next_after_across_dst(expression: str, zone: str, after: str, expected: str) -> None:
    assert CronSchedule.parse(expression, zone).next_after(z(after)) == z(expected)


@pytest.mark.parametrize(
    ("expression", "zone", "start", "end", "expected"),
    [
        # NY fall-back: 01:00..01:45 EDT, then 01:00..01:45 EST, then 02:00 EST
        ("*/15 * * * *", NY, "2026-11-01T04:59", "2026-11-01T07:00",
         quarter_hours("2026-11-01T05:00", "2026-11-01T07:00")),
        ("0 * * * *", NY, "2026-11-01T04:00", "2026-11-01T08:00",
         [z("2026-11-01T05:00"), z("2026-11-01T06:00"), z("2026-11-01T07:00"), z("2026-11-01T08:00")]),
        ("30 1 * * *", NY, "2026-10-31T00:00", "2026-11-03T00:00",
         [z("2026-10-31T05:30"), z("2026-11-01T05:30"), z("2026-11-02T06:30")]),
        ("*/30 1 * * *", NY, "2026-11-01T00:00", "2026-11-01T12:00",
         [z("2026-11-01T05:00"), z("2026-11-01T05:30")]),
        # NY spring-forward: no fires in 02:00-02:59, exactly one at 03:00 EDT
        ("*/15 * * * *", NY, "2026-03-08T06:00", "2026-03-08T07:30",
         quarter_hours("2026-03-08T06:15", "2026-03-08T07:30")),
        ("30 2 * * *", NY, "2026-03-07T00:00", "2026-03-10T00:00",
         [z("2026-03-07T07:30"), z("2026-03-08T07:00"), z("2026-03-09T06:30")]),
        ("*/15 2 * * *", NY, "2026-03-08T00:00", "2026-03-08T12:00", [z("2026-03-08T07:00")]),
        ("0,30 2,3 * * *", NY, "2026-03-08T00:00", "2026-03-08T12:00",
         [z("2026-03-08T07:00"), z("2026-03-08T07:30")]),
        # London: 01:00..01:45 BST (00:00Z..) then 01:00..01:45 GMT (01:00Z..)
        ("*/15 * * * *", LONDON, "2026-10-24T23:59", "2026-10-25T02:00",
         quarter_hours("2026-10-25T00:00", "2026-10-25T02:00")),
        ("*/15 * * * *", LONDON, "2026-03-29T00:30", "2026-03-29T01:30",
         quarter_hours("2026-03-29T00:45", "2026-03-29T01:30")),
        ("30 1 * * *", LONDON, "2026-03-28T00:00", "2026-03-31T00:00",
         [z("2026-03-28T01:30"), z("2026-03-29T01:00"), z("2026-03-30T00:30")]),
    ],
)  # fmt: skip
def test_fires_between_across_dst(
    expression: str, zone: str, start: str, end: str, expected: list[datetime]
) -> None:
    assert list(CronSchedule.parse(expression, zone).fires_between(z(start), z(end))) == expected


@pytest.mark.parametrize(
    ("expression", "zone", "day", "expected_count"),
    [
        ("*/5 */1 * * *", NY, "2026-11-01", 25 * 12),  # the repeated hour runs twice
        ("*/15 * * * *", NY, "2026-11-01", 25 * 4),
        ("*/15 * * * *", NY, "2026-03-08", 23 * 4),  # the skipped hour has no fires
        ("0 * * * *", LONDON, "2026-10-25", 25),
        ("0 * * * *", LONDON, "2026-03-29", 23),
        ("* 1 * * *", NY, "2026-11-01", 60),  # fixed hour: first pass only
        ("0 * * * *", "UTC", "2026-11-01", 24),
    ],
)
def test_fires_per_local_day_on_transition_days(
    expression: str, zone: str, day: str, expected_count: int
) -> None:
    start = local(f"{day}T00:00", zone) - timedelta(microseconds=1)
    end = local(f"{day}T23:59:59", zone)
    fires = list(CronSchedule.parse(expression, zone).fires_between(start, end))
    assert len(fires) == expected_count
    assert len(set(fires)) == len(fires)


@pytest.mark.parametrize("zone", [NY, LONDON, "UTC"])
@pytest.mark.parametrize("expression", ["30 1 * * *", "0 2 * * *", "30 2 * * *", "59 23 * * *", "0 0 * * *"])
def test_a_year_of_daily_fires_is_one_per_local_date(zone: str, expression: str) -> None:
    start = local("2026-01-01T00:00", zone) - timedelta(seconds=1)
    end = local("2026-12-31T23:59:59", zone)
    fires = list(CronSchedule.parse(expression, zone).fires_between(start, end))
    assert len(fires) == 365
    assert len({fire.astimezone(ZoneInfo(zone)).date() for fire in fires}) == 365
    assert fires == sorted(fires)


# --- next_fires and dst_change -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        ("30 1 * * *", NY, "2026-10-30T12:00", [
            ("2026-10-31T05:30", "2026-10-31T01:30-04:00", False),
            ("2026-11-01T05:30", "2026-11-01T01:30-04:00", False),
            ("2026-11-02T06:30", "2026-11-02T01:30-05:00", True),
            ("2026-11-03T06:30", "2026-11-03T01:30-05:00", False),
        ]),
        ("30 2 * * *", NY, "2026-03-06T12:00", [
            ("2026-03-07T07:30", "2026-03-07T02:30-05:00", False),
            ("2026-03-08T07:00", "2026-03-08T03:00-04:00", True),
            ("2026-03-09T06:30", "2026-03-09T02:30-04:00", False),
        ]),
        # the first fire compares with the offset at `after`
        ("0 0 * * *", NY, "2026-11-01T05:00", [("2026-11-02T05:00", "2026-11-02T00:00-05:00", True)]),
        ("0 0 * * *", NY, "2026-11-01T12:00", [("2026-11-02T05:00", "2026-11-02T00:00-05:00", False)]),
        ("0 * * * *", LONDON, "2026-10-25T00:30", [
            ("2026-10-25T01:00", "2026-10-25T01:00+00:00", True),
            ("2026-10-25T02:00", "2026-10-25T02:00+00:00", False),
        ]),
        ("0 12 * * *", "UTC", "2026-03-28T00:00", [
            ("2026-03-28T12:00", "2026-03-28T12:00+00:00", False),
            ("2026-03-29T12:00", "2026-03-29T12:00+00:00", False),
        ]),
    ],
)  # fmt: skip
def test_next_fires_flags_dst_changes(
    expression: str, zone: str, after: str, expected: list[tuple[str, str, bool]]
) -> None:
    fires = CronSchedule.parse(expression, zone).next_fires(z(after), len(expected))
    # Compare local times as text: aware datetimes in a repeated hour never compare equal across zones.
    assert [(f.utc, f.local.isoformat(timespec="minutes"), f.dst_change) for f in fires] == [
        (z(utc), at, change) for utc, at, change in expected
    ]
    assert all(
        isinstance(f, Fire) and f.utc.tzinfo is UTC and f.local.tzinfo == ZoneInfo(zone) for f in fires
    )


def test_next_fires_zero_and_negative() -> None:
    schedule = CronSchedule.parse("@daily")
    assert schedule.next_fires(z("2026-01-01T00:00"), 0) == []
    with pytest.raises(ValueError, match="count"):
        schedule.next_fires(z("2026-01-01T00:00"), -1)


# --- calendar features: L, W, #, Quartz, macros -------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # L and L-n
        ("0 23 L * *", "2026-02-01T00:00", "2026-02-28T23:00"),
        ("0 23 L * *", "2028-02-01T00:00", "2028-02-29T23:00"),
        ("0 23 L * *", "2026-04-30T23:00", "2026-05-31T23:00"),
        ("0 0 L-3 * *", "2026-02-01T00:00", "2026-02-25T00:00"),
        ("0 0 0 L * ?", "2026-06-01T00:00", "2026-06-30T00:00"),
        # LW: the last weekday (2026-01-31 is a Saturday, 2026-05-31 a Sunday)
        ("0 18 LW * *", "2026-01-01T00:00", "2026-01-30T18:00"),
        ("0 18 LW * *", "2026-05-01T00:00", "2026-05-29T18:00"),
        ("0 18 LW * *", "2026-03-01T00:00", "2026-03-31T18:00"),
        # nW: nearest weekday without leaving the month
        ("0 9 15W * *", "2026-08-01T00:00", "2026-08-14T09:00"),  # 15th is a Saturday -> Friday 14th
        ("0 9 15W * *", "2026-02-01T00:00", "2026-02-16T09:00"),  # 15th is a Sunday -> Monday 16th
        ("0 9 15W * *", "2026-04-01T00:00", "2026-04-15T09:00"),  # a Wednesday stays
        ("0 9 1W * *", "2026-08-01T00:00", "2026-08-03T09:00"),  # 1st is a Saturday -> Monday 3rd
        ("0 9 31W * *", "2026-05-01T00:00", "2026-05-29T09:00"),  # 31st is a Sunday -> Friday 29th
        ("0 9 31W * *", "2026-04-01T00:00", "2026-05-29T09:00"),  # April has no 31st
        # #: nth weekday (2026-03-01 is a Sunday, so the second Monday is the 9th)
        ("0 9 * * MON#2", "2026-03-01T00:00", "2026-03-09T09:00"),
        ("0 9 * * 1#2", "2026-03-01T00:00", "2026-03-09T09:00"),
        ("0 0 9 ? * 2#2", "2026-03-01T00:00", "2026-03-09T09:00"),
        ("0 0 9 ? * MON#2", "2026-03-01T00:00", "2026-03-09T09:00"),
        ("0 9 * * 0#1", "2026-03-02T00:00", "2026-04-05T09:00"),
        ("0 0 9 ? * 1#1", "2026-03-02T00:00", "2026-04-05T09:00"),
        ("0 0 0 ? 2 MON#5", "2026-01-01T00:00", "2044-02-29T00:00"),  # needs the 28-year calendar cycle
        # last weekday-of-week of the month
        ("0 17 * * 5L", "2026-01-01T00:00", "2026-01-30T17:00"),
        ("0 17 * * FRIL", "2026-07-01T00:00", "2026-07-31T17:00"),
        ("0 0 17 ? * 6L", "2026-01-01T00:00", "2026-01-30T17:00"),
        # day-of-week numbering: Unix 0/7 = Sunday, Quartz 1 = Sunday, 7 = Saturday
        ("0 12 * * 0", "2026-03-02T00:00", "2026-03-08T12:00"),
        ("0 12 * * 7", "2026-03-02T00:00", "2026-03-08T12:00"),
        ("0 0 12 ? * 1", "2026-03-02T00:00", "2026-03-08T12:00"),
        ("0 0 12 ? * 7", "2026-03-02T00:00", "2026-03-07T12:00"),
        ("0 0 12 ? * SAT", "2026-03-02T00:00", "2026-03-07T12:00"),
        ("0 12 * * 5-7", "2026-03-02T00:00", "2026-03-06T12:00"),
        # Unix rule: both day fields restricted means either; a '*'-led field means both
        ("0 0 13 * FRI", "2026-03-01T00:00", "2026-03-06T00:00"),
        ("0 0 */10 * MON", "2026-03-01T00:00", "2026-05-11T00:00"),
        # Quartz 6 and 7 fields: seconds, '?', year ranges
        ("30 */10 * * * ?", "2026-03-01T00:00", "2026-03-01T00:00:30"),
        ("30 */10 * * * ?", "2026-03-01T00:00:30", "2026-03-01T00:10:30"),
        ("15 30 9 * * ?", "2026-03-01T10:00", "2026-03-02T09:30:15"),
        ("0 0 12 ? * MON-FRI 2026-2030", "2026-03-07T00:00", "2026-03-09T12:00"),
        ("0 0 12 ? * MON-FRI 2026-2030", "2025-06-01T00:00", "2026-01-01T12:00"),
        ("0 0 12 1 1 ? 2028", "2026-03-01T00:00", "2028-01-01T12:00"),
        ("0 0 12 1 1 ? *", "2026-03-01T00:00", "2027-01-01T12:00"),
        ("0 0 0 1 1 ? 2020/5", "2026-03-01T00:00", "2030-01-01T00:00"),
        # names, lists, ranges, steps
        ("0 8 1 JAN,jul *", "2026-02-01T00:00", "2026-07-01T08:00"),
        ("0 8 1 */3 *", "2026-02-01T00:00", "2026-04-01T08:00"),
        ("10-20/5 * * * *", "2026-03-01T00:15", "2026-03-01T00:20"),
        ("10/20 * * * *", "2026-03-01T00:31", "2026-03-01T00:50"),
        # macros
        ("@hourly", "2026-03-01T00:00", "2026-03-01T01:00"),
        ("@daily", "2026-03-01T00:00", "2026-03-02T00:00"),
        ("@midnight", "2026-03-01T00:00", "2026-03-02T00:00"),
        ("@weekly", "2026-03-02T00:00", "2026-03-08T00:00"),
        ("@monthly", "2026-03-01T00:00", "2026-04-01T00:00"),
        ("@yearly", "2026-03-01T00:00", "2027-01-01T00:00"),
        ("@ANNUALLY", "2026-03-01T00:00", "2027-01-01T00:00"),
    ],
)
def test_next_after_calendar_features(expression: str, after: str, expected: str) -> None:
    assert CronSchedule.parse(expression).next_after(z(after)) == z(expected)


def test_last_day_of_month_in_a_zone_fires_in_local_time() -> None:
    schedule = CronSchedule.parse("0 23 L * *", NY)
    assert [f.local for f in schedule.next_fires(z("2026-01-02T00:00"), 3)] == [
        local("2026-01-31T23:00", NY),
        local("2026-02-28T23:00", NY),
        local("2026-03-31T23:00", NY),
    ]


# --- fires_between, next_after contract ----------------------------------------------------------


def test_fires_between_is_exclusive_at_start_inclusive_at_end_and_ascending() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    assert list(schedule.fires_between(z("2026-03-01T10:00"), z("2026-03-01T13:00"))) == [
        z("2026-03-01T11:00"),
        z("2026-03-01T12:00"),
        z("2026-03-01T13:00"),
    ]
    assert list(schedule.fires_between(z("2026-03-01T10:00"), z("2026-03-01T10:00"))) == []
    assert list(schedule.fires_between(z("2026-03-01T12:00"), z("2026-03-01T10:00"))) == []
    assert list(schedule.fires_between(z("2026-03-01T10:30"), z("2026-03-01T10:59:59"))) == []


def test_inputs_in_any_zone_give_utc() -> None:
    schedule = CronSchedule.parse("0 9 * * *", LONDON)
    after = datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 03:00Z
    fire = schedule.next_after(after)
    assert fire == z("2026-07-01T08:00")
    assert fire.tzinfo is UTC
    assert schedule.next_after(z("2026-07-01T07:59:59.999999")) == z("2026-07-01T08:00")


@pytest.mark.parametrize("call", ["next_after", "fires_between", "next_fires"])
def test_naive_datetimes_are_refused(call: str) -> None:
    schedule = CronSchedule.parse("* * * * *")
    naive = datetime(2026, 3, 1)
    with pytest.raises(ValueError, match="naive"):
        if call == "next_after":
            schedule.next_after(naive)
        elif call == "fires_between":
            schedule.fires_between(naive, z("2026-03-02T00:00"))
        else:
            schedule.next_fires(naive, 1)


@pytest.mark.parametrize(
    ("expression", "after"),
    [
        ("0 0 30 2 *", "2026-01-01T00:00"),
        ("0 0 31 4,6,9,11 *", "2026-01-01T00:00"),
        ("0 0 0 30 FEB ?", "2026-01-01T00:00"),
        ("0 0 12 ? * MON-FRI 2026-2030", "2031-01-01T00:00"),
    ],
)
def test_never_fires_is_an_error_not_a_hang(expression: str, after: str) -> None:
    schedule = CronSchedule.parse(expression)
    with pytest.raises(InvalidCron, match="never fires") as caught:
        schedule.next_after(z(after))
    assert caught.value.details == {"cron": expression, "reason": "never fires"}
    assert list(schedule.fires_between(z(after), z(after) + timedelta(days=3650))) == []


def test_parse_keeps_expression_and_zone() -> None:
    schedule = CronSchedule.parse("  30   1 * * * ", NY)
    assert (schedule.expression, schedule.timezone) == ("30 1 * * *", NY)
    assert schedule == CronSchedule.parse("30 1 * * *", NY)
    assert CronSchedule.parse("@daily").timezone == "UTC"


# --- describe ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("30 1 * * *", "At 01:30, every day"),
        ("*/15 * * * *", "Every 15 minutes"),
        ("* * * * *", "Every minute"),
        ("@hourly", "Every hour"),
        ("0 */2 * * *", "Every 2 hours"),
        ("5 * * * *", "At 5 minutes past the hour"),
        ("0 23 L * *", "At 23:00 on the last day of the month"),
        ("0 9 * * MON#2", "At 09:00 on the second Monday of the month"),
        ("0 0 9 ? * 2#2", "At 09:00 on the second Monday of the month"),
        ("0 17 * * 5L", "At 17:00 on the last Friday of the month"),
        ("0 18 LW * *", "At 18:00 on the last weekday of the month"),
        ("0 9 15W * *", "At 09:00 on the weekday nearest day 15 of the month"),
        ("0 9,17 * * *", "At 09:00 and 17:00, every day"),
        ("0 0 1,15 * *", "At 00:00 on days 1 and 15 of the month"),
        ("*/5 9-17 * * MON-FRI", "Every 5 minutes, between 09:00 and 17:59 on Monday through Friday"),
        ("5 4 * * SAT,SUN", "At 04:05 on Saturday and Sunday"),
        ("@yearly", "At 00:00 on January 1"),
        ("@weekly", "At 00:00 on Sunday"),
        ("0 8 1 */3 *", "At 08:00 on day 1 of the month in January, April, July and October"),
        ("0 0 12 ? * MON-FRI 2026-2030", "At 12:00 on Monday through Friday in 2026 through 2030"),
        ("*/10 * * * * ?", "Every 10 seconds"),
        ("15 30 9 * * ?", "At 09:30:15, every day"),
        ("0 0 1 * MON", "At 00:00 on day 1 of the month or Monday"),
    ],
)
def test_describe(expression: str, expected: str) -> None:
    assert CronSchedule.parse(expression).describe() == expected


# --- invalid input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "zone", "error", "fragment"),
    [
        ("* * * *", "UTC", InvalidCron, "expected 5 fields (or 6-7 Quartz fields with seconds), got 4"),
        ("0 0 0 * * ? * *", "UTC", InvalidCron, "got 8"),
        ("", "UTC", InvalidCron, "expression is empty"),
        ("   ", "UTC", InvalidCron, "expression is empty"),
        ("61 * * * *", "UTC", InvalidCron, "minute value 61 out of range 0-59"),
        ("* 24 * * *", "UTC", InvalidCron, "hour value 24 out of range 0-23"),
        ("* * 0 * *", "UTC", InvalidCron, "day-of-month value 0 out of range 1-31"),
        ("* * 32W * *", "UTC", InvalidCron, "day-of-month value 32 out of range 1-31"),
        ("* * * 13 *", "UTC", InvalidCron, "month value 13 out of range 1-12"),
        ("* * * * 8", "UTC", InvalidCron, "day-of-week value 8 out of range 0-7"),
        (
            "0 0 12 ? * 0",
            "UTC",
            InvalidCron,
            "day-of-week value 0 out of range 1-7 (Quartz numbering, 1 = SUN)",
        ),
        ("60 0 12 * * ?", "UTC", InvalidCron, "second value 60 out of range 0-59"),
        ("0 0 0 1 1 ? 1969", "UTC", InvalidCron, "year value 1969 out of range 1970-2099"),
        ("abc * * * *", "UTC", InvalidCron, "minute field: cannot parse 'abc'"),
        ("* * * FOO *", "UTC", InvalidCron, "month field: cannot parse 'FOO'"),
        ("1,,2 * * * *", "UTC", InvalidCron, "minute field: cannot parse ''"),
        ("-5 * * * *", "UTC", InvalidCron, "minute field: cannot parse '-5'"),
        ("*/0 * * * *", "UTC", InvalidCron, "minute step 0"),
        ("*/x * * * *", "UTC", InvalidCron, "cannot parse step"),
        ("0 0 0 1 1 ? 2030-2026", "UTC", InvalidCron, "year range '2030-2026' runs backwards"),
        ("0 0 12 ? * ?", "UTC", InvalidCron, "'?' may be used in only one of day-of-month and day-of-week"),
        ("0 0 12 1 * MON", "UTC", InvalidCron, "cannot restrict both day-of-month and day-of-week"),
        ("0 ? * * *", "UTC", InvalidCron, "'?' is only allowed in day-of-month or day-of-week"),
        ("0 0 1? * *", "UTC", InvalidCron, "'?' must stand alone"),
        ("0 9 * * MON#6", "UTC", InvalidCron, "occurrence after '#' must be 1-5"),
        ("0 9 * * MON#", "UTC", InvalidCron, "occurrence after '#' must be 1-5"),
        ("0 9 L-40 * *", "UTC", InvalidCron, "offset after 'L-' must be 0-30"),
        ("0 9 * * L", "UTC", InvalidCron, "'L' alone in day-of-week is Quartz-only"),
        ("0 9 * * XL", "UTC", InvalidCron, "day-of-week field: cannot parse 'XL'"),
        ("@reboot", "UTC", InvalidCron, "unknown macro '@reboot'"),
        ("@daily", "Mars/Olympus", UnknownTimezone, "unknown time zone 'Mars/Olympus'"),
        ("@daily", "", UnknownTimezone, "unknown time zone ''"),
        ("@daily", "europe/london", UnknownTimezone, "use an IANA name"),
        ("@daily", "../../etc/passwd", UnknownTimezone, "unknown time zone"),
        ("@daily", "localtime", UnknownTimezone, "unknown time zone"),
    ],
)
def test_invalid_expressions_and_zones(
    expression: str, zone: str, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as caught:
        CronSchedule.parse(expression, zone)
    assert fragment in str(caught.value)


def test_invalid_cron_carries_details() -> None:
    with pytest.raises(InvalidCron) as caught:
        CronSchedule.parse("61 * * * *")
    assert caught.value.code == "invalid_cron"
    assert caught.value.details == {"cron": "61 * * * *", "reason": "minute value 61 out of range 0-59"}
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("name", ["UTC", NY, LONDON, "Asia/Kolkata", "Etc/GMT+5"])
def test_validate_timezone_accepts_iana_names(name: str) -> None:
    assert validate_timezone(name) == ZoneInfo(name)
