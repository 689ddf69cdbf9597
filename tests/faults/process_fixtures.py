"""Fixtures of the suites that start real processes (``tests/faults``, ``tests/system``): a private Redis,
every started process reaped at teardown, and measured figures printed at the end, a section per suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import Figures, PrivateRedis, Processes

FIGURES: dict[str, Figures] = {}
"""Measured figures by suite (the folder of the test that measured them)."""


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
    suite = FIGURES.setdefault(request.node.path.parent.name, Figures())
    for line in lines:
        suite.add(request.node.name, line)


def print_figures(terminalreporter: pytest.TerminalReporter, suite: str, title: str) -> None:
    """The ``suite``'s figures under ``title``, if it measured any."""
    lines = FIGURES.get(suite, Figures()).lines
    if lines:
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)
