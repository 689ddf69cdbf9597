"""Import and normalize: stream a usage file, one record at a time, into rows for the staging table.

Reading never holds more than a line (or one CSV record) in memory, whatever the file size. Each
record is checked on its own here — required fields, known meter, a non-negative decimal quantity
with at most 6 decimals, an ISO 8601 timestamp with a zone — and either normalized (quantity,
rated amount, UTC instant and day) or marked failed with a reason. What needs the database
(accounts, duplicates) is decided afterwards, set-based, in :mod:`workers.mediation.classify`.
"""

from __future__ import annotations

import calendar
import csv
import enum
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path
from typing import Any, BinaryIO

from workers.billing.usage_tables import EVENT_ID_LENGTH, METER_LENGTH, RejectKind
from workers.mediation.properties import FileFormat

FIELDS = ("event_id", "account_number", "meter", "quantity", "occurred_at")
"""The record fields of the wire contract (CSV header names, JSON keys)."""

MAX_LINE_BYTES = 64 * 1024
ACCOUNT_LENGTH = 64
MESSAGE_LENGTH = 300
MICRO = Decimal("0.000001")
_WIDE = Context(prec=60)

StagedRow = tuple[
    int, str | None, str | None, str | None, str | None, str | None, str | None, str | None, str | None, str | None
]
"""``(line_no, event_id, account_number, meter, quantity, amount, occurred_at, usage_day, reason, message)``."""


class RejectReason(enum.StrEnum):
    """Why a record was not mediated. The codes are stable: they are stored and sent on the wire."""

    MALFORMED_LINE = "MALFORMED_LINE"
    """The line is not a record: bad CSV quoting or field count, invalid JSON, not UTF-8, too long."""
    MISSING_FIELD = "MISSING_FIELD"
    """A required field is absent or empty."""
    FIELD_TOO_LONG = "FIELD_TOO_LONG"
    """The event id is longer than 100 characters."""
    UNKNOWN_METER = "UNKNOWN_METER"
    """The meter is not one of the job's meters."""
    BAD_QUANTITY = "BAD_QUANTITY"
    """The quantity is not a decimal number."""
    NEGATIVE_QUANTITY = "NEGATIVE_QUANTITY"
    """The quantity is below zero."""
    QUANTITY_OUT_OF_RANGE = "QUANTITY_OUT_OF_RANGE"
    """The quantity has more than 6 decimals or 12 integer digits."""
    BAD_TIMESTAMP = "BAD_TIMESTAMP"
    """``occurred_at`` is not an ISO 8601 timestamp."""
    TIMESTAMP_WITHOUT_ZONE = "TIMESTAMP_WITHOUT_ZONE"
    """``occurred_at`` has no UTC offset or ``Z``: the instant is ambiguous."""
    ALREADY_MEDIATED = "ALREADY_MEDIATED"
    """The event id was mediated before (an earlier file or run)."""
    DUPLICATE_IN_FILE = "DUPLICATE_IN_FILE"
    """The event id appears on an earlier line of the same file."""
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    """No account has this account number."""
    INACTIVE_ACCOUNT = "INACTIVE_ACCOUNT"
    """The account is suspended or closed."""

    @property
    def kind(self) -> RejectKind:
        return RejectKind.FILTERED if self in FILTERED_REASONS else RejectKind.FAILED


FILTERED_REASONS = frozenset({
    RejectReason.ALREADY_MEDIATED, RejectReason.DUPLICATE_IN_FILE,
    RejectReason.UNKNOWN_ACCOUNT, RejectReason.INACTIVE_ACCOUNT,
})


class SourceError(Exception):
    """A file that cannot be read as a whole (unreadable, bad header, changed while read)."""


@dataclass
class ReadStats:
    """What streaming a file found; ``checksum`` is the SHA-256 of the bytes read."""

    records: int = 0
    failed: int = 0
    lines: int = 0
    size_bytes: int = 0
    checksum: str = ""
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)


class _HashingReader(io.RawIOBase):
    """A raw reader that feeds every byte it reads into ``stats``' hash."""

    def __init__(self, raw: BinaryIO, stats: ReadStats) -> None:
        self._raw = raw
        self._stats = stats

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._stats._hash.update(memoryview(buffer)[:n])
            self._stats.size_bytes += n
        return int(n or 0)


def file_checksum(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


_QUANTITY = re.compile(r"\d{1,12}(?:\.\d{0,6})?|\.\d{1,6}")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_INSTANT_OK = re.compile(
    r"[12]\d{3}-(?:0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?"
    r"(?:Z|[+-](?:0\d|1[0-4])(?::?[0-5]\d)?)"
)
_INSTANT = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.\d{1,6})?)?(?:Z|[+-](\d\d)(?::?(\d\d))?)?"
)


class Normalizer:
    """Checks one record's fields and turns a good one into values for the staging table.

    Accepted: a plain decimal quantity (no sign, no exponent, ≤ 12 integer digits and ≤ 6 decimals) and
    an RFC 3339 timestamp ``YYYY-MM-DD[T ]hh:mm[:ss[.ffffff]]`` with ``Z`` or ``±hh[:mm]`` (years
    1000-2999). PostgreSQL parses those strings itself and rates in SQL (``exact=False``); for SQLite
    the amount (half up, 6 decimals), the UTC instant and the UTC day are computed here.
    """

    def __init__(self, prices: dict[str, Decimal], *, exact: bool) -> None:
        self.prices = prices
        self.exact = exact

    def row(self, line_no: int, event_id: str, account: str, meter: str, quantity: str, occurred: str) -> StagedRow:
        event_id, account, meter = event_id.strip(), account.strip(), meter.strip()
        quantity, occurred = quantity.strip(), occurred.strip()
        if not (event_id and account and meter and quantity and occurred):
            values = (event_id, account, meter, quantity, occurred)
            missing = ", ".join(name for name, value in zip(FIELDS, values, strict=True) if not value)
            return self.failed(line_no, RejectReason.MISSING_FIELD, f"missing {missing}", event_id, account, meter)
        if len(event_id) > EVENT_ID_LENGTH:
            return self.failed(line_no, RejectReason.FIELD_TOO_LONG,
                               f"event_id longer than {EVENT_ID_LENGTH} characters", event_id, account, meter)
        price = self.prices.get(meter)
        if price is None:
            return self.failed(line_no, RejectReason.UNKNOWN_METER, f"unknown meter {meter!r}",
                               event_id, account, meter)
        if _QUANTITY.fullmatch(quantity) is None:
            reason, message = _quantity_problem(quantity)
            return self.failed(line_no, reason, message, event_id, account, meter)
        good = _INSTANT_OK.fullmatch(occurred)
        if good is None or (good.group(1) > "28" and not _day_exists(occurred)):
            reason, message = _instant_problem(occurred, _INSTANT.fullmatch(occurred))
            return self.failed(line_no, reason, message, event_id, account, meter)
        if not self.exact:
            return (line_no, event_id, account[:ACCOUNT_LENGTH], meter, quantity, None, occurred, None, None, None)
        exact = Decimal(quantity)
        amount = _WIDE.multiply(exact, price).quantize(MICRO, rounding=ROUND_HALF_UP)
        utc = datetime.fromisoformat(occurred).astimezone(UTC).replace(tzinfo=None)
        at = utc.isoformat(sep=" ", timespec="microseconds")
        return (line_no, event_id, account[:ACCOUNT_LENGTH], meter, str(exact.quantize(MICRO)), str(amount), at,
                at[:10], None, None)

    @staticmethod
    def failed(line_no: int, reason: RejectReason, message: str, event_id: str | None = None,
               account: str | None = None, meter: str | None = None) -> StagedRow:
        return (
            line_no,
            event_id[:EVENT_ID_LENGTH] if event_id else None,
            account[:ACCOUNT_LENGTH] if account else None,
            meter[:METER_LENGTH] if meter else None,
            None, None, None, None, str(reason), message[:MESSAGE_LENGTH],
        )


def _quantity_problem(quantity: str) -> tuple[RejectReason, str]:
    if _NUMBER.fullmatch(quantity) is None:
        return RejectReason.BAD_QUANTITY, f"quantity {quantity!r} is not a decimal number"
    if quantity.startswith("-") and Decimal(quantity) != 0:
        return RejectReason.NEGATIVE_QUANTITY, f"quantity {quantity} is negative"
    if quantity.startswith(("+", "-")):
        return RejectReason.BAD_QUANTITY, f"quantity {quantity!r} must be written without a sign"
    return RejectReason.QUANTITY_OUT_OF_RANGE, f"quantity {quantity} has more than 12 integer digits or 6 decimals"


def _day_exists(occurred: str) -> bool:
    return int(occurred[8:10]) <= calendar.monthrange(int(occurred[:4]), int(occurred[5:7]))[1]


def _instant_problem(occurred: str, m: re.Match[str] | None) -> tuple[RejectReason, str]:
    """Why a timestamp is refused (string comparisons on its fixed-width parts)."""
    if m is None:
        return RejectReason.BAD_TIMESTAMP, f"occurred_at {occurred!r} is not an ISO 8601 timestamp"
    year, month, day, hour, minute, second, off_hour, off_minute = m.groups()
    valid = (
        "1000" <= year <= "2999" and "01" <= month <= "12" and "01" <= day <= "31" and hour <= "23"
        and minute <= "59" and (second is None or second <= "59")
        and (off_hour is None or off_hour <= "14") and (off_minute is None or off_minute <= "59")
    )
    if valid and day > "28":
        valid = int(day) <= calendar.monthrange(int(year), int(month))[1]
    if not valid:
        return RejectReason.BAD_TIMESTAMP, f"occurred_at {occurred!r} is not a valid date and time"
    if not occurred.endswith("Z") and off_hour is None:
        return RejectReason.TIMESTAMP_WITHOUT_ZONE, f"occurred_at {occurred!r} has no time zone"
    return RejectReason.BAD_TIMESTAMP, f"occurred_at {occurred!r} is not a valid timestamp"


class _Lines:
    """The lines of a binary file as text; bad lines are noted in ``bad`` (by line number) and yielded blank.

    With ``capture``, ``texts`` collects the lines yielded since the caller last cleared it, so a CSV
    record that (wrongly) spans several lines can be taken apart again.
    """

    def __init__(self, handle: io.BufferedReader, *, capture: bool) -> None:
        self.handle = handle
        self.capture = capture
        self.bad: dict[int, str] = {}
        self.texts: list[str] = []
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        readline = self.handle.readline
        keep = self.texts.append if self.capture else None
        n = 0
        while raw := readline(MAX_LINE_BYTES + 1):
            n += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                self.bad[n] = f"line longer than {MAX_LINE_BYTES // 1024} KiB"
                raw = b""
            elif b"\x00" in raw:
                self.bad[n] = "line contains NUL bytes"
                raw = b""
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.bad[n] = "line is not valid UTF-8"
                text = ""
            if n == 1 and text.startswith("\ufeff"):
                text = text[1:]
            self.count = n
            if keep is not None:
                keep(text)
            yield text


def read_records(handle: BinaryIO, fmt: FileFormat, normalizer: Normalizer, stats: ReadStats) -> Iterator[StagedRow]:
    """Every record of an open binary file as a staging row; ``stats`` is complete once exhausted."""
    buffered = io.BufferedReader(_HashingReader(handle, stats), buffer_size=1 << 20)  # type: ignore[arg-type]
    lines = _Lines(buffered, capture=fmt == FileFormat.CSV)
    if fmt == FileFormat.CSV:
        yield from _csv_rows(lines, normalizer)
    else:
        yield from _jsonl_rows(lines, normalizer)
    # Drain anything the parser left unread so the checksum covers the whole file.
    while buffered.read(1 << 20):
        pass
    stats.lines = lines.count
    stats.checksum = stats._hash.hexdigest()


def _csv_rows(lines: _Lines, normalizer: Normalizer) -> Iterator[StagedRow]:
    """Records after the header; each physical line is one record (a quote never joins lines)."""
    reader = csv.reader(iter(lines))
    texts, bad = lines.texts, lines.bad
    failed, row = normalizer.failed, normalizer.row
    header: tuple[int, ...] | None = None
    width = 0
    e = a = m = q = t = 0
    next_line = 1
    while True:
        try:
            for fields in reader:
                if len(texts) != 1:
                    break
                texts.clear()
                line_no = next_line
                next_line += 1
                if bad and line_no in bad:
                    yield failed(line_no, RejectReason.MALFORMED_LINE, bad[line_no])
                elif len(fields) == width and header is not None:
                    yield row(line_no, fields[e], fields[a], fields[m], fields[q], fields[t])
                elif not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # a blank line is not a record
                elif header is None:
                    header = _header_columns(fields)
                    e, a, m, q, t = header
                    width = len(fields)
                else:
                    yield failed(line_no, RejectReason.MALFORMED_LINE, f"expected {width} fields, found {len(fields)}")
            else:
                return
        except csv.Error:
            pass
        # An unbalanced quote made the reader join lines (or gave up): parse each of them on its own.
        span = list(texts)
        texts.clear()
        for text in span:
            line_no = next_line
            next_line += 1
            if bad and line_no in bad:
                yield failed(line_no, RejectReason.MALFORMED_LINE, bad[line_no])
                continue
            try:
                fields = next(csv.reader([text], strict=True), [])
            except csv.Error as exc:
                yield failed(line_no, RejectReason.MALFORMED_LINE, f"bad CSV quoting: {exc}")
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if header is None:
                header = _header_columns(fields)
                e, a, m, q, t = header
                width = len(fields)
            elif len(fields) == width:
                yield row(line_no, fields[e], fields[a], fields[m], fields[q], fields[t])
            else:
                yield failed(line_no, RejectReason.MALFORMED_LINE, f"expected {width} fields, found {len(fields)}")


def _header_columns(header: list[str]) -> tuple[int, ...]:
    names = [h.strip().lower() for h in header]
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise SourceError(f"the CSV header lacks column(s): {', '.join(missing)} (found: {', '.join(names)})")
    twice = sorted({f for f in FIELDS if names.count(f) > 1})
    if twice:
        raise SourceError(f"the CSV header names column(s) twice: {', '.join(twice)}")
    return tuple(names.index(f) for f in FIELDS)


def _jsonl_rows(lines: _Lines, normalizer: Normalizer) -> Iterator[StagedRow]:
    bad, failed = lines.bad, normalizer.failed
    loads: Callable[..., Any] = json.loads
    line_no = 0
    for text in lines:
        line_no += 1
        if bad and line_no in bad:
            yield failed(line_no, RejectReason.MALFORMED_LINE, bad[line_no])
            continue
        try:
            obj = loads(text, parse_float=Decimal)
        except (ValueError, RecursionError):
            if not text.strip():
                continue  # a blank line is not a record
            yield failed(line_no, RejectReason.MALFORMED_LINE, "not valid JSON")
            continue
        if not isinstance(obj, dict):
            yield failed(line_no, RejectReason.MALFORMED_LINE, "not a JSON object")
            continue
        yield _json_record(line_no, obj, normalizer)


def _json_record(line_no: int, obj: dict[str, Any], normalizer: Normalizer) -> StagedRow:
    values: list[str] = []
    for name in FIELDS:
        value = obj.get(name)
        if value is None:
            values.append("")
        elif isinstance(value, str):
            values.append(value)
        elif _json_type_ok(name, value):
            values.append(format(value, "f") if isinstance(value, Decimal) else str(value))
        else:
            ids = [v if isinstance(v, str) else None for v in (obj.get(f) for f in FIELDS[:3])]
            reason = {"quantity": RejectReason.BAD_QUANTITY, "occurred_at": RejectReason.BAD_TIMESTAMP}.get(
                name, RejectReason.MALFORMED_LINE)
            return normalizer.failed(line_no, reason, f"{name} has the wrong JSON type ({type(value).__name__})",
                                     *ids)
    return normalizer.row(line_no, *values)


def _json_type_ok(name: str, value: Any) -> bool:
    """Besides strings: integer ids, and numbers for the quantity."""
    if isinstance(value, bool) or name == "occurred_at":
        return False
    if name == "quantity":
        return isinstance(value, int | Decimal)
    return isinstance(value, int)
