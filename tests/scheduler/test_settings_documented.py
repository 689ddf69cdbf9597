"""Every setting an operator can give is in the README's table, and the table names no setting that is gone."""

from __future__ import annotations

import re
from pathlib import Path

from scheduler.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented() -> set[str]:
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in (line for line in section.splitlines() if line.startswith("| `SCHEDULER_")):
        first_cell = row.split("|")[1]
        prefix = ""
        for token in re.findall(r"`([A-Z_…]+)`", first_cell):
            if token.startswith("…"):  # `SCHEDULER_REDIS_SENTINEL_SERVICE` / `…_PASSWORD`
                names.add(prefix + token[1:])
            else:
                names.add(token)
                prefix = token.rsplit("_", 1)[0]
    return names


def test_every_setting_is_in_the_readme_table_and_only_those() -> None:
    settings = {f"SCHEDULER_{name.upper()}" for name in Settings.model_fields}
    documented = _documented()
    assert sorted(settings - documented) == [], "settings missing from README's Configuration table"
    assert sorted(documented - settings) == [], "README's Configuration table names settings that do not exist"
