"""The beat leader lease: one row in ``beat_lease`` with a holder, an expiry and a fencing epoch.

A beat acquires the lease when it is free or expired (the epoch grows by one with every change of
holder), renews it at half its length, and releases it on shutdown. Every write of runs checks the
epoch inside its own transaction (:meth:`LeaderLease.fence`), so a beat that was paused past its
lease and lost it to another cannot write, even if it still believes it leads.

All changes are single guarded statements (``UPDATE … WHERE``, ``INSERT … ON CONFLICT DO NOTHING``):
no read-modify-write, so two beats racing for the row cannot both win on SQLite or PostgreSQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session, sessionmaker

from beat.tables import LEASES
from scheduler.clock import Clock
from scheduler.errors import StaleLeader
from scheduler.jobkit import insert_or_ignore_statement

log = logging.getLogger(__name__)

LEASE_NAME = "beat"


@dataclass(frozen=True, kw_only=True)
class LeaseState:
    """What this beat last learned about its own hold on the lease."""

    epoch: int
    expires_at: datetime
    renewed_at: datetime


class LeaderLease:
    """The lease as seen by one beat (``holder``); keeps its epoch between calls."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        holder: str,
        lease_seconds: float,
        clock: Clock,
        name: str = LEASE_NAME,
    ) -> None:
        self.factory = factory
        self.holder = holder
        self.length = timedelta(seconds=lease_seconds)
        self.clock = clock
        self.name = name
        self.state: LeaseState | None = None

    @property
    def epoch(self) -> int | None:
        return self.state.epoch if self.state else None

    def ensure(self) -> bool:
        """Acquire the lease or renew it once half its length has passed; ``True`` while leading.

        A fresh lease held by this beat is not touched again before half its length, so a leader
        costs one statement every ``lease_seconds / 2``.
        """
        now = self.clock.now()
        if self.state is not None and now < self.state.renewed_at + self.length / 2:
            return True
        return self.acquire()

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours; renew it if ours."""
        now = self.clock.now()
        expires = now + self.length
        with self.factory() as session, session.begin():
            # The epoch changes only with the holder: a renewal keeps it, a take-over bumps it.
            result = session.execute(
                update(LEASES)
                .where(
                    LEASES.c.name == self.name,
                    (LEASES.c.expires_at < now) | (LEASES.c.holder == self.holder),
                )
                .values(
                    holder=self.holder,
                    epoch=case((LEASES.c.holder == self.holder, LEASES.c.epoch), else_=LEASES.c.epoch + 1),
                    expires_at=expires,
                )
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                inserted = session.execute(
                    insert_or_ignore_statement(session, LEASES, keys=["name"])
                    .values(name=self.name, holder=self.holder, epoch=1, expires_at=expires)
                    .returning(LEASES.c.epoch)
                ).scalar_one_or_none()
                if inserted is None:
                    self._lost("held by another beat")
                    return False
            epoch = session.execute(select(LEASES.c.epoch).where(LEASES.c.name == self.name)).scalar_one()
        previous = self.state
        self.state = LeaseState(epoch=epoch, expires_at=expires, renewed_at=now)
        if previous is None or previous.epoch != epoch:
            log.info("beat %s is now the leader (lease epoch %s)", self.holder, epoch)
        return True

    def fence(self, session: Session) -> int:
        """Check, inside the caller's write transaction, that this beat still holds the lease.

        Extends the lease as a side effect. Raises :class:`StaleLeader` (the caller rolls back)
        when another beat took the lease over, so nothing this beat wrote in the transaction lands.
        On PostgreSQL the row stays locked until the caller commits, so no take-over can slip in
        between this check and the commit; SQLite serialises writers anyway.
        """
        if self.state is None:
            raise StaleLeader(f"beat {self.holder} does not hold the lease")
        now = self.clock.now()
        expires = now + self.length
        result = session.execute(
            update(LEASES)
            .where(
                LEASES.c.name == self.name,
                LEASES.c.holder == self.holder,
                LEASES.c.epoch == self.state.epoch,
            )
            .values(expires_at=expires)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            epoch = self.state.epoch
            self._lost("taken over")
            raise StaleLeader(
                f"beat {self.holder} lost the lease (epoch {epoch} is no longer current); nothing written",
                details={"holder": self.holder, "epoch": epoch},
            )
        self.state = LeaseState(epoch=self.state.epoch, expires_at=expires, renewed_at=now)
        return self.state.epoch

    def release(self) -> None:
        """Expire the lease now, if still ours, so a standby takes over at once."""
        if self.state is None:
            return
        with self.factory() as session, session.begin():
            session.execute(
                update(LEASES)
                .where(LEASES.c.name == self.name, LEASES.c.holder == self.holder)
                .values(expires_at=self.clock.now() - timedelta(microseconds=1))
            )
        log.info("beat %s released the lease (epoch %s)", self.holder, self.state.epoch)
        self.state = None

    def forget(self) -> None:
        """Drop what this beat believes about the lease (e.g. after losing the database): a leader steps
        down until it acquires the lease again (same epoch if nobody took it meanwhile)."""
        self.state = None

    def _lost(self, why: str) -> None:
        if self.state is not None:
            log.warning("beat %s is no longer the leader (epoch %s): %s", self.holder, self.state.epoch, why)
        self.state = None
