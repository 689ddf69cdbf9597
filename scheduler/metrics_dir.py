"""Prometheus multiprocess directories: where the processes of an API or a worker pool meet their values.

``prometheus_client`` picks its storage when it is first imported, so these run before it is, and this
module imports it not.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The variable ``prometheus_client`` reads: the directory a process writes its values to."""


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fresh_multiprocess_dir(data_dir: Path, role: str, pid: int) -> Path:
    """``<data dir>/metrics/<role>-<pid>``, new and empty; those of the role's processes that are gone are removed."""
    parent = Path(data_dir).resolve() / "metrics"
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob(f"{role}-*"):
        owner = old.name.removeprefix(f"{role}-")
        if owner.isdigit() and not process_alive(int(owner)):
            shutil.rmtree(old, ignore_errors=True)
    directory = parent / f"{role}-{pid}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    return directory
