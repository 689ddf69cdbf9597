"""Prometheus metrics shared by every process, and how a process serves them.

The API serves ``/metrics`` on its own port; beat serves its metrics on ``SCHEDULER_BEAT_METRICS_PORT``;
a worker pool serves the metrics of all its processes (ours and Dramatiq's) on
``SCHEDULER_WORKER_METRICS_PORT`` in Prometheus's multiprocess mode: every process writes its values
under ``PROMETHEUS_MULTIPROC_DIR``, which must be set before ``prometheus_client`` is first imported
(``scheduler worker`` prepares it; see :mod:`workers.runtime.metrics`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

log = logging.getLogger(__name__)

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
JOB_LAST_SUCCESS = Gauge(
    "scheduler_job_last_success_timestamp_seconds",
    "Unix time of the job's last COMPLETED run.",
    ["job"],
    multiprocess_mode="max",
)


def exposition_registry() -> CollectorRegistry:
    """What to expose: every process's values in multiprocess mode, else this process's own."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def serve_metrics(host: str, port: int, *, what: str) -> Any | None:
    """Serve :func:`exposition_registry` over HTTP on ``host:port`` from a daemon thread.

    Returns the server, or ``None`` when ``port`` is 0 or taken (one warning line: a process without
    its metrics endpoint still does its work).
    """
    if not port:
        return None
    try:
        server, _thread = start_http_server(port, addr=host, registry=exposition_registry())
    except OSError as exc:
        log.warning("%s metrics not served on %s:%s: %s", what, host, port, exc)
        return None
    log.info("%s metrics on http://%s:%s/metrics", what, host, port)
    return server
