"""One process's view of an outage of a service it needs (the database, Redis).

Beat and the workers meet outages on many threads and ticks; an operator wants one log line when the
service stops answering and one when it is back, with how long it was gone. :class:`Outage` is that
record, shared by every thread of a process that uses the service.
"""

from __future__ import annotations

import logging
import threading
import time


class Outage:
    """Whether a service is currently unreachable from this process, logged once each way.

    ``service`` and ``setting`` name it (``database``, ``SCHEDULER_DATABASE_URL``); ``meanwhile`` says what
    the process does while it is gone and ``resumed`` what it does once it is back. Lines go to ``log``,
    the owner's logger.
    """

    def __init__(self, *, service: str, setting: str, meanwhile: str, resumed: str, log: logging.Logger) -> None:
        self.service = service
        self.setting = setting
        self.meanwhile = meanwhile
        self.resumed = resumed
        self.log = log
        self._lock = threading.Lock()
        self._since: float | None = None

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, detail: str) -> bool:
        """The service did not answer; ``True`` (and one log line) when that starts an outage."""
        with self._lock:
            if self._since is not None:
                return False
            self._since = time.monotonic()
        self.log.error("%s unreachable (%s): %s: %s", self.service, self.setting, self.meanwhile, detail)
        return True

    def recovered(self, *, attempt_started: float | None = None) -> bool:
        """The service answered; ``True`` (and one log line) when that ends an outage.

        With ``attempt_started`` (``time.monotonic()`` when the call that got through began), only a call
        begun after the outage was noticed ends it: one already under way may have got in just before the
        cut while another thread met the cut.
        """
        if self._since is None:
            return False
        with self._lock:
            since = self._since
            if since is None or (attempt_started is not None and attempt_started <= since):
                return False
            self._since = None
        self.log.info("%s reachable again after %.1f s; %s", self.service, time.monotonic() - since, self.resumed)
        return True

