"""A beat tick turns due jobs into exactly one run per tick, by misfire and overlap policy."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from beat_fake_types import FakeJobType
from beat_helpers import SwitchableDispatcher, count_runs, events_of, job_row, metric, run_row, runs_of
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from beat.service import Beat
from beat.tables import JOBS
from scheduler.clock import FrozenClock
from scheduler.cron import CronSchedule
from scheduler.cron_hash import job_hash_seed
from scheduler.dispatch import Phase
from scheduler.models import Job, JobRun, MisfirePolicy, OverlapPolicy, RunStatus, RunTrigger

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def at(hour: int, minute: int, second: float = 0) -> datetime:
    return datetime(2026, 6, 1, hour, minute, tzinfo=UTC) + timedelta(seconds=second)


def test_one_run_per_tick_and_next_fire_at_advances(
    beat: Beat,
    add_job: Callable[..., Job],
    factory: sessionmaker[Session],
    dispatcher: SwitchableDispatcher,
    job_type: FakeJobType,
    clock: FrozenClock,
) -> None:
    job = add_job(next_fire_at=at(12, 1), overlap_policy=OverlapPolicy.ALLOW)
    assert job.id is not None

    # Before the tick: nothing
    clock.set(at(12, 0, 30))
    assert beat.tick().created == []

    # At the tick: one CREATED run, audited, sent, and the job moves on to the next minute
    clock.set(at(12, 1, 0.2))
    result = beat.tick()
    [run] = runs_of(factory, job.id)
    assert result.created == [run.id]
    assert (run.trigger, run.status, run.scheduled_for, run.created_by) == (
        RunTrigger.SCHEDULED, RunStatus.CREATED, at(12, 1), "beat-a",
    )
    assert run.enqueued_at == clock.now()
    assert [(e.from_status, e.to_status, e.actor) for e in events_of(factory, run.id or 0)] == [
        (None, RunStatus.CREATED, "beat-a")
    ]
    assert dispatcher.drain(job_type.queue) == [(run.id, Phase.PLAN, 0)]
    advanced = job_row(factory, job.id)
    assert (advanced.next_fire_at, advanced.last_scheduled_for) == (at(12, 2), at(12, 1))
    assert result.next_fire_at == at(12, 2)

    # The same instant again: nothing new
    assert beat.tick().created == []

    # The next tick: the next run
    clock.set(at(12, 2))
    beat.tick()
    assert [r.scheduled_for for r in runs_of(factory, job.id)] == [at(12, 1), at(12, 2)]


def test_a_tick_scheduled_twice_gets_one_run(
    make_beat: Callable[..., Beat], add_job: Callable[..., Job], factory: sessionmaker[Session], clock: FrozenClock
) -> None:
    # Given a job whose tick was scheduled by one beat
    job = add_job(next_fire_at=NOON)
    assert job.id is not None
    make_beat("beat-a").tick()
    # When another beat acts on stale state (next_fire_at as before) for the same tick
    with factory() as session, session.begin():
        session.execute(update(JOBS).where(JOBS.c.id == job.id).values(next_fire_at=NOON))
    second = make_beat("beat-a").tick()
    # Then the unique ledger refuses a second run for that tick
    assert second.created == []
    assert len(runs_of(factory, job.id)) == 1
    assert job_row(factory, job.id).next_fire_at == NOON + MINUTE


def test_two_beats_ticking_the_same_instant_make_one_run(
    make_beat: Callable[..., Beat], add_job: Callable[..., Job], factory: sessionmaker[Session]
) -> None:
    jobs = [add_job(next_fire_at=NOON) for _ in range(5)]
    # Both believe they lead (same holder: the worst case the ledger must survive)
    beats = [make_beat("beat-a"), make_beat("beat-a")]
    barrier = threading.Barrier(len(beats))
    results: list[list[int]] = [[], []]

    def tick(index: int) -> None:
        barrier.wait()
        results[index] = beats[index].tick().created

    threads = [threading.Thread(target=tick, args=(n,)) for n in range(len(beats))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results[0]) + len(results[1]) == len(jobs)
    for job in jobs:
        assert [r.scheduled_for for r in runs_of(factory, job.id or 0)] == [NOON]


def test_standby_beat_schedules_nothing(
    make_beat: Callable[..., Beat], add_job: Callable[..., Job], factory: sessionmaker[Session]
) -> None:
    make_beat("beat-a").lease.ensure()
    add_job(next_fire_at=NOON)
    result = make_beat("beat-b").tick()
    assert result.leader is False
    assert count_runs(factory) == 0
    assert metric("scheduler_beat_leader") == 0


# Every-minute job, due since 11:00, beat back at 12:00:30 (the 12:00 tick is 30 s late), window 30 min:
# 31 ticks 11:00-11:30 are outside the window, 30 ticks 11:31-12:00 inside it.
MISFIRE_CASES = [
    # policy, max_catchup_runs, expected run ticks, expected missed by reason
    (MisfirePolicy.SKIP, 10, [], {"skipped": 30, "outside_catchup_window": 31}),
    (MisfirePolicy.ONCE, 10, [at(12, 0)], {"coalesced": 29, "outside_catchup_window": 31}),
    (MisfirePolicy.ALL, 10, [at(11, 51) + n * MINUTE for n in range(10)],
     {"max_catchup_runs": 20, "outside_catchup_window": 31}),
    (MisfirePolicy.ALL, 100, [at(11, 31) + n * MINUTE for n in range(30)], {"outside_catchup_window": 31}),
]


@pytest.mark.parametrize(("policy", "max_catchup_runs", "expected_ticks", "expected_missed"), MISFIRE_CASES)
def test_misfire_policy_after_downtime(
    beat: Beat,
    add_job: Callable[..., Job],
    factory: sessionmaker[Session],
    clock: FrozenClock,
    job_type: FakeJobType,
    caplog: pytest.LogCaptureFixture,
    policy: str,
    max_catchup_runs: int,
    expected_ticks: list[datetime],
    expected_missed: dict[str, int],
) -> None:
    job = add_job(
        next_fire_at=at(11, 0),
        misfire_policy=policy,
        catchup_window=1800,
        max_catchup_runs=max_catchup_runs,
        overlap_policy=OverlapPolicy.ALLOW,
    )
    before = {reason: metric("scheduler_missed_ticks_total", job_type=job_type.name, reason=reason)
              for reason in expected_missed}
    clock.set(at(12, 0, 30))

    with caplog.at_level(logging.INFO, logger="beat"):
        result = beat.tick()

    assert [r.scheduled_for for r in runs_of(factory, job.id or 0)] == expected_ticks
    assert result.missed == expected_missed
    for reason, count in expected_missed.items():
        after = metric("scheduler_missed_ticks_total", job_type=job_type.name, reason=reason)
        assert after - before[reason] == count
        # never silent: each reason is logged with the job id and a tick
        assert any(f"job {job.id} " in m and reason in m and "2026-06-01T" in m for m in caplog.messages)
    assert job_row(factory, job.id or 0).next_fire_at == at(12, 1)


@pytest.mark.parametrize("policy", [MisfirePolicy.SKIP, MisfirePolicy.ONCE, MisfirePolicy.ALL])
def test_an_on_time_tick_runs_under_every_policy(
    beat: Beat, add_job: Callable[..., Job], factory: sessionmaker[Session], clock: FrozenClock, policy: str
) -> None:
    job = add_job(next_fire_at=at(12, 0), misfire_policy=policy, catchup_window=0)
    clock.set(at(12, 0, 3))  # within the grace of a few seconds
    result = beat.tick()
    assert [r.scheduled_for for r in runs_of(factory, job.id or 0)] == [at(12, 0)]
    assert result.missed == {}


def test_job_years_behind_on_an_every_second_cron_does_not_hang_the_tick(
    beat: Beat, add_job: Callable[..., Job], factory: sessionmaker[Session], clock: FrozenClock
) -> None:
    job = add_job(next_fire_at=NOON - timedelta(days=5 * 365), cron="* * * * * ?", misfire_policy=MisfirePolicy.ALL,
                  catchup_window=10 * 365 * 86400, max_catchup_runs=3, overlap_policy=OverlapPolicy.ALLOW)
    clock.set(NOON)
    result = beat.tick()
    assert [r.scheduled_for for r in runs_of(factory, job.id or 0)] == [NOON - timedelta(seconds=2 - n)
                                                                         for n in range(3)]
    assert result.missed["max_catchup_runs"] >= 9_997  # a lower bound: the rest was not enumerated
    assert job_row(factory, job.id or 0).next_fire_at == NOON + timedelta(seconds=1)


def test_overlap_skip_refuses_a_run_while_one_is_active(
    beat: Beat,
    add_job: Callable[..., Job],
    add_run: Callable[..., JobRun],
    factory: sessionmaker[Session],
    clock: FrozenClock,
    job_type: FakeJobType,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = add_job(next_fire_at=NOON, overlap_policy=OverlapPolicy.SKIP)
    active = add_run(job, status=RunStatus.PROCESSING, heartbeat_at=NOON)
    before = metric("scheduler_missed_ticks_total", job_type=job_type.name, reason="overlap")

    with caplog.at_level(logging.INFO, logger="beat"):
        result = beat.tick()

    assert result.created == [] and result.missed == {"overlap": 1}
    assert metric("scheduler_missed_ticks_total", job_type=job_type.name, reason="overlap") == before + 1
    assert any(f"job {job.id} " in m and "overlap" in m for m in caplog.messages)
    # Once the active run is done, the next tick runs
    with factory() as session, session.begin():
        session.execute(update(JobRun).where(JobRun.id == active.id).values(status=RunStatus.COMPLETED))  # type: ignore[arg-type]
    clock.advance(MINUTE)
    assert len(beat.tick().created) == 1


def test_overlap_buffer_one_keeps_one_waiting_run_unsent_until_the_running_one_ends(
    beat: Beat,
    add_job: Callable[..., Job],
    add_run: Callable[..., JobRun],
    factory: sessionmaker[Session],
    clock: FrozenClock,
    dispatcher: SwitchableDispatcher,
    job_type: FakeJobType,
) -> None:
    job = add_job(next_fire_at=NOON, overlap_policy=OverlapPolicy.BUFFER_ONE)
    running = add_run(job, status=RunStatus.PROCESSING, heartbeat_at=NOON)

    # One run buffered: created, not sent while another runs
    [buffered] = beat.tick().created
    assert run_row(factory, buffered).enqueued_at is None
    # The next tick finds one waiting: refused
    clock.advance(MINUTE)
    assert beat.tick().missed == {"overlap": 1}
    assert buffered not in [run_id for run_id, _, _ in dispatcher.queued(job_type.queue)]
    # The running run ends: the outbox sends the buffered one
    with factory() as session, session.begin():
        session.execute(update(JobRun).where(JobRun.id == running.id).values(status=RunStatus.COMPLETED))  # type: ignore[arg-type]
    clock.advance(timedelta(seconds=3))
    assert beat.tick().resent == 1
    assert [s for s in dispatcher.drain(job_type.queue) if s[0] == buffered] == [(buffered, Phase.PLAN, 0)]
    assert len(runs_of(factory, job.id or 0)) == 2


def test_overlap_allow_always_runs(
    beat: Beat, add_job: Callable[..., Job], add_run: Callable[..., JobRun], factory: sessionmaker[Session]
) -> None:
    job = add_job(next_fire_at=NOON, overlap_policy=OverlapPolicy.ALLOW)
    add_run(job, status=RunStatus.PROCESSING, heartbeat_at=NOON)
    add_run(job, status=RunStatus.CREATED)
    assert len(beat.tick().created) == 1
    assert len(runs_of(factory, job.id or 0)) == 3


def test_paused_and_unknown_type_jobs_do_not_fire(
    beat: Beat, add_job: Callable[..., Job], factory: sessionmaker[Session]
) -> None:
    add_job(next_fire_at=NOON, status="PAUSED")
    with factory() as session:
        session.add(Job(name="other type", job_type="not_installed", cron="* * * * *", next_fire_at=NOON))
        session.commit()
    result = beat.tick()
    assert result.due_jobs == 0
    assert count_runs(factory) == 0


def test_full_batch_asks_for_another_tick(
    make_beat: Callable[..., Beat], add_job: Callable[..., Job], factory: sessionmaker[Session],
    dispatcher: SwitchableDispatcher, job_type: FakeJobType, clock: FrozenClock,
) -> None:
    jobs = [add_job(next_fire_at=NOON) for _ in range(3)]
    beat = make_beat(batch_size=2)
    first = beat.tick()
    assert (first.due_jobs, first.more_due, beat.sleep_seconds(first)) == (2, True, 0.0)
    second = beat.tick()
    assert (second.due_jobs, second.more_due) == (1, False)
    assert count_runs(factory) == 3
    # Every run is sent once (a batch's plan steps go to Redis together) and every job moved on
    runs = [run for job in jobs for run in runs_of(factory, job.id or 0)]
    assert sorted(dispatcher.drain(job_type.queue)) == sorted((run.id, Phase.PLAN, 0) for run in runs)
    assert [run.enqueued_at for run in runs] == [clock.now()] * 3
    assert [(job_row(factory, job.id or 0).next_fire_at, job_row(factory, job.id or 0).last_scheduled_for)
            for job in jobs] == [(NOON + MINUTE, NOON)] * 3


def test_a_hashed_job_fires_at_the_minute_its_name_spreads_it_to(
    beat: Beat, add_job: Callable[..., Job], factory: sessionmaker[Session], clock: FrozenClock
) -> None:
    # Given an hourly job "at a minute of its own" (H), due at the minute its name hashes to
    minute = int(CronSchedule.parse("H * * * *", seed=job_hash_seed("Usage import EU")).expanded.split()[0])
    job = add_job(name="Usage import EU", cron="H * * * *", next_fire_at=at(12, minute))
    assert job.id is not None

    # When beat ticks then
    clock.set(at(12, minute, 0.5))
    beat.tick()

    # Then the run is for that minute and the job moves on to the same minute of the next hour
    assert [r.scheduled_for for r in runs_of(factory, job.id)] == [at(12, minute)]
    assert job_row(factory, job.id).next_fire_at == at(13, minute)
