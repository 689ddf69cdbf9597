"""Import: read a usage file in blocks, hashing it as it goes, and stage one row per record.

Memory stays flat whatever the file size: the file is read 1 MiB at a time (a line longer than that
is refused as a record, never held whole) and each row is handed on as soon as it is made. A line is
a record: blank lines are skipped, and a CSV quote never joins lines (an unbalanced quote fails
that line only). Lines that are not UTF-8 or hold NUL bytes fail as malformed.

CSV lines in the plain form — no quotes or spaces, a decimal quantity and an RFC 3339 timestamp —
are checked by one regular expression built from the header; every other line takes the careful
path (``csv`` module, then :class:`~workers.mediation.records.Normalizer`). Both accept and refuse
the same records; the first is only faster.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from workers.mediation.properties import FileFormat
from workers.mediation.records import (
    FIELDS,
    INSTANT_PATTERN,
    QUANTITY_PATTERN,
    Normalizer,
    RejectReason,
    SourceError,
    StagedRow,
    day_exists,
)

BLOCK = 1 << 20
MAX_LINE_BYTES = BLOCK
TOO_LONG = "line longer than 1 MiB"
MALFORMED = RejectReason.MALFORMED_LINE
_json_object = json.JSONDecoder(parse_float=Decimal).decode
"""``json.loads(text, parse_float=Decimal)`` without building a decoder per line (half the cost of a line)."""


@dataclass
class ReadStats:
    """What reading a file found; ``checksum`` is the SHA-256 of all its bytes."""

    lines: int = 0
    size_bytes: int = 0
    checksum: str = ""
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)


class _HashingReader(io.RawIOBase):
    """A raw reader that feeds every byte it reads into the hash of ``stats``."""

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
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


Sink = Callable[[StagedRow], Any]


def read_records(handle: BinaryIO, fmt: FileFormat, normalizer: Normalizer, stats: ReadStats, write: Sink) -> None:
    """Hand every record of an open binary file to ``write`` as a staging row, in order."""
    buffered = io.BufferedReader(_HashingReader(handle, stats), buffer_size=BLOCK)
    blocks = _line_blocks(buffered)
    if fmt == FileFormat.CSV:
        stats.lines = _csv_rows(blocks, normalizer, write)
    else:
        stats.lines = _jsonl_rows(blocks, normalizer, write)
    while buffered.read(BLOCK):  # what the parser left unread still counts for the checksum
        pass
    stats.checksum = stats._hash.hexdigest()


def records(handle: BinaryIO, fmt: FileFormat, normalizer: Normalizer) -> list[StagedRow]:
    """All the staging rows of a (small) file, for tests."""
    rows: list[StagedRow] = []
    read_records(handle, fmt, normalizer, ReadStats(), rows.append)
    return rows


Lines = tuple[list[str], dict[int, str]]
"""A block of lines as text, and the problems of unreadable ones by line number (their text is blank)."""


def _line_blocks(buffered: io.BufferedReader[Any]) -> Iterator[Lines]:
    """The file's lines, a block (about 1 MiB) at a time; a line longer than a block is refused."""
    carry = b""
    skipping = False  # inside a line longer than a block: drop its bytes until it ends
    numbered = 0
    block = buffered.read(BLOCK)
    if block.startswith(codecs.BOM_UTF8):
        block = block[len(codecs.BOM_UTF8):]
    while block:
        if skipping:
            cut = block.find(b"\n")
            if cut >= 0:
                numbered += 1
                yield [""], {numbered: TOO_LONG}
                block, skipping = block[cut + 1:], False
        if not skipping:
            data = carry + block
            cut = data.rfind(b"\n")
            carry = data[cut + 1:]
            if len(carry) > MAX_LINE_BYTES:
                carry, skipping = b"", True
            if cut >= 0:
                lines = _decode(data[:cut], numbered)
                numbered += len(lines[0])
                yield lines
        block = buffered.read(BLOCK)
    if skipping:
        yield [""], {numbered + 1: TOO_LONG}
    elif carry:
        yield _decode(carry, numbered)


def _decode(chunk: bytes, before: int) -> Lines:
    """Whole lines (without their newlines) as text; line numbers continue from ``before``."""
    if b"\x00" not in chunk:
        try:
            whole: list[str] | None = chunk.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            whole = None
        if whole is not None and (len(chunk) <= MAX_LINE_BYTES or max(map(len, whole)) <= MAX_LINE_BYTES):
            return whole, {}
    lines: list[str] = []
    problems: dict[int, str] = {}
    for n, raw in enumerate(chunk.split(b"\n"), start=before + 1):
        try:
            if len(raw) > MAX_LINE_BYTES:
                problems[n] = TOO_LONG
            elif b"\x00" in raw:
                problems[n] = "line contains NUL bytes"
            else:
                lines.append(raw.decode("utf-8"))
                continue
        except UnicodeDecodeError:
            problems[n] = "line is not valid UTF-8"
        lines.append("")
    return lines, problems


def _plain_line(header: list[str]) -> Callable[[str], re.Match[str] | None]:
    """A matcher for a CSV line in the plain form, with groups ``e a m q t day`` for the record fields."""
    groups = {"event_id": r"(?P<e>[^,\"\s]{1,100})", "account_number": r"(?P<a>[^,\"\s]+)",
              "meter": r"(?P<m>[^,\"\s]+)", "quantity": rf"(?P<q>{QUANTITY_PATTERN})",
              "occurred_at": rf"(?P<t>{INSTANT_PATTERN})"}
    parts = [groups.get(name, r"[^,\"\r\n]*") for name in header]
    return re.compile(",".join(parts) + r"\r?\n?").fullmatch


def _header(fields: list[str]) -> tuple[list[str], tuple[int, ...]]:
    names = [h.strip().lower() for h in fields]
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise SourceError(f"the CSV header lacks column(s): {', '.join(missing)} (found: {', '.join(names)})")
    twice = sorted({f for f in FIELDS if names.count(f) > 1})
    if twice:
        raise SourceError(f"the CSV header names column(s) twice: {', '.join(twice)}")
    return names, tuple(names.index(f) for f in FIELDS)


def _csv_rows(blocks: Iterator[Lines], normalizer: Normalizer, write: Sink) -> int:
    """Stage the records after the header; returns the number of lines read."""
    failed, careful, accepted, prices = normalizer.failed, normalizer.row, normalizer.accepted, normalizer.prices
    quick = not normalizer.exact  # PostgreSQL takes the checked strings as they are
    plain: Callable[[str], re.Match[str] | None] | None = None
    columns: tuple[int, ...] = ()
    width = n = 0
    for lines, problems in blocks:
        for text in lines:
            n += 1
            if problems and n in problems:
                if plain is None:
                    raise SourceError(f"line {n} cannot be the CSV header: {problems[n]}")
                write(failed(n, MALFORMED, problems[n]))
                continue
            if plain is not None and (m := plain(text)) is not None:
                e, a, meter, q, t, day = m.group("e", "a", "m", "q", "t", "day")
                if meter in prices and (day <= "28" or day_exists(t)):
                    if quick:
                        write((n, e, a[:64], meter, q, None, t, None, None, None))
                    else:
                        write(accepted(n, e, a, meter, q, t))
                    continue
            if not text.strip():
                continue  # a blank line is not a record
            try:
                fields = next(csv.reader((text.rstrip("\r"),), strict=True))
            except csv.Error as exc:
                if plain is None:
                    raise SourceError(f"line {n} cannot be the CSV header: bad CSV quoting: {exc}") from exc
                write(failed(n, MALFORMED, f"bad CSV quoting: {exc}"))
                continue
            if plain is None:
                names, columns = _header(fields)
                width, plain = len(names), _plain_line(names)
            elif len(fields) != width:
                write(failed(n, MALFORMED, f"expected {width} fields, found {len(fields)}"))
            else:
                e_, a_, m_, q_, t_ = columns
                write(careful(n, fields[e_], fields[a_], fields[m_], fields[q_], fields[t_]))
    return n


def _jsonl_rows(blocks: Iterator[Lines], normalizer: Normalizer, write: Sink) -> int:
    """Stage one record per JSON line; returns the number of lines read."""
    failed = normalizer.failed
    decode = _json_object
    n = 0
    for lines, problems in blocks:
        for text in lines:
            n += 1
            if problems and n in problems:
                write(failed(n, MALFORMED, problems[n]))
                continue
            try:
                obj = decode(text)
            except (ValueError, RecursionError):
                if text.strip():
                    write(failed(n, MALFORMED, "not valid JSON"))
                continue  # a blank line is not a record
            if isinstance(obj, dict):
                write(_json_record(n, obj, normalizer))
            else:
                write(failed(n, MALFORMED, "not a JSON object"))
    return n


def _json_record(line_no: int, obj: dict[str, Any], normalizer: Normalizer) -> StagedRow:
    get = obj.get
    e, a, m, q, t = get("event_id"), get("account_number"), get("meter"), get("quantity"), get("occurred_at")
    if type(e) is str and type(a) is str and type(m) is str and type(t) is str:  # the usual shape, quickly
        if type(q) is Decimal:
            return normalizer.row(line_no, e, a, m, format(q, "f"), t)
        if type(q) is str or type(q) is int:
            return normalizer.row(line_no, e, a, m, str(q), t)
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
                name, MALFORMED)
            return normalizer.failed(line_no, reason, f"{name} has the wrong JSON type ({_json_type(value)})",
                                     *ids)
    return normalizer.row(line_no, *values)


def _json_type_ok(name: str, value: Any) -> bool:
    """Besides strings: integer ids, and numbers for the quantity."""
    if isinstance(value, bool) or name == "occurred_at":
        return False
    if name == "quantity":
        return isinstance(value, int | Decimal)
    return isinstance(value, int)


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type (``string``, ``number``, …), as the sender wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "value"
