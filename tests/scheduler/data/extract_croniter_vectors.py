"""Extract test vectors from croniter's own test suite: every forward step its passing tests compute.

Run it by hand, in an environment with croniter (the version named in the output), pytz and pytest::

    python tests/scheduler/data/extract_croniter_vectors.py tests/scheduler/data/croniter_vectors.json

It runs the test suite that ships inside the croniter package with ``croniter._get_next`` recorded:
each forward step (expression, options, zone, the instant after which it searched, the fire it found)
of a test that passed becomes a vector. Backward steps are left out (our engine only looks forward).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import croniter as croniter_package
import pytest
from croniter import croniter

_records: list[dict[str, Any]] = []
_DEFAULTS = {"day_or": True, "second_at_beginning": False, "implement_cron_bug": False, "expand_from_start_time": False}


def _zone_name(zone: tzinfo | None) -> str | None:
    """The IANA name of a zone object of any of the libraries croniter's tests use, if it has one."""
    if zone is None or zone is UTC:
        return "UTC"
    for attribute in ("key", "zone"):  # zoneinfo, pytz
        name = getattr(zone, attribute, None)
        if isinstance(name, str):
            return name
    filename = getattr(zone, "_filename", None)  # dateutil
    if isinstance(filename, str) and "zoneinfo/" in filename:
        return filename.split("zoneinfo/", 1)[1]
    return "UTC" if type(zone).__name__ == "tzutc" else None


def _instant(value: Any) -> str:
    """A croniter time (timestamp, naive datetime read as UTC, aware datetime) as ISO UTC."""
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    else:
        moment = datetime.fromtimestamp(float(value), UTC)
    return moment.isoformat()


def _install_recorder() -> None:
    original_init = croniter.__init__
    original_next = croniter._get_next

    def init(self: croniter, expr_format: str, *args: Any, **kwargs: Any) -> None:
        self._vector_expression = expr_format
        self._vector_hash_id = kwargs.get("hash_id")
        original_init(self, expr_format, *args, **kwargs)

    def get_next(self: croniter, ret_type: Any = None, start_time: Any = None, is_prev: Any = None,
                 update_current: Any = None) -> Any:
        result = original_next(self, ret_type=ret_type, start_time=start_time, is_prev=is_prev,
                               update_current=update_current)
        backwards = self._is_prev if is_prev is None else is_prev
        if not backwards:
            hash_id = self._vector_hash_id
            _records.append({
                "expression": self._vector_expression,
                "hash_id": hash_id.decode() if isinstance(hash_id, bytes) else hash_id,
                "timezone": _zone_name(self.tzinfo),
                "day_or": self._day_or,
                "second_at_beginning": self.second_at_beginning,
                "implement_cron_bug": self._implement_cron_bug,
                "expand_from_start_time": self._expand_from_start_time,
                "after": _instant(start_time if start_time is not None else self._vector_before),
                "next": _instant(result if not isinstance(result, croniter) else self.cur),
            })
        self._vector_before = self.cur
        return result

    def set_current(self: croniter, start_time: Any, force: bool = True) -> Any:
        value = original_set_current(self, start_time, force=force)
        self._vector_before = self.cur
        return value

    original_set_current = croniter.set_current
    croniter.__init__ = init  # type: ignore[method-assign]
    croniter._get_next = get_next  # type: ignore[method-assign]
    croniter.set_current = set_current  # type: ignore[method-assign]


class _KeepPassing:
    """Keeps the records of tests that passed; drops the rest."""

    def __init__(self) -> None:
        self.vectors: list[dict[str, Any]] = []
        self.tests = 0

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        _records.clear()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed:
            self.tests += 1
            test = report.nodeid.split("croniter/tests/", 1)[-1]
            self.vectors += [{"test": test, **record} for record in _records]


def main() -> int:
    out = Path(sys.argv[1])
    _install_recorder()
    keeper = _KeepPassing()
    tests = Path(croniter_package.__file__).parent / "tests"
    pytest.main([str(tests), "-q", "-p", "no:cacheprovider", "-k", "not speed"], plugins=[keeper])
    cases: dict[str, dict[str, Any]] = {}
    for vector in keeper.vectors:
        options = {name: vector[name] for name, default in _DEFAULTS.items() if vector[name] != default}
        case = {"test": vector["test"], "expression": vector["expression"], "hash_id": vector["hash_id"],
                "timezone": vector["timezone"], "options": options}
        steps = cases.setdefault(json.dumps(case, sort_keys=True), {**case, "steps": []})["steps"]
        if [vector["after"], vector["next"]] not in steps:
            steps.append([vector["after"], vector["next"]])
    version = getattr(croniter_package, "__version__", None) or _installed_version()
    lines = ",\n".join(json.dumps(case) for case in cases.values())
    count = sum(len(case["steps"]) for case in cases.values())
    out.write_text(
        "{\n"
        '"source": "the test suite of croniter (github.com/pallets-eco/croniter, src/croniter/tests), MIT licence",\n'
        f'"croniter_version": "{version}",\n'
        f'"passing_tests": {keeper.tests},\n'
        f'"vectors": {count},\n'
        f'"cases": [\n{lines}\n]\n}}\n'
    )
    print(f"{count} vectors in {len(cases)} cases from {keeper.tests} passing tests of croniter {version} -> {out}")  # noqa: T201
    return 0


def _installed_version() -> str:
    from importlib.metadata import version

    return version("croniter")


if __name__ == "__main__":
    sys.exit(main())
