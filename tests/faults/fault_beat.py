"""``python -m fault_beat``: ``python -m beat`` with two faults a test can trigger at an exact point.

A fault fires in the beat process whose pid is written in the file named by its variable:

- ``FAULT_KILL_BEFORE_SEND``: the next tick that committed new runs SIGKILLs the process before
  sending any of them: the runs exist, unsent, and only the next leader's outbox can send them;
- ``FAULT_FREEZE_IN_TICK``: the next fenced write stops the process (SIGSTOP) inside its transaction,
  after the lease check: a leader frozen while it holds the lease row locked.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session

from beat import service
from beat.scheduling import TickRun

_send_new = service.Beat._send_new


def _armed(variable: str) -> bool:
    trigger = os.environ.get(variable)
    if not trigger:
        return False
    path = Path(trigger)
    return path.exists() and path.read_text().strip() == str(os.getpid())


def _die_before_send(self: service.Beat, runs: list[TickRun]) -> int:
    if runs and _armed("FAULT_KILL_BEFORE_SEND"):
        os.kill(os.getpid(), signal.SIGKILL)
    return _send_new(self, runs)


@contextmanager
def _fenced(self: service.Beat) -> Iterator[Session]:
    with self.factory() as session, session.begin():
        self.lease.fence(session)
        if _armed("FAULT_FREEZE_IN_TICK"):
            Path(os.environ["FAULT_FREEZE_IN_TICK"]).unlink()
            os.kill(os.getpid(), signal.SIGSTOP)
        yield session


service.Beat._send_new = _die_before_send  # type: ignore[method-assign]
service.Beat.fenced = _fenced  # type: ignore[method-assign,assignment]
raise SystemExit(service.main())
