"""``scheduler worker``: run a worker pool by exec-ing the ``dramatiq`` CLI on :mod:`workers.runtime.actors`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scheduler.dispatch import SCHEDULER_QUEUE, redis_url
from scheduler.errors import InvalidInput
from scheduler.jobtypes import load_registry
from scheduler.settings import Settings
from workers.runtime.metrics import prepare_environment


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that gives a child process these settings (``SCHEDULER_*``)."""
    env = dict(os.environ if base is None else base)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        key = f"SCHEDULER_{name.upper()}"
        env[key] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    env["SCHEDULER_DATA_DIR"] = str(Path(settings.data_dir).resolve())
    env["SCHEDULER_DATABASE_URL"] = settings.resolved_database_url
    env["SCHEDULER_BILLING_DATABASE_URL"] = settings.resolved_billing_database_url
    return env


def worker_queues(settings: Settings, queues: Sequence[str] | None) -> list[str]:
    """The queues to consume: those named, or every job type's plus ``scheduler``; unknown names are refused."""
    known = [*load_registry(settings).queues(), SCHEDULER_QUEUE]
    if not queues:
        return known
    unknown = sorted(set(queues) - set(known))
    if unknown:
        raise InvalidInput(
            f"unknown queue(s) {', '.join(unknown)}; known queues: {', '.join(known)}",
            details={"queues": unknown, "known": known},
        )
    return list(dict.fromkeys(queues))


def worker_command(
    queues: Sequence[str], processes: int, threads: int, *, shutdown_seconds: float = 600.0
) -> list[str]:
    """Dramatiq's command line (through :mod:`workers.runtime.pool`, which sets up our logging).

    On SIGTERM each worker process finishes the steps in hand for up to ``shutdown_seconds``
    (``SCHEDULER_WORKER_SHUTDOWN_SECONDS``) and puts the messages it had prefetched back on the queue.
    """
    return [
        sys.executable, "-m", "workers.runtime.pool", "workers.runtime.actors", "--skip-logging",
        "--processes", str(processes), "--threads", str(threads),
        "--worker-shutdown-timeout", str(max(1, int(shutdown_seconds * 1000))), "--queues", *queues,
    ]


def run_worker(
    settings: Settings,
    *,
    queues: Sequence[str] | None = None,
    processes: int | None = None,
    threads: int | None = None,
) -> Any:
    """Replace this process with ``dramatiq workers.runtime.actors`` on ``queues``; returns only on error.

    Without a Redis URL it refuses (:class:`~scheduler.errors.MissingSetting`): a worker never embeds a Redis.
    """
    chosen = worker_queues(settings, queues)
    processes = processes or settings.worker_processes
    threads = threads or settings.worker_threads
    # The pool's processes (and its health answer, which counts them) read these settings.
    resolved = settings.model_copy(update={"redis_url": redis_url(settings, process="a worker"),
                                           "worker_processes": processes, "worker_threads": threads,
                                           "log_service": settings.log_service or f"worker:{','.join(chosen)}"})
    argv = worker_command(chosen, processes, threads, shutdown_seconds=settings.worker_shutdown_seconds)
    # The pool keeps this process's id: it names the pool's metrics directory.
    env = prepare_environment(resolved, settings_env(resolved), pool_id=os.getpid())
    os.execve(sys.executable, argv, env)
