"""Every module of the core is either public to job types or forbidden to them by the import-linter contract."""

from __future__ import annotations

import pkgutil
import re
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


def test_no_job_type_names_a_core_table() -> None:
    """Job types reach the run's items through scheduler.jobkit, never by the core's table names in SQL."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {ref.split(":")[0].replace(".", "/") for ref in
                pyproject["project"]["entry-points"]["scheduler.job_types"].values()}
    core_table = re.compile(r"\b(job_run|run_chunk|run_item|run_event)\b")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in sorted(packages) for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), start=1) if core_table.search(line)
    ]
    assert len(packages) >= 4
    assert found == []
