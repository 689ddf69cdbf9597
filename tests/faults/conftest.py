"""Fixtures of the fault-injection suite: a fresh PostgreSQL database with the billing tables, a private
Redis, a process reaper, the suite's scale, and the measured figures printed at the end of the run.

``FAULTS_SCALE=long`` (``make faults``) runs the long variant: hundreds of kills, longer soaks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import SCALE, Figures, PrivateRedis, Processes, Scale
from sqlalchemy import Engine

from workers.billing import migrate_billing

FIGURES = Figures()


@pytest.fixture(scope="session")
def scale() -> Scale:
    return SCALE


@pytest.fixture
def fault_db(pg_engine: Engine) -> Engine:
    """A migrated, empty PostgreSQL database with the billing tables."""
    migrate_billing(pg_engine)
    return pg_engine


@pytest.fixture
def fault_db_url(fault_db: Engine) -> str:
    return fault_db.url.render_as_string(hide_password=False)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own (never the shared one): restarting it disturbs nobody."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Every process a test starts, killed (group and all) at teardown."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    procs = Processes(log_dir)
    yield procs
    procs.reap()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines of measured figures for the terminal summary."""
    lines: list[str] = []
    yield lines
    for line in lines:
        FIGURES.add(request.node.name, line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES.lines:
        terminalreporter.section("fault suite: measured figures")
        for line in FIGURES.lines:
            terminalreporter.write_line(line)
