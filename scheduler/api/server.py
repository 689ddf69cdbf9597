"""``scheduler api``'s HTTP server: uvicorn, logging through our handler, draining on SIGTERM and exiting 0.

uvicorn stops gracefully on SIGTERM (no new connections; requests in flight finish, up to
``SCHEDULER_API_SHUTDOWN_SECONDS``) but then raises the signal again, so the process dies of it
(exit 143) and an orchestrator records a crash. Here the signal ends the server and nothing else.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from fastapi import FastAPI

from scheduler.settings import Settings

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


def serve_api(app: FastAPI, settings: Settings, *, host: str, port: int, log_level: str | None = None) -> int:
    """Serve ``app`` until SIGTERM or SIGINT; 0 once drained, 1 when the server could not start.

    ``log_level`` quietens uvicorn's own lines (its access log is INFO) below the process's level.
    """
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, log_level=(log_level or settings.log_level).lower(),
        timeout_graceful_shutdown=int(settings.api_shutdown_seconds) or None,
    )
    server = DrainingServer(config)
    server.run()
    return 0 if server.started else 1
