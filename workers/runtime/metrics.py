"""A worker pool's Prometheus endpoint: the metrics of all its processes, ours and Dramatiq's, on one port.

Dramatiq runs a pool as several processes, so their values meet in Prometheus's multiprocess mode:
each process writes them under ``PROMETHEUS_MULTIPROC_DIR`` and one extra process of the pool (a
Dramatiq *fork*) serves them all on ``SCHEDULER_WORKER_METRICS_PORT``. ``prometheus_client`` picks
its storage when first imported, so the directory is in the environment before the pool starts:
:func:`prepare_environment` puts it there for ``scheduler worker``; a pool started another way gets
the endpoint only when its environment names a directory itself.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from dramatiq.middleware import Middleware

from scheduler.metrics import STATUS_LAG
from scheduler.metrics_dir import MULTIPROC_ENV, fresh_multiprocess_dir
from scheduler.settings import Settings
from workers.runtime.liveness import ProcessPulse, pool_liveness

log = logging.getLogger(__name__)

ALIVE_DIR = "alive"
"""Under the multiprocess directory: one file per live worker process (:mod:`workers.runtime.liveness`)."""
DRAMATIQ_DIR_ENV = "dramatiq_prom_db"
"""Where Dramatiq's own Prometheus middleware keeps its values (read when the middleware is imported)."""


def prepare_environment(settings: Settings, env: dict[str, str], pool_id: int) -> dict[str, str]:
    """``env`` with a fresh multiprocess directory for the pool ``pool_id`` (when its endpoint is on).

    The directory is ``<data dir>/metrics/worker-<pool_id>``; those of pools that are gone are removed.
    An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is kept as it is (created when missing).
    """
    if not settings.worker_metrics_port:
        return env
    if not env.get(MULTIPROC_ENV):
        env = {**env, MULTIPROC_ENV: str(fresh_multiprocess_dir(settings.data_dir, "worker", pool_id))}
    else:
        Path(env[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)
    return {**env, DRAMATIQ_DIR_ENV: env[MULTIPROC_ENV]}


class StatusLag(Middleware):
    """``scheduler_status_lag_seconds``: a run step's message sent (its Dramatiq timestamp) to the step
    done, its status written, by the job type of the step's queue."""

    def __init__(self, job_types_by_queue: dict[str, str]) -> None:
        self.job_types_by_queue = job_types_by_queue

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: Any = None) -> None:
        job_type = self.job_types_by_queue.get(message.queue_name)
        if job_type is not None and exception is None:
            STATUS_LAG.labels(job_type=job_type).observe(max(0.0, time.time() - message.message_timestamp / 1000))


def middleware(settings: Settings, directory: str | None) -> list[Any]:
    """The pool's metrics middleware, when its endpoint is on and its processes write multiprocess values in
    ``directory`` (the process's ``PROMETHEUS_MULTIPROC_DIR``, which :func:`prepare_environment` set)."""
    if not settings.worker_metrics_port or not directory:
        return []
    os.environ.setdefault(DRAMATIQ_DIR_ENV, directory)  # Dramatiq's middleware reads it when imported
    from dramatiq.middleware.prometheus import Prometheus

    class PoolMetrics(Prometheus):
        """Dramatiq's message metrics; the endpoint is :func:`serve`, which knows our settings.

        Message durations are ``dramatiq_message_duration_seconds``: Prometheus (and ``promtool check
        metrics``) wants base units, not Dramatiq's own ``…_milliseconds``.
        """

        @property
        def forks(self) -> list[Any]:
            return [serve]

        def after_process_boot(self, broker: Any) -> None:
            super().after_process_boot(broker)  # type: ignore[no-untyped-call]
            self.message_durations = _InSeconds()  # type: ignore[assignment]

    return [PoolMetrics(), ProcessPulse(Path(directory) / ALIVE_DIR)]


class _InSeconds:
    """Takes Dramatiq's message durations in milliseconds and records them in seconds."""

    def __init__(self) -> None:
        from prometheus_client import Histogram

        self.histogram = Histogram(
            "dramatiq_message_duration_seconds", "The time spent processing messages.", ["queue_name", "actor_name"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 600, 900), registry=None,
        )

    def labels(self, *labels: str) -> _InSeconds.Child:
        return _InSeconds.Child(self.histogram.labels(*labels))

    class Child:
        def __init__(self, child: Any) -> None:
            self.child = child

        def observe(self, milliseconds: float) -> None:
            self.child.observe(milliseconds / 1000)


def serve() -> int:
    """A fork process of the pool: serve every process's metrics and the pool's health until the pool stops.

    ``/healthz``: the pool's processes and threads are alive; ``/readyz``: the database and Redis answer.
    Dramatiq starts it in a process of its own by its import path, without arguments: it is that process's
    entry point, so it reads the settings (once), as ``workers.runtime.actors`` does for the worker processes.
    """
    from scheduler.health import Readiness, redis_probe
    from scheduler.logs import configure_logging
    from scheduler.metrics import serve_metrics

    settings = Settings()
    configure_logging(settings, service="worker")
    parent = os.getppid()
    started = time.monotonic()
    directory = Path(os.environ[MULTIPROC_ENV]) / ALIVE_DIR
    readiness = Readiness.of_urls(settings.resolved_database_url, str(settings.redis_url), settings.redactor(),
                                  settings)
    broker_check = redis_probe(str(settings.redis_url), settings)

    def before_scrape() -> None:
        with suppress(Exception):
            broker_check()  # sets scheduler_broker_up

    server = serve_metrics(
        settings.metrics_host, settings.worker_metrics_port, what="worker pool",
        liveness=lambda: pool_liveness(directory, processes=settings.worker_processes, parent=parent,
                                       started=started),
        readiness=readiness.answer, before_scrape=before_scrape,
    )
    if server is None:
        return 0
    # Dramatiq stops its forks with SIGTERM; a pool killed outright would leave this process orphaned.
    while os.getppid() == parent:
        time.sleep(1.0)
    server.shutdown()
    return 0
