"""``python -m dramatiq fault_actors``: the worker's actors, able to die at an exact point of a dunning apply.

When the file named by ``FAULT_KILL_IN_APPLY`` holds a point, the next apply of a chunk with items
to apply takes the file and SIGKILLs its process there:

- ``in-transaction``: the chunk's effects are written but not committed;
- ``after-commit``: the effects are committed, the chunk is not yet marked applied.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

from workers.dunning import DunningJobType
from workers.dunning import apply as dunning_apply
from workers.runtime.actors import actors, broker

_recorded = threading.local()


def _take(point: str) -> bool:
    """Whether this process takes the armed fault at ``point`` (only one process can)."""
    trigger = os.environ.get("FAULT_KILL_IN_APPLY")
    if not trigger:
        return False
    path = Path(trigger)
    try:
        if path.read_text().strip() != point:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


_apply_effects = dunning_apply._apply_effects
_apply = DunningJobType.apply


def _effects_then_die(*args: Any) -> None:
    _apply_effects(*args)
    _recorded.done = True
    if _take("in-transaction"):
        os.kill(os.getpid(), signal.SIGKILL)


def _apply_then_die(self: DunningJobType, ctx: Any, chunk_no: int, spec: dict[str, Any]) -> None:
    _recorded.done = False
    _apply(self, ctx, chunk_no, spec)
    if getattr(_recorded, "done", False) and _take("after-commit"):
        os.kill(os.getpid(), signal.SIGKILL)


dunning_apply._apply_effects = _effects_then_die
DunningJobType.apply = _apply_then_die  # type: ignore[method-assign]

__all__ = ["actors", "broker"]
