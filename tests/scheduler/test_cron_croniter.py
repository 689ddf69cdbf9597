"""Our cron engine against croniter, wherever the two dialects agree (DESIGN.md section 5).

Two sources: the vectors croniter's own test suite computes (data/croniter_vectors.json) and
thousands of generated expressions in three zones, croniter run live. A disagreement passes only
when a deliberate difference explains it; each one is a row of the table in docs/cron.md.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

import pytest
from cron_oracle import (
    DIFFERENCES,
    ZONES,
    Case,
    croniter_fires,
    explain,
    load_vectors,
    our_dialect,
    random_after,
    random_expression,
)

from scheduler.cron import CronSchedule
from scheduler.errors import InvalidCron

DOCS = Path(__file__).parents[2] / "docs" / "cron.md"
GENERATED = 3000
HASHED = 300
FIRES = 3


@dataclass
class Tally:
    """What a comparison found: agreements, explained differences by key, the rest."""

    compared: int = 0
    agreed: int = 0
    explained: Counter[str] = field(default_factory=Counter)
    unexplained: list[str] = field(default_factory=list)
    outside: Counter[str] = field(default_factory=Counter)

    def judge(self, case: Case, theirs: list[datetime], ours: list[datetime]) -> None:
        """Compare up to the first fire where the two part (later fires follow from it)."""
        self.compared += 1
        for index, fire in enumerate(theirs):
            mine = ours[index] if index < len(ours) else None
            if mine == fire:
                continue
            after = case.after if index == 0 else theirs[index - 1]
            parted = Case(expression=case.expression, theirs_expression=case.theirs_expression, zone=case.zone,
                          hash_id=case.hash_id, after=after, ours=mine, theirs=fire)
            key = explain(parted)
            if key is None:
                self.unexplained.append(
                    f"{case.theirs_expression!r} in {case.zone} after {after.isoformat()}: croniter "
                    f"{fire.isoformat()}, ours {mine.isoformat() if mine else 'none'}")
            else:
                self.explained[key] += 1
            return
        self.agreed += 1


def _ours(expression: str, zone: str, after: datetime, count: int, seed: str | None) -> list[datetime]:
    return [fire.utc for fire in CronSchedule.parse(expression, zone, seed=seed).next_fires(after, count)]


@cache
def vector_tally() -> Tally:
    tally = Tally()
    for vector in load_vectors():
        expression, why = our_dialect(vector)
        if expression is None:
            tally.outside[why] += 1
            continue
        zone = vector.timezone or "UTC"
        try:
            ours = _ours(expression, zone, vector.after, 1, vector.hash_id)
        except InvalidCron as e:
            tally.outside[f"refused: {e.details['reason']}"] += 1
            continue
        case = Case(expression=expression, theirs_expression=vector.expression, zone=zone, hash_id=vector.hash_id,
                    after=vector.after, ours=None, theirs=vector.fire)
        tally.judge(case, [vector.fire], ours)
    return tally


@cache
def generated_tally() -> Tally:
    rng = random.Random(20260801)
    tally = Tally()
    for number in range(GENERATED + HASHED):
        hashed = number >= GENERATED
        expression = random_expression(rng, hashed=hashed)
        seed = f"job {rng.randrange(10**6)}" if hashed else None
        zone = ZONES[number % len(ZONES)]
        after = random_after(rng)
        theirs = croniter_fires(expression, zone, after, FIRES, hash_id=seed)
        if theirs is None:
            tally.outside["croniter refuses or finds no fire"] += 1
            continue
        try:
            ours = _ours(expression, zone, after, FIRES, seed)
        except InvalidCron as e:
            tally.unexplained.append(f"{expression!r}: croniter reads it, we refuse it: {e.message}")
            continue
        case = Case(expression=expression, theirs_expression=expression, zone=zone, hash_id=seed, after=after,
                    ours=None, theirs=theirs[0])
        tally.judge(case, theirs, ours)
    return tally


def test_croniters_own_vectors_agree_wherever_the_dialects_agree() -> None:
    tally = vector_tally()
    assert tally.unexplained == []
    # Most of croniter's vectors are in the shared dialect, and nearly all of those agree outright.
    assert tally.compared >= 2300
    assert tally.agreed >= 0.9 * tally.compared
    # What is outside: croniter options we do not offer, 'R' (random), Quartz day numbering.
    assert set(tally.outside) <= {
        "croniter option day_or", "croniter option expand_from_start_time", "croniter option implement_cron_bug",
        "6/7 fields restricting day-of-week (Quartz numbers days from 1, croniter from 0)",
        "refused: minute field 'R': 'R' (random) is not supported, a schedule must be reproducible; use 'H' to"
        " spread jobs",
        "refused: year field 'R(2025-2030)': 'R' (random) is not supported, a schedule must be reproducible; use"
        " 'H' to spread jobs",
    }, tally.outside


def test_generated_expressions_agree_with_croniter_in_three_zones() -> None:
    tally = generated_tally()
    assert tally.unexplained == []
    assert tally.compared >= 0.9 * (GENERATED + HASHED)
    assert tally.agreed >= 0.8 * tally.compared


def test_every_deliberate_difference_is_seen_and_in_the_docs_table() -> None:
    seen = vector_tally().explained + generated_tally().explained
    assert {d.key for d in DIFFERENCES} == set(seen), seen
    table = set(re.findall(r"^\| `([a-z-]+)` \|", DOCS.read_text(), flags=re.MULTILINE))
    assert table == {d.key for d in DIFFERENCES}


@pytest.mark.parametrize(
    ("expression", "croniter_reads", "we_read"),
    [
        # wrap-around ranges, n-L and day-of-week steps read as croniter reads them
        ("0 0 * * FRI-MON", "FRI-MON", "0 0 * * 0,1,5,6"),
        ("0 0 1 NOV-MAR *", "NOV-MAR", "0 0 1 1,2,3,11,12 *"),
        ("0 22-2 * * *", "22-2", "0 0,1,2,22,23 * * *"),
        ("0 0 20-L * *", "20-L", "0 0 20-31 * *"),
        ("0 0 * * 5/2", "5/2", "0 0 * * 5"),
        ("0 0 * * 7/2", "7/2", "0 0 * * 0,2,4,6"),
    ],
)
def test_croniter_syntax_reads_the_same(expression: str, croniter_reads: str, we_read: str) -> None:
    after = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    assert _ours(expression, "UTC", after, 20, None) == croniter_fires(expression, "UTC", after, 20)
    assert _ours(expression, "UTC", after, 20, None) == _ours(we_read, "UTC", after, 20, None)
