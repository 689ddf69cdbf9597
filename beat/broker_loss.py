"""Noticing that Redis lost its data, and repairing faster for a while after it did.

The queues live only in Redis. When Redis restarts empty (no persistence) or is flushed, every step
message waiting there is gone, and without help the runs they belonged to wait for the ordinary
timeouts (``outbox_resend_after``, ``run_heartbeat_timeout``: 30 s each by default) before beat
re-sends them. Beat keeps a marker key in Redis; finding it gone after Redis restarted (its ``run_id``
changed) means the data was lost. A beat's first look only notes both, so a beat that starts after
the loss relies on the timeouts, and a flush without a restart is not taken for a loss. For one
heartbeat timeout after that, the outbox re-sends every run sent before the loss, and a running run
that shows no sign of life for a few seconds (longer than a worker's heartbeat interval, so a step
still executing is left alone) has its unfinished steps re-sent. Duplicate steps are no-ops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis

from scheduler.errors import first_line
from scheduler.metrics import BROKER_UP
from scheduler.outage import Outage
from scheduler.redact import redact

log = logging.getLogger(__name__)

MARKER = "scheduler:beat:broker-marker"
"""The key whose absence says Redis lost its data since beat last looked."""
IDLE_AFTER_LOSS = timedelta(seconds=7)
"""A running run without a sign of life for this long after a loss lost its messages (workers beat every ≤ 5 s)."""


@dataclass(kw_only=True)
class BrokerWatch:
    """One beat's watch on the broker's data: when it was last lost, and the repair window after."""

    client: Any
    holder: str
    heartbeat_timeout: timedelta
    lost_at: datetime | None = None
    server: str | None = None
    """The Redis server's ``run_id`` when this beat last looked (it changes when Redis restarts)."""
    outage: Outage = field(default_factory=lambda: Outage(
        service="Redis", setting="SCHEDULER_REDIS_URL", resumed="sending the runs recorded meanwhile", log=log,
        meanwhile="beat keeps recording due runs and sends them when it is back"))
    """Whether Redis answers, logged once each way."""

    def check(self, now: datetime) -> bool:
        """Set the marker; ``True`` when Redis restarted and the marker is gone: a repair window opens.

        Also notes whether Redis answers (:attr:`reachable`, ``scheduler_broker_up``), with one log line
        when it stops answering and one when it is back.
        """
        try:
            missing = bool(self.client.set(MARKER, self.holder, nx=True))
            server = str(self.client.info("server").get("run_id", ""))
        except (redis.RedisError, OSError) as exc:
            self._unreachable(exc)
            return False  # runs are recorded and wait in the outbox; the check runs again next tick
        self._reachable()
        lost = missing and self.server is not None and server != self.server
        self.server = server
        if lost:
            self.lost_at = now
            log.warning(
                "Redis has lost its data (it restarted empty): for the next %s s, runs sent before now and "
                "running runs idle for %s s get their steps re-sent", int(self.heartbeat_timeout.total_seconds()),
                int(self.idle_after.total_seconds()),
            )
        return lost

    def ping(self) -> None:
        """Only note whether Redis answers (a standby: the marker is the leader's to keep)."""
        try:
            self.client.ping()
        except (redis.RedisError, OSError) as exc:
            self._unreachable(exc)
        else:
            self._reachable()

    @property
    def reachable(self) -> bool:
        """Whether Redis answered at the last check."""
        return not self.outage.down

    def _unreachable(self, exc: BaseException) -> None:
        BROKER_UP.set(0)
        self.outage.failed(redact(first_line(exc)))

    def _reachable(self) -> None:
        BROKER_UP.set(1)
        self.outage.recovered()

    @property
    def idle_after(self) -> timedelta:
        return min(self.heartbeat_timeout, IDLE_AFTER_LOSS)

    def window(self, now: datetime) -> datetime | None:
        """When the last loss happened, while its repair window is open."""
        if self.lost_at is not None and now < self.lost_at + self.heartbeat_timeout:
            return self.lost_at
        return None
