"""Beat's own Prometheus metrics, served by beat alone (``SCHEDULER_BEAT_METRICS_PORT``).

They have no labels, so a process that declared them would export them at zero: they live here, not
in :mod:`scheduler.metrics`, so the API and the worker pools do not report a beat they are not.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BEAT_LEADER = Gauge(
    "scheduler_beat_leader", "1 while this beat holds the leader lease.", multiprocess_mode="livemax"
)
BEAT_TICK = Histogram(
    "scheduler_beat_tick_seconds", "Duration of one beat tick.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
RECLAIMED_RUNS = Counter("scheduler_reclaimed_runs_total", "Stale runs whose unfinished steps beat re-sent.")
RESENT_RUNS = Counter("scheduler_resent_runs_total", "Created runs beat sent again from the outbox.")
