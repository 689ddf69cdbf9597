"""The cron dialect beyond the basics: no look-ahead horizon, wrap-around ranges, odd whitespace, ``H``."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.cron import FIRST_YEAR, LAST_YEAR, CronSchedule
from scheduler.cron_hash import job_hash_seed
from scheduler.errors import InvalidCron


def z(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


NOW = z("2026-08-01T00:00")

# --- no look-ahead horizon short of the supported years ------------------------------------------


def test_yearly_gives_a_hundred_fires() -> None:
    fires = CronSchedule.parse("@yearly").next_fires(NOW, 100)
    assert [f.utc for f in fires] == [z(f"{year}-01-01T00:00") for year in range(2027, 2127)]


def test_leap_day_gives_a_hundred_fires_four_centuries_ahead() -> None:
    fires = [f.utc for f in CronSchedule.parse("0 0 29 2 *").next_fires(NOW, 100)]
    leap_years = [y for y in range(2027, 2500) if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)][:100]
    assert fires == [z(f"{year}-02-29T00:00") for year in leap_years]
    assert fires[-1] == z("2436-02-29T00:00")  # 2100, 2200 and 2300 have no 29 February


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 0 0 1 1 ? 2060", "2060-01-01T00:00"),
        ("0 30 6 ? 3 MON#5 2060-2099", "2060-03-29T06:30"),
        ("0 0 29 2 1", "2027-02-01T00:00"),  # either field: the Monday comes first
        ("0 0 0 ? 2 MON#5", "2044-02-29T00:00"),
    ],
)
def test_a_first_fire_far_ahead_is_found(expression: str, expected: str) -> None:
    assert CronSchedule.parse(expression).next_after(NOW) == z(expected)


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 30 FEB ?", "0 0 0 ? 2 MON#5 2026"])
def test_a_cron_that_never_fires_is_refused_saying_why(expression: str) -> None:
    with pytest.raises(InvalidCron) as caught:
        CronSchedule.parse(expression).next_after(NOW)
    assert caught.value.message.endswith("never fires: no date matches its day, month and year fields")


def test_fires_stop_at_the_last_supported_year() -> None:
    schedule = CronSchedule.parse("@yearly")
    after = z(f"{LAST_YEAR - 1}-06-01T00:00")
    assert [f.utc for f in schedule.next_fires(after, 5)] == [z(f"{LAST_YEAR}-01-01T00:00")]
    with pytest.raises(InvalidCron, match=f"no fire after {LAST_YEAR}-01-01T00:00:00"):
        schedule.next_after(z(f"{LAST_YEAR}-01-01T00:00"))


def test_fires_start_at_the_first_supported_year() -> None:
    fires = list(CronSchedule.parse("@yearly").fires_between(z("1700-01-01T00:00"), z(f"{FIRST_YEAR + 2}-06-01T00:00")))
    assert fires == [z(f"{year}-01-01T00:00") for year in range(FIRST_YEAR, FIRST_YEAR + 3)]


def test_a_backfill_range_from_1950_holds_every_yearly_tick() -> None:
    schedule = CronSchedule.parse("@yearly", "Europe/London")
    ticks = list(schedule.fires_between(z("1950-01-01T00:00") - timedelta(microseconds=1), z("2026-06-01T00:00")))
    assert len(ticks) == 77
    assert {t.astimezone(schedule.zone).year for t in ticks} == set(range(1950, 2027))


# --- wrap-around ranges, n-L, croniter's spellings ----------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # 2026-03-05 is a Thursday
        ("0 12 * * FRI-MON", "2026-03-05T00:00", ["03-06", "03-07", "03-08", "03-09", "03-13"]),
        ("0 12 * * 5-1", "2026-03-05T00:00", ["03-06", "03-07", "03-08", "03-09", "03-13"]),
        ("0 0 12 ? * FRI-MON", "2026-03-05T00:00", ["03-06", "03-07", "03-08", "03-09", "03-13"]),
        ("0 12 1 NOV-MAR *", "2026-02-15T00:00", ["03-01", "11-01", "12-01"]),
        ("0 12 28-2 * *", "2026-02-01T00:00", ["02-01", "02-02", "02-28", "03-01", "03-02"]),
        ("0 12 29-L 2 *", "2028-01-01T00:00", ["02-29"]),
        ("0 12 20-L * *", "2026-02-25T00:00", ["02-25", "02-26", "02-27", "02-28", "03-20"]),
        ("0 12 * * MON-WED#1", "2026-03-01T00:00", ["03-02", "03-03", "03-04", "04-01"]),
        ("0 12 W15 * *", "2026-08-01T00:00", ["08-14", "09-15"]),
        ("0 12 * * L5", "2026-01-01T00:00", ["01-30", "02-27"]),
        ("0 12 * * 5/2", "2026-03-05T00:00", ["03-06", "03-13"]),
    ],
)
def test_wrap_around_ranges_and_croniter_spellings(expression: str, after: str, expected: list[str]) -> None:
    schedule = CronSchedule.parse(expression)
    fires = [f.utc for f in schedule.next_fires(z(after), len(expected))]
    year = z(after).year
    assert [f.strftime("%m-%d") for f in fires] == expected
    assert all(f.hour == 12 and f.year == year for f in fires)


@pytest.mark.parametrize(
    ("expression", "description"),
    [
        ("0 22-2 * * *", "At 00:00, 01:00, 02:00, 22:00 and 23:00, every day"),
        ("0 22-2/3 * * *", "At 01:00 and 22:00, every day"),  # the step is carried across midnight
        ("0 0 1 5-2/3 *", "At 00:00 on day 1 of the month in February, May, August and November"),
        ("50-5 * * * *", "At minutes 0 through 5 and 50 through 59"),
        ("0 0 * * 5-5", "At 00:00 on Friday"),  # a range from a value to itself is that value
    ],
)
def test_wrap_around_ranges_read_round_the_field(expression: str, description: str) -> None:
    assert CronSchedule.parse(expression).describe() == description


# --- whitespace -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "position"),
    [("\u00a0", 2), ("\u3000", 2), ("\u2003", 2), ("\u0085", 2), ("\u2028", 2), ("\x1c", 2)],
)
def test_non_ascii_whitespace_is_refused_naming_the_character(char: str, position: int) -> None:
    expression = f"0{char}2 * * *"
    with pytest.raises(InvalidCron) as caught:
        CronSchedule.parse(expression)
    assert f"character U+{ord(char):04X}" in caught.value.message
    assert f"at position {position} is not a field separator" in caught.value.message
    assert unicodedata.name(char, "a control character") in caught.value.message


def test_ascii_spaces_and_tabs_separate_fields() -> None:
    assert CronSchedule.parse("0\t2  *\t* *").expression == "0 2 * * *"


# --- H: hashed fields spread per job --------------------------------------------------------------


def test_h_spreads_thousands_of_daily_jobs_over_the_hour_and_each_job_keeps_its_minute() -> None:
    names = [f"dunning region {n}" for n in range(2000)]
    expanded = [CronSchedule.parse("H 2 * * *", seed=job_hash_seed(name)).expanded for name in names]
    minutes = [int(text.split()[0]) for text in expanded]
    assert all(text.endswith(" 2 * * *") for text in expanded)
    assert set(minutes) == set(range(60))  # every minute of the hour is used
    assert max(minutes.count(m) for m in range(60)) < 2000 / 60 * 2  # and none is crowded
    again = [CronSchedule.parse("H 2 * * *", seed=job_hash_seed(name)).expanded for name in names]
    assert again == expanded


def test_the_seed_is_the_name_however_it_was_typed() -> None:
    composed, decomposed = "Caf\u00e9 close", "Cafe\u0301 close"
    assert job_hash_seed(composed) == job_hash_seed(decomposed) == job_hash_seed("CAF\u00c9 CLOSE")
    assert job_hash_seed("GL close") != job_hash_seed("GL close 2")


@pytest.mark.parametrize(
    ("expression", "check"),
    [
        ("H(0-29) 2 * * *", lambda f: f[0] in range(30)),
        ("H/15 * * * *", lambda f: len(f[0]) == 4 and f[0][1] - f[0][0] == 15 and f[0][0] < 15),
        ("0 H(22-23) * * *", lambda f: f[1] in (22, 23)),
        ("0 0 H * *", lambda f: f[2] in range(1, 29)),  # bare H in day-of-month: 1-28, every month fires
        ("0 0 1 H *", lambda f: f[3] in range(1, 13)),
        ("0 0 * * H", lambda f: f[4] in range(7)),
        ("H 0 0 ? * H", lambda f: f[0] in range(60) and f[5] in range(1, 8)),  # Quartz: seconds, days from 1
        ("0 0 0 1 1 ? H(2030-2040)", lambda f: f[6] in range(2030, 2041)),
    ],
)
def test_h_forms_expand_to_plain_values_in_range(expression: str, check: object) -> None:
    for name in ("erp nightly", "gl close", "usage import", "dunning"):
        schedule = CronSchedule.parse(expression, seed=job_hash_seed(name))
        values = [_values(part) for part in schedule.expanded.split()]
        assert callable(check) and check(values), (name, schedule.expanded)
        assert "H" not in schedule.expanded


def _values(part: str) -> object:
    if part in ("*", "?"):
        return part
    numbers = [int(p) for p in part.split(",")]
    return numbers[0] if len(numbers) == 1 else numbers


def test_without_h_the_expanded_expression_is_the_expression() -> None:
    assert CronSchedule.parse("@daily", seed="x").expanded == "@daily"
    assert CronSchedule.parse("30 1 * * MON", seed="x").expanded == "30 1 * * MON"


@pytest.mark.parametrize(
    ("expression", "seed", "fragment"),
    [
        ("H 2 * * *", None, "minute field 'H': 'H' is spread by the job's name"),
        ("H(30-10) * * * *", "x", "minute field 'H(30-10)': the range must run upwards within 0-59"),
        ("H(0-99) * * * *", "x", "the range must run upwards within 0-59"),
        ("0 H(5-5) * * *", "x", "hour field 'H(5-5)': the range must run upwards"),
        ("H/0 * * * *", "x", "minute field 'H/0': the step must be at least 1"),
        ("H,5 * * * *", "x", "'H' must be the whole field"),
        ("HH * * * *", "x", "minute field: cannot parse 'HH'"),
        ("H(MON-FRI) * * * *", "x", "cannot parse 'H(MON-FRI)'"),
        ("R 2 * * *", "x", "'R' (random) is not supported"),
    ],
)
def test_bad_h_is_refused_saying_what_is_wrong(expression: str, seed: str | None, fragment: str) -> None:
    with pytest.raises(InvalidCron) as caught:
        CronSchedule.parse(expression, seed=seed)
    assert fragment in caught.value.message
    assert caught.value.details["cron"] == expression
