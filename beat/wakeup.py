"""Beat's wake-up channel: sleep until a timeout, or until someone publishes on ``WAKE_CHANNEL``.

Creating or resuming a job publishes there so beat schedules it at once. Losing Redis only loses
the early wake-ups: beat falls back to sleeping the full timeout and re-subscribes with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

from scheduler.dispatch import WAKE_CHANNEL

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0


class WakeListener:
    """A pub/sub subscription used as an interruptible sleep."""

    def __init__(self, client: redis.Redis, *, channel: str = WAKE_CHANNEL) -> None:
        self.client = client
        self.channel = channel
        self.pubsub: Any = None
        self.backoff = 0.0
        self.retry_at = 0.0
        self.down = False

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Sleep up to ``timeout`` seconds; ``True`` when woken by a message."""
        deadline = time.monotonic() + max(0.0, timeout)
        if self.pubsub is None and time.monotonic() >= self.retry_at:
            self._subscribe()
        if self.pubsub is None:
            stop.wait(timeout)
            return False
        try:
            while not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                message = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=min(remaining, 0.5))
                if message is not None:
                    while self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0) is not None:
                        pass  # several wake-ups at once are one
                    return True
        except (redis.RedisError, OSError) as exc:
            self._lost(exc)
            stop.wait(max(0.0, deadline - time.monotonic()))
        return False

    def close(self) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.close()
            except (redis.RedisError, OSError):
                pass
            self.pubsub = None

    def _subscribe(self) -> None:
        try:
            pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
            pubsub.subscribe(self.channel)
        except (redis.RedisError, OSError) as exc:
            self._lost(exc)
            return
        self.pubsub = pubsub
        self.backoff = 0.0
        if self.down:
            log.info("beat wake-ups restored: subscribed to %s again", self.channel)
            self.down = False

    def _lost(self, exc: BaseException) -> None:
        self.close()
        self.backoff = min(MAX_BACKOFF, max(1.0, self.backoff * 2))
        self.retry_at = time.monotonic() + self.backoff
        if not self.down:
            log.warning(
                "beat wake-ups unavailable (Redis: %s); polling instead, retrying the subscription with backoff",
                exc,
            )
            self.down = True
