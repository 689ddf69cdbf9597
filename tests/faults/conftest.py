"""Fixtures of the fault-injection suite: a fresh PostgreSQL database with the billing tables, a private
Redis, a process reaper, the suite's scale, and the measured figures printed at the end of the run.

``FAULTS_SCALE=long`` (``make faults``) runs the long variant: hundreds of kills, longer soaks.
"""

from __future__ import annotations

import pytest
from faultkit import SCALE, Scale
from process_fixtures import figures, print_figures, private_redis, processes  # noqa: F401  (fixtures)
from sqlalchemy import Engine

from cli.migrations import migrate_billing_database
from scheduler.jobtypes import load_registry
from scheduler.settings import Settings


@pytest.fixture(scope="session")
def scale() -> Scale:
    return SCALE


@pytest.fixture
def fault_db(pg_engine: Engine) -> Engine:
    """A migrated, empty PostgreSQL database with the billing tables."""
    migrate_billing_database(pg_engine, load_registry(Settings()).all())
    return pg_engine


@pytest.fixture
def fault_db_url(fault_db: Engine) -> str:
    return fault_db.url.render_as_string(hide_password=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    print_figures(terminalreporter, "faults", "fault suite: measured figures")
