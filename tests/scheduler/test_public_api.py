"""Every module of the core is either public to job types or forbidden to them by the import-linter contract."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = {"scheduler.jobkit", "scheduler.jobtypes", "scheduler.errors", "scheduler.settings", "scheduler.clock",
          "scheduler.limits", "scheduler.money"}


def test_each_core_module_is_public_or_forbidden_to_job_types() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in pyproject["tool"]["importlinter"]["contracts"]
                    if c["name"].startswith("Job types and their tables use only the public API"))
    core = {f"scheduler.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "scheduler")]) if m.name != "migrations"}
    assert PUBLIC <= core
    forbidden = set(contract["forbidden_modules"])
    assert core - PUBLIC - forbidden == set(), "a new core module: list it in the contract's forbidden_modules"
    assert forbidden - core == set(), "forbidden modules that no longer exist"
