"""Prometheus metrics shared by every process (workers export them in multiprocess mode)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS_TOTAL = Counter(
    "scheduler_runs_total", "Runs that reached a terminal status.", ["job_type", "trigger", "status"]
)
RUN_DURATION = Histogram(
    "scheduler_run_duration_seconds",
    "Time from a run's start to its terminal status.",
    ["job_type"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
FIRE_LAG = Histogram(
    "scheduler_fire_lag_seconds",
    "Time from a scheduled tick to its run being sent.",
    ["job_type"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
START_LAG = Histogram(
    "scheduler_start_lag_seconds",
    "Time from a scheduled tick to its run being started by a worker.",
    ["job_type"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
MISSED_TICKS = Counter(
    "scheduler_missed_ticks_total", "Ticks not run: skipped, coalesced or refused by overlap.", ["job_type", "reason"]
)
RUNS_IN_STATUS = Gauge(
    "scheduler_runs_in_status", "Runs currently in each non-terminal status.", ["job_type", "status"],
    multiprocess_mode="livemax",
)
ITEMS_TOTAL = Counter("scheduler_items_total", "Run items by final outcome.", ["job_type", "outcome"])
BEAT_LEADER = Gauge(
    "scheduler_beat_leader", "1 while this beat holds the leader lease.", multiprocess_mode="livemax"
)
BEAT_TICK = Histogram(
    "scheduler_beat_tick_seconds", "Duration of one beat tick.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
RECLAIMED_RUNS = Counter("scheduler_reclaimed_runs_total", "Stale runs whose unfinished steps beat re-sent.")
RESENT_RUNS = Counter("scheduler_resent_runs_total", "Created runs beat sent again from the outbox.")
JOB_LAST_SUCCESS = Gauge(
    "scheduler_job_last_success_timestamp_seconds",
    "Unix time of the job's last COMPLETED run.",
    ["job"],
    multiprocess_mode="max",
)
