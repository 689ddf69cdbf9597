"""``scheduler api``'s HTTP server: uvicorn, logging through our handler, draining on SIGTERM and exiting 0.

uvicorn stops gracefully on SIGTERM (no new connections; requests in flight finish, up to
``SCHEDULER_API_SHUTDOWN_SECONDS``) but then raises the signal again, so the process dies of it
(exit 143) and an orchestrator records a crash. Here the signal ends the server and nothing else.

With several workers (``--workers``, ``SCHEDULER_API_WORKERS``; default one per core) the main process
binds the socket, forks the worker processes, each serving the same socket with an application of its
own, passes SIGTERM/SIGINT on to them, starts a new one in place of one that dies, and exits 0 once
every worker has drained.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from fastapi import FastAPI

from scheduler.metrics_dir import MULTIPROC_ENV, fresh_multiprocess_dir
from scheduler.settings import Settings

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

AppFactory = Callable[[], FastAPI]


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose stop signals end it gracefully and are not raised again afterwards."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._stop) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        if self.should_exit:
            if signum == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: stop waiting for requests in flight
            return
        log.info("got %s: draining requests in flight, then stopping", signal.Signals(signum).name)
        self.should_exit = True


def api_workers(settings: Settings, requested: int | None = None) -> int:
    """How many API worker processes: ``--workers``, else ``SCHEDULER_API_WORKERS``, else one per core."""
    return max(1, requested or settings.api_workers or os.cpu_count() or 1)


def share_metrics(settings: Settings, workers: int) -> None:
    """With several workers, Prometheus's multiprocess mode so that ``/metrics`` adds up every worker's values.

    Must run before ``prometheus_client`` is first imported. The directory is ``<data dir>/metrics/api-<pid>``
    (those of API processes that are gone are removed); an operator's own ``PROMETHEUS_MULTIPROC_DIR`` is kept.
    """
    if workers <= 1 or os.environ.get(MULTIPROC_ENV):
        return
    os.environ[MULTIPROC_ENV] = str(fresh_multiprocess_dir(settings.data_dir, "api", os.getpid()))


def serve_api(app: FastAPI | AppFactory, settings: Settings, *, host: str, port: int, log_level: str | None = None,
              workers: int = 1) -> int:
    """Serve the API until SIGTERM or SIGINT; 0 once drained, 1 when the server could not start.

    ``log_level`` quietens uvicorn's own lines (its access log is INFO) below the process's level.
    ``workers`` above 1 needs ``app`` as a factory: each worker process builds its own application.
    """
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, log_level=(log_level or settings.log_level).lower(),
        timeout_graceful_shutdown=int(settings.api_shutdown_seconds) or None, factory=not isinstance(app, FastAPI),
    )
    if workers <= 1:
        server = DrainingServer(config)
        server.run()
        return 0 if server.started else 1
    if isinstance(app, FastAPI):
        raise TypeError("several API workers need an application factory")
    return _Supervisor(config, workers).run()


class _Supervisor:
    """The main process of a multi-worker API: forks the workers on one bound socket and minds them."""

    def __init__(self, config: uvicorn.Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self.children: set[int] = set()
        self.stopping = False
        self.failed_start = False

    def run(self) -> int:
        sock = self.config.bind_socket()
        previous = {sig: signal.signal(sig, self._stop) for sig in STOP_SIGNALS}
        try:
            log.info("API listening on %s:%s with %d worker processes", self.config.host, self.config.port,
                     self.workers)
            for _ in range(self.workers):
                self._fork(sock)
            while self.children:
                try:
                    pid, status = os.waitpid(-1, 0)
                except ChildProcessError:
                    break
                except InterruptedError:
                    continue
                self.children.discard(pid)
                code = os.waitstatus_to_exitcode(status)
                if os.environ.get(MULTIPROC_ENV):
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
                if self.stopping:
                    continue
                if code == 3:  # the worker could not start: do not respawn it in a loop
                    self.failed_start = True
                    self._stop(signal.SIGTERM, None)
                    continue
                log.warning("API worker %s exited (%s); starting another", pid, code)
                self._fork(sock)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sock.close()
        return 1 if self.failed_start else 0

    def _fork(self, sock: object) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: serve until told to stop, then leave without running the parent's clean-up
            code = 1
            try:
                server = DrainingServer(self.config)
                server.run(sockets=[sock])  # type: ignore[list-item]
                code = 0 if server.started else 3
            except BaseException:
                log.exception("API worker failed")
            finally:
                logging.shutdown()
                os._exit(code)
        self.children.add(pid)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("got %s: the API workers drain requests in flight, then stop", signal.Signals(signum).name)
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                self.children.discard(pid)
