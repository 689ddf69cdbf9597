"""What every admin command shares: output (tables with headers, or ``--json``), option types, database sessions.

Each database step runs in a session of its own that ends (and so releases SQLite's write lock) before the
next one starts: on the embedded database a second connection of the same command would otherwise wait for
the first one's lock and fail with "database is locked".
"""

from __future__ import annotations

import argparse
import enum
import json
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from scheduler.db import check_database, make_engine, make_session_factory
from scheduler.errors import InvalidInput
from scheduler.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]

MAX_LIMIT = 1000


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def when(value: datetime | None) -> str:
    """A timestamp as a table shows it: UTC to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def emit(args: argparse.Namespace, data: Any, lines: Callable[[], list[str]]) -> None:
    """Print ``data`` as JSON with ``--json``, else the human lines."""
    if getattr(args, "json", False):
        print(json.dumps(data, default=json_default, indent=2))
    else:
        for line in lines():
            print(line)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str = "(none)") -> list[str]:
    """Rows under their headers in aligned columns; the last column may run on (it holds free text)."""
    if not rows:
        return [empty]
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    width = shutil.get_terminal_size((120, 24)).columns

    def line(values: Sequence[str]) -> str:
        text = "  ".join(v.ljust(w) for v, w in zip(values[:-1], widths[:-1], strict=True))
        last = values[-1]
        room = width - len(text) - 2
        if room > 10 and len(last) > room and _interactive():
            last = last[: room - 1] + "…"
        return f"{text}  {last}".rstrip() if text else last

    return [line(list(headers)), line(["-" * w for w in widths]), *(line(r) for r in cells)]


def _interactive() -> bool:
    return sys.stdout.isatty()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


# -- option types: a bad value is one line and exit 2 (argparse's own error, see cli.main.Parser) ---------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def limit(text: str) -> int:
    value = positive_int(text)
    if value > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is more than {MAX_LIMIT}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 7 * 24 * 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and a week of seconds")
    return value


def enum_values(enum_type: type[enum.StrEnum], *, many: bool = False) -> Callable[[str], Any]:
    """Values of ``enum_type`` in any case (``failed`` is ``FAILED``); ``many``: comma-separated."""
    members = {m.value.lower(): m.value for m in enum_type}

    def parse(text: str) -> Any:
        values = []
        for part in (text.split(",") if many else [text]):
            found = members.get(part.strip().lower())
            if found is None:
                raise argparse.ArgumentTypeError(
                    f"{part.strip()!r} is not one of {', '.join(m.value for m in enum_type)}")
            values.append(found)
        return list(dict.fromkeys(values)) if many else values[0]

    parse.__name__ = enum_type.__name__  # argparse names the type in its messages
    return parse


# -- database -------------------------------------------------------------------------------------------------


class Db:
    """The command's database: one engine, a short session per step."""

    def __init__(self, settings: Settings) -> None:
        engine = make_engine(settings.resolved_database_url)
        check_database(engine)
        self.factory: sessionmaker[Session] = make_session_factory(engine)
        self.settings = settings

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction ends with the block (what the data function did not commit is rolled back);
        the rows it loaded stay readable."""
        with self.factory() as session:
            yield session


def registry(settings: Settings) -> Any:
    from scheduler.jobtypes import load_registry

    return load_registry(settings)


def parse_json(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value
