"""Prometheus metrics shared by every process, and how beat and worker pools serve them with their health.

The API serves ``/metrics`` on its own port; beat serves its metrics on ``SCHEDULER_BEAT_METRICS_PORT``;
a worker pool serves the metrics of all its processes (ours and Dramatiq's) on
``SCHEDULER_WORKER_METRICS_PORT`` in Prometheus's multiprocess mode: every process writes its values
under ``PROMETHEUS_MULTIPROC_DIR``, which must be set before ``prometheus_client`` is first imported
(``scheduler worker`` prepares it; see :mod:`workers.runtime.metrics`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from scheduler.lifecycle import TERMINAL
from scheduler.metrics_dir import MULTIPROC_ENV
from scheduler.models import ItemOutcome, RunTrigger

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
STATUS_LAG = Histogram(
    "scheduler_status_lag_seconds",
    "Time from a run step's message being sent to the status it writes being committed.",
    ["job_type"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
)
MISSED_TICKS = Counter(
    "scheduler_missed_ticks_total", "Ticks not run: skipped, coalesced or refused by overlap.", ["job_type", "reason"]
)
ITEMS_TOTAL = Counter("scheduler_items_total", "Run items by final outcome.", ["job_type", "outcome"])
REFUSED_REQUESTS = Counter(
    "scheduler_refused_requests_total", "request_run messages refused (unknown job, invalid properties …).",
    ["reason"],
)
BROKER_UP = Gauge(
    "scheduler_broker_up", "1 when this process reached Redis at its last attempt.",
    multiprocess_mode="livemostrecent",
)


def start_at_zero(job_types: Iterable[str], *, items: bool = False, missed_reasons: Iterable[str] = ()) -> None:
    """Export every labelled counter this process increments at 0 from its start.

    A counter that appears only at its first increment shows no ``increase()`` for it: the first failure
    after a restart would go unalerted. Runs by job type, trigger and terminal status always; items by
    outcome (workers) and missed ticks by reason (beat) when asked.
    """
    reasons = list(missed_reasons)
    for job_type in job_types:
        for trigger in RunTrigger:
            for status in sorted(TERMINAL):
                RUNS_TOTAL.labels(job_type=job_type, trigger=trigger.value, status=status.value)
        if items:
            for outcome in (ItemOutcome.OK, ItemOutcome.ERROR, ItemOutcome.SKIPPED):
                ITEMS_TOTAL.labels(job_type=job_type, outcome=outcome.value)
        for reason in reasons:
            MISSED_TICKS.labels(job_type=job_type, reason=reason)


def exposition_registry() -> CollectorRegistry:
    """What to expose: every process's values in multiprocess mode, else this process's own."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


Probe = Callable[[], tuple[int, dict[str, Any]]]
"""A health answer: an HTTP status and a JSON body (see :mod:`scheduler.health`)."""


def serve_metrics(
    host: str,
    port: int,
    *,
    what: str,
    liveness: Probe | None = None,
    readiness: Probe | None = None,
    before_scrape: Callable[[], None] | None = None,
) -> ThreadingHTTPServer | None:
    """Serve ``/metrics`` (:func:`exposition_registry`), ``/healthz`` and ``/readyz`` on ``host:port``.

    From a daemon thread. Returns the server, or ``None`` when ``port`` is 0 or taken (one warning line:
    a process without its endpoint still does its work). ``before_scrape`` refreshes what a scrape shows.
    """
    if not port:
        return None
    registry = exposition_registry()
    probes = {"/healthz": liveness or _alive, "/readyz": readiness or _alive}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                if before_scrape is not None:
                    before_scrape()
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in probes:
                status, body = probes[path]()
                self._send(status, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, json.dumps({"code": "not_found", "message": "no such path"}).encode(),
                           "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the process's own lines

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        log.warning("%s metrics not served on %s:%s: %s", what, host, port, exc)
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"{what} metrics", daemon=True).start()
    log.info("%s metrics on http://%s:%s/metrics (health: /healthz, /readyz)", what, host, port)
    return server


def _alive() -> tuple[int, dict[str, Any]]:
    return 200, {"status": "ok"}
