"""Shared helpers of the benchmarks: in-process dispatchers, a scratch PostgreSQL database, backend CPU time."""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text

from scheduler.db import normalize_url
from scheduler.dispatch import Dispatcher, RunStep


class MemoryDispatcher(Dispatcher):
    """A dispatcher whose steps stay in this process instead of going to Redis; there is no beat to wake."""

    def __init__(self) -> None:
        self.url = "memory://"

    def wake_beat(self) -> None:
        return None


class QueueDispatcher(MemoryDispatcher):
    """Keeps sent steps in memory, in order, to be executed in this process."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: deque[RunStep] = deque()

    def send_step(self, queue: str, step: RunStep) -> None:
        self.steps.append(step)


@contextmanager
def scratch_database(server_url: str, prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A new database ``<prefix>_<random>`` on the PostgreSQL server of ``server_url``; yields its URL and
    drops it afterwards unless ``keep``."""
    server = normalize_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.rsplit("/", 1)[0] + "/" + name
        finally:
            if not keep:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


class BackendCpu:
    """CPU seconds used by one database's PostgreSQL backends (a local server only, else ``None``):
    unlike wall time, a figure that holds still while other processes load the machine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def sample(self) -> dict[int, float] | None:
        """CPU seconds so far per backend process of the engine's database."""
        if self.engine.dialect.name != "postgresql":
            return None
        with self.engine.connect() as conn:
            pids = list(conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars())
        ticks = os.sysconf("SC_CLK_TCK")
        used: dict[int, float] = {}
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                return None
            used[pid] = (int(fields[11]) + int(fields[12])) / ticks
        return used

    def since(self, start: dict[int, float] | None) -> float | None:
        """CPU seconds the backends used from ``start`` (a :meth:`sample`) until now."""
        end = self.sample()
        if start is None or end is None:
            return None
        return sum(cpu - start.get(pid, 0.0) for pid, cpu in end.items())
