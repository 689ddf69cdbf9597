"""Verified API keys remembered for a moment, so a busy client's every request is not a key lookup.

A key verified once is trusted for ``SCHEDULER_API_KEY_CACHE_SECONDS`` (default 1 s) by the API process that
verified it; ``0`` looks every request's key up. Revocation therefore takes effect at once in the API process
that revoked the key, and within that many seconds in every other one (other API workers or replicas, and
``scheduler keys revoke``). Only a hash of the token is kept, never the token; unknown and revoked keys are not
remembered, so they are refused at every request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from sqlalchemy.orm import Session

from scheduler import auth
from scheduler.auth import Principal

MAX_KEYS = 1024
"""Distinct keys remembered at once; the least recently verified is forgotten first."""


class KeyCache:
    """The principals of recently verified keys, by the token's hash, each for ``seconds``."""

    def __init__(self, seconds: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._monotonic = monotonic
        self._known: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def principal(self, session: Session, token: str) -> Principal:
        """Who ``token`` is: remembered if verified less than ``seconds`` ago, else looked up (and remembered)."""
        if self.seconds <= 0:
            return auth.principal_of(auth.verify(session, token))
        digest = auth.hash_token(token.strip())
        now = self._monotonic()
        with self._lock:
            known = self._known.get(digest)
            if known is not None and known[0] > now:
                return known[1]
        principal = auth.principal_of(auth.verify(session, token))
        with self._lock:
            self._known[digest] = (now + self.seconds, principal)
            self._known.move_to_end(digest)
            while len(self._known) > MAX_KEYS:
                self._known.popitem(last=False)
        return principal

    def forget(self) -> None:
        """Forget every key (a key was revoked here: it stops working at once in this process)."""
        with self._lock:
            self._known.clear()
