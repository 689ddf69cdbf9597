"""Cluster-wide gauges come from the leader alone, read from the database and Redis: runs in each status,
stale runs, each job's last success (so a restart loses nothing) and expected interval, queue depths
and the outbox backlog. A standby serves none, so summing over replicas counts each once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from beat_fake_types import FakeJobType
from beat_helpers import SwitchableDispatcher
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from beat.service import Beat
from scheduler.clock import FrozenClock
from scheduler.dispatch import RunStep
from scheduler.models import Job, JobRun, JobStatus, RunStatus

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(beat: Beat) -> Samples:
    registry = CollectorRegistry()
    registry.register(beat.cluster_metrics)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_leader_reads_the_cluster_figures_and_a_standby_serves_none(
    make_beat: Callable[..., Beat], add_job: Callable[..., Job], add_run: Callable[..., JobRun],
    clock: FrozenClock, dispatcher: SwitchableDispatcher, job_type: FakeJobType,
) -> None:
    now = clock.now()
    t = job_type.name
    # Given two scheduled jobs with runs in every state, one of them with two successes
    nightly = add_job(name="nightly", next_fire_at=now + timedelta(hours=3), cron="0 2 * * *")
    quarter = add_job(name="quarter-hourly", next_fire_at=now + timedelta(minutes=5), cron="*/15 * * * *")
    add_job(name="paused", next_fire_at=now, cron="0 3 * * *", status=JobStatus.PAUSED)
    for finished in (now - timedelta(days=2), now - timedelta(hours=20)):
        add_run(nightly, status=RunStatus.COMPLETED, finished_at=finished)
    add_run(nightly, status=RunStatus.FAILED, finished_at=now - timedelta(hours=1))
    add_run(quarter, status=RunStatus.CREATED, created_at=now - timedelta(seconds=70))  # never sent
    add_run(quarter, status=RunStatus.CREATED, created_at=now - timedelta(minutes=5), enqueued_at=now)
    add_run(quarter, status=RunStatus.PROCESSING, started_at=now - timedelta(minutes=10),
            heartbeat_at=now - timedelta(seconds=5))
    add_run(quarter, status=RunStatus.PROCESSING, started_at=now - timedelta(minutes=10),
            heartbeat_at=now - timedelta(minutes=2))  # stale: no heartbeat for 2 min (timeout 30 s)
    for n in range(3):
        dispatcher.send_step(job_type.queue, RunStep(run_id=n, phase="plan"))
    leader, standby = make_beat("beat-a"), make_beat("beat-b")

    # When both read them (the leader's metrics thread does every few seconds), and both tick
    leader.cluster_metrics.refresh()
    standby.cluster_metrics.refresh()
    assert leader.tick().leader and not standby.tick().leader  # a standby clears its reading at its tick

    # Then the leader serves every figure
    got = _scrape(leader)
    assert got[("scheduler_runs_in_status", (("job_type", t), ("status", "CREATED")))] == 2
    assert got[("scheduler_runs_in_status", (("job_type", t), ("status", "PROCESSING")))] == 2
    assert got[("scheduler_runs_in_status", (("job_type", t), ("status", "PREVIEW")))] == 0
    assert got[("scheduler_stale_runs", (("job_type", t),))] == 1
    last = ("scheduler_job_last_success_timestamp_seconds", (("job_name", "nightly"), ("job_type", t)))
    assert got[last] == (now - timedelta(hours=20)).timestamp()
    assert not any(name == last[0] and ("job_name", "quarter-hourly") in labels for name, labels in got)
    interval = "scheduler_job_expected_interval_seconds"
    assert got[(interval, (("job_name", "nightly"), ("job_type", t)))] == 86400
    assert got[(interval, (("job_name", "quarter-hourly"), ("job_type", t)))] == 900
    assert not any(("job_name", "paused") in labels for _, labels in got)
    assert got[("scheduler_queue_depth", (("queue", job_type.queue), ("state", "ready")))] == 3
    assert got[("scheduler_queue_depth", (("queue", job_type.queue), ("state", "dead")))] == 0
    assert got[("scheduler_queue_depth", (("queue", "scheduler"), ("state", "ready")))] == 0
    assert got[("scheduler_outbox_backlog", ())] == 1
    assert got[("scheduler_outbox_oldest_seconds", ())] == 70
    # And no label is ever called `job`, which Prometheus keeps for the scrape job
    assert all(key != "job" for _, labels in got for key, _ in labels)
    # And the standby serves nothing at all
    assert _scrape(standby) == {}

    # A run completed since is read at the next reading of the last successes (every 30 s)
    add_run(quarter, status=RunStatus.COMPLETED, finished_at=now - timedelta(minutes=1))
    leader.cluster_metrics._slow_at = 0.0
    leader.cluster_metrics.refresh()
    quarter_last = ("scheduler_job_last_success_timestamp_seconds", (("job_name", "quarter-hourly"), ("job_type", t)))
    assert _scrape(leader)[quarter_last] == (now - timedelta(minutes=1)).timestamp()
    assert _scrape(leader)[last] == got[last]

    # A beat started afresh (a restart) reads the same last success from the database
    restarted = make_beat("beat-a")
    assert restarted.tick().leader
    restarted.cluster_metrics.refresh()
    assert _scrape(restarted)[last] == got[last]
    # A leader that steps down stops serving them at once
    restarted._set_leading(False)
    assert _scrape(restarted) == {}
