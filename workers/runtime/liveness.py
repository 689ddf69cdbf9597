"""A worker pool's liveness: every worker process of the pool is alive and its consumer and worker threads run.

Each worker process touches a file named by its pid under ``<multiprocess dir>/alive`` every few seconds
while all its Dramatiq threads are alive (:class:`ProcessPulse`). The pool's metrics process (a Dramatiq
fork) answers ``/healthz`` from those files (:func:`pool_liveness`): alive while its parent (the pool's
main process) lives and as many processes as the pool runs have touched their file lately. A pool still
booting gets :data:`STARTUP_GRACE` to show its processes.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from dramatiq.middleware import Middleware

from scheduler.metrics_dir import process_alive

PULSE_EVERY = 5.0
"""Seconds between two touches of a worker process's file."""
STALE_AFTER = 4 * PULSE_EVERY
"""A file older than this belongs to a process that is gone or whose threads died."""
STARTUP_GRACE = 90.0
"""Seconds a pool may take to boot its worker processes before missing ones make it dead."""


def threads_alive(worker: Any) -> bool:
    """Whether every consumer thread and worker thread of a Dramatiq worker is running."""
    threads = [*worker.consumers.values(), *worker.workers]
    return bool(threads) and all(thread.is_alive() for thread in threads)


class ProcessPulse(Middleware):
    """Touches ``<directory>/<pid>`` every :data:`PULSE_EVERY` seconds while this process's threads run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stop = threading.Event()

    @property
    def path(self) -> Path:
        return self.directory / str(os.getpid())

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=self._pulse, args=(worker,), name="pool pulse", daemon=True).start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self.stop.set()
        self.path.unlink(missing_ok=True)

    def _pulse(self, worker: Any) -> None:
        while not self.stop.is_set():
            if threads_alive(worker):
                self.path.touch()
            self.stop.wait(PULSE_EVERY)


def pool_liveness(directory: Path, *, processes: int, parent: int, started: float) -> tuple[int, dict[str, Any]]:
    """The ``/healthz`` answer of a pool whose main process is ``parent`` and that runs ``processes``."""
    if os.getppid() != parent:
        return 503, {"status": "dead", "detail": "the pool's main process is gone"}
    now = time.time()
    alive = sorted(
        int(path.name) for path in (directory.iterdir() if directory.is_dir() else [])
        if path.name.isdigit() and now - path.stat().st_mtime < STALE_AFTER and process_alive(int(path.name))
    )
    body: dict[str, Any] = {"processes": len(alive), "expected": processes}
    if len(alive) >= processes:
        return 200, {"status": "ok", **body}
    if time.monotonic() - started < STARTUP_GRACE:
        return 200, {"status": "starting", **body}
    return 503, {"status": "dead", "detail": f"{processes - len(alive)} worker process(es) gone or stuck", **body}
