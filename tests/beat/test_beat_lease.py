"""The leader lease: one leader at a time, take-over after expiry with a higher epoch, fencing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from beat_helpers import count_runs, job_row
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from beat.lease import LeaderLease
from beat.service import Beat
from beat.tables import LEASES
from scheduler.clock import FrozenClock
from scheduler.errors import StaleLeader
from scheduler.models import Job, JobRun, RunStatus, RunTrigger


def lease_row(factory: sessionmaker[Session]) -> tuple[str, int]:
    with factory() as session:
        holder, epoch = session.execute(select(LEASES.c.holder, LEASES.c.epoch)).one()
        return holder, epoch


def make_lease(factory: sessionmaker[Session], clock: FrozenClock, holder: str) -> LeaderLease:
    return LeaderLease(factory, holder=holder, lease_seconds=10, clock=clock)


def test_second_beat_is_standby_while_first_holds_a_fresh_lease(
    factory: sessionmaker[Session], clock: FrozenClock
) -> None:
    a, b = make_lease(factory, clock, "beat-a"), make_lease(factory, clock, "beat-b")

    assert a.ensure() is True
    assert a.epoch == 1
    assert b.ensure() is False
    clock.advance(timedelta(seconds=9))
    assert a.ensure() is True  # renewed at half the lease length
    clock.advance(timedelta(seconds=9))
    assert b.ensure() is False  # still fresh thanks to the renewal
    assert a.ensure() is True
    assert lease_row(factory) == ("beat-a", 1)  # renewals keep the epoch


def test_fresh_lease_is_not_written_again_before_half_its_length(
    factory: sessionmaker[Session], clock: FrozenClock
) -> None:
    a = make_lease(factory, clock, "beat-a")
    a.ensure()
    first = a.state
    clock.advance(timedelta(seconds=4))
    a.ensure()
    assert a.state == first
    clock.advance(timedelta(seconds=1))
    a.ensure()
    assert a.state is not None and first is not None
    assert a.state.expires_at == first.expires_at + timedelta(seconds=5)


def test_standby_takes_over_after_expiry_with_a_higher_epoch(
    factory: sessionmaker[Session], clock: FrozenClock
) -> None:
    a, b = make_lease(factory, clock, "beat-a"), make_lease(factory, clock, "beat-b")
    a.ensure()

    # Given beat-a stops renewing, when its lease expires, then beat-b takes over with epoch 2
    clock.advance(timedelta(seconds=10, microseconds=1))
    assert b.ensure() is True
    assert b.epoch == 2
    assert lease_row(factory) == ("beat-b", 2)
    # and beat-a, back, is a standby
    assert a.ensure() is False
    assert a.epoch is None


def test_release_lets_a_standby_take_over_at_once(factory: sessionmaker[Session], clock: FrozenClock) -> None:
    a, b = make_lease(factory, clock, "beat-a"), make_lease(factory, clock, "beat-b")
    a.ensure()
    a.release()
    assert b.ensure() is True
    assert b.epoch == 2


def test_ex_leader_write_is_refused_and_rolled_back(factory: sessionmaker[Session], clock: FrozenClock) -> None:
    a, b = make_lease(factory, clock, "beat-a"), make_lease(factory, clock, "beat-b")
    a.ensure()
    clock.advance(timedelta(seconds=11))
    b.ensure()

    with pytest.raises(StaleLeader), factory() as session, session.begin():
        session.add(Job(name="written by a stale leader", job_type="x", cron="* * * * *"))
        session.flush()
        a.fence(session)
    with factory() as session:
        assert session.scalars(select(Job)).all() == []
    assert lease_row(factory) == ("beat-b", 2)


def test_only_one_of_racing_beats_acquires(factory: sessionmaker[Session], clock: FrozenClock) -> None:
    leases = [make_lease(factory, clock, f"beat-{n}") for n in range(6)]
    barrier = threading.Barrier(len(leases))
    won: list[bool] = [False] * len(leases)

    def race(index: int) -> None:
        barrier.wait()
        won[index] = leases[index].ensure()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(leases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(won) == 1
    assert lease_row(factory) == (f"beat-{won.index(True)}", 1)


def test_paused_ex_leader_tick_writes_nothing(
    make_beat: Callable[..., Beat],
    add_job: Callable[..., Job],
    factory: sessionmaker[Session],
    clock: FrozenClock,
) -> None:
    # Given beat-a leads and is then paused (its own clock stops) just before it writes
    paused_clock = FrozenClock(clock.now())
    a = make_beat("beat-a", beat_clock=paused_clock)
    b = make_beat("beat-b")
    assert a.tick().leader
    paused_clock.advance(timedelta(seconds=2))
    job = add_job(next_fire_at=paused_clock.now() - timedelta(seconds=1))
    # while beat-b takes the expired lease over
    clock.advance(timedelta(seconds=11))
    assert b.lease.ensure()

    # When beat-a resumes with a lease it still believes fresh
    result = a.tick()

    # Then its write is refused: no run, the job untouched, and it knows it is not the leader
    assert result.leader is False
    assert result.created == []
    assert count_runs(factory) == 0
    assert job_row(factory, job.id or 0).next_fire_at == job.next_fire_at
    assert a.lease.epoch is None


def test_run_written_by_current_leader_is_kept(
    make_beat: Callable[..., Beat], add_job: Callable[..., Job], factory: sessionmaker[Session], clock: FrozenClock
) -> None:
    a = make_beat("beat-a")
    job = add_job(next_fire_at=clock.now())
    result = a.tick()
    assert result.leader and result.epoch == 1
    with factory() as session:
        run = session.scalars(select(JobRun)).one()
    assert (run.job_id, run.trigger, run.status, run.created_by) == (job.id, RunTrigger.SCHEDULED, RunStatus.CREATED,
                                                                      "beat-a")
