"""A plug-in job type with one table of its own, brought by its own migrations (two revisions).

Importable as ``loyalty_type:JOB_TYPE`` with ``tests/cli`` and ``tests/beat`` on ``PYTHONPATH``; ``scheduler
migrate`` finds it through ``SCHEDULER_EXTRA_JOB_TYPES`` as it finds any installed type.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from beat_fake_types import FakeJobType


class LoyaltyJobType(FakeJobType):
    """Beat's do-nothing type, with a table of its own."""

    name: ClassVar[str] = "loyalty"
    label: ClassVar[str] = "Loyalty points"
    queue: ClassVar[str] = "loyalty"
    migrations: ClassVar[Path | None] = Path(__file__).parent / "migrations"


JOB_TYPE = LoyaltyJobType()
