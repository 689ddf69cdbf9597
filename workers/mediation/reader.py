"""Import: read a usage file in blocks, hashing it as it goes, and stage one row per record.

Memory stays flat whatever the file size: the file is read 1 MiB at a time (a line longer than that
is refused as a record, never held whole) and each row is handed on as soon as it is made. A line is
a record: blank lines are skipped, and a CSV quote never joins lines (an unbalanced quote fails
that line only). Lines that are not UTF-8 or hold NUL bytes fail as malformed.

CSV lines in the plain form — printable ASCII without quotes, spaces or backslashes, a decimal
quantity and an RFC 3339 timestamp — are recognised a block at a time by one regular expression
built from the header (``findall`` over the block: no Python call per line) and, for PostgreSQL,
handed on as ``COPY`` text already formatted; every other line takes the careful path (``csv``
module, then :class:`~workers.mediation.records.Normalizer`). Both accept and refuse the same
records; the first is only faster.
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
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

from workers.mediation.properties import FileFormat
from workers.mediation.records import (
    ACCOUNT_LENGTH,
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
TextSink = Callable[[str], Any]
"""Takes staging rows already in PostgreSQL's ``COPY`` text format (all the columns of ``StagedRow``)."""


def read_records(handle: BinaryIO, fmt: FileFormat, normalizer: Normalizer, stats: ReadStats, write: Sink,
                 write_text: TextSink | None = None) -> None:
    """Hand every record of an open binary file to ``write`` as a staging row; with ``write_text`` (and a
    normalizer for PostgreSQL), records in the plain form go to it instead, a block of ``COPY`` text at a time."""
    buffered = io.BufferedReader(_HashingReader(handle, stats), buffer_size=BLOCK)
    blocks = _line_blocks(buffered)
    lines = _CsvLines if fmt == FileFormat.CSV else _JsonLines
    stats.lines = lines(normalizer, write, write_text if not normalizer.exact else None).read(blocks)
    while buffered.read(BLOCK):  # what the parser left unread still counts for the checksum
        pass
    stats.checksum = stats._hash.hexdigest()


def records(handle: BinaryIO, fmt: FileFormat, normalizer: Normalizer) -> list[StagedRow]:
    """All the staging rows of a (small) file in line order, for tests: ``COPY`` text read back into rows."""
    rows: list[StagedRow] = []

    def text_rows(text: str) -> None:
        for line in text.splitlines():
            values = [None if value == "\\N" else value for value in line.split("\t")]
            rows.append((int(values[0] or 0), *values[1:]))  # type: ignore[arg-type]

    read_records(handle, fmt, normalizer, ReadStats(), rows.append, text_rows)
    return sorted(rows, key=lambda row: row[0])


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


_PLAIN_TEXT = r"[!#-+\--\[\]-~]"
"""A character of a plain id: printable ASCII but space, ``"``, ``,`` and ``\\`` (nothing ``COPY`` text escapes)."""


Scan = Callable[[str], list[tuple[str, ...]]]
"""Finds every line of a block of text (each ending in a newline), in order: for a line in the plain form
the groups ``e a m q t day`` of its record fields, for any other line empty strings."""


def _plain_lines(header: list[str]) -> Scan:
    """The plain form of a CSV line under this header."""
    groups = {"event_id": rf"(?P<e>{_PLAIN_TEXT}{{1,100}})", "account_number": rf"(?P<a>{_PLAIN_TEXT}+)",
              "meter": rf"(?P<m>{_PLAIN_TEXT}+)", "quantity": rf"(?P<q>{QUANTITY_PATTERN})",
              "occurred_at": rf"(?P<t>{INSTANT_PATTERN})"}
    parts = [groups.get(name, r"[^,\"\r\n]*") for name in header]
    pattern = re.compile("(?:" + ",".join(parts) + r"\r?|[^\n]*)\n")
    order = tuple(pattern.groupindex[name] - 1 for name in ("e", "a", "m", "q", "t", "day"))
    if order == tuple(range(6)):  # the header's usual order: the groups as they are
        return pattern.findall
    fields = itemgetter(*order)
    return lambda text: list(map(fields, pattern.findall(text)))


_JSON_GAP = r"[ \t]*"
_plain_json: Scan = re.compile(
    "(?:" + _JSON_GAP + r"\{" + rf"{_JSON_GAP},{_JSON_GAP}".join(
        rf'"{name}"{_JSON_GAP}:{_JSON_GAP}{value}' for name, value in (
            ("event_id", rf'"(?P<e>{_PLAIN_TEXT}{{1,100}})"'), ("account_number", rf'"(?P<a>{_PLAIN_TEXT}+)"'),
            ("meter", rf'"(?P<m>{_PLAIN_TEXT}+)"'), ("quantity", r"(?P<q>(?:0|[1-9]\d{0,11})(?:\.\d{1,6})?)"),
            ("occurred_at", rf'"(?P<t>{INSTANT_PATTERN})"'))
    ) + _JSON_GAP + r"\}" + r"[ \t\r]*|[^\n]*)\n"
).findall
"""The plain form of a JSON line: the five fields in the contract's order, strings without escapes and a JSON
number as the quantity (what ``json`` decodes to the same values); spaces and tabs between tokens."""


def _header(fields: list[str]) -> tuple[list[str], tuple[int, ...]]:
    names = [h.strip().lower() for h in fields]
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise SourceError(f"the CSV header lacks column(s): {', '.join(missing)} (found: {', '.join(names)})")
    twice = sorted({f for f in FIELDS if names.count(f) > 1})
    if twice:
        raise SourceError(f"the CSV header names column(s) twice: {', '.join(twice)}")
    return names, tuple(names.index(f) for f in FIELDS)


class _Lines:
    """Stages a file's records: lines in the plain form a block at a time, the others one by one (``careful``)."""

    def __init__(self, normalizer: Normalizer, write: Sink, write_text: TextSink | None, plain: Scan | None) -> None:
        self.normalizer, self.write, self.write_text = normalizer, write, write_text
        self.plain = plain  # a CSV file's is known once its header is read
        self.n = 0  # the line number reached

    def read(self, blocks: Iterator[Lines]) -> int:
        """Stage every block's records; returns the number of lines read."""
        for lines, problems in blocks:
            first = 0
            while self.plain is None and first < len(lines):  # up to a CSV header, line by line
                self.n += 1
                self.careful(lines[first], problems)
                first += 1
            if first < len(lines):
                self.block(lines[first:] if first else lines, problems)
        return self.n

    def block(self, lines: list[str], problems: dict[int, str]) -> None:
        assert self.plain is not None
        prices, accepted, write, n = self.normalizer.prices, self.normalizer.accepted, self.write, self.n
        copy_rows: list[str] = []
        for text, (e, a, meter, q, t, day) in zip(lines, self.plain("\n".join(lines) + "\n"), strict=True):
            n += 1
            if e and meter in prices and (day <= "28" or day_exists(t)):
                if self.write_text is not None:
                    copy_rows.append(f"{n}\t{e}\t{a[:ACCOUNT_LENGTH]}\t{meter}\t{q}\t\\N\t{t}\t\\N\t\\N\t\\N\n")
                else:
                    write(accepted(n, e, a, meter, q, t))
            else:
                self.n = n
                self.careful(text, problems)
        self.n = n
        if copy_rows:
            assert self.write_text is not None
            self.write_text("".join(copy_rows))

    def careful(self, text: str, problems: dict[int, str]) -> None:
        """Line ``self.n``, not in the plain form (or a CSV header)."""
        raise NotImplementedError


class _CsvLines(_Lines):
    """The records after the header; the plain form follows the header's columns."""

    def __init__(self, normalizer: Normalizer, write: Sink, write_text: TextSink | None) -> None:
        super().__init__(normalizer, write, write_text, None)
        self.columns: tuple[int, ...] = ()
        self.width = 0

    def careful(self, text: str, problems: dict[int, str]) -> None:
        """Through the ``csv`` module."""
        n, failed = self.n, self.normalizer.failed
        if problems and n in problems:
            if self.plain is None:
                raise SourceError(f"line {n} cannot be the CSV header: {problems[n]}")
            self.write(failed(n, MALFORMED, problems[n]))
            return
        if not text.strip():
            return  # a blank line is not a record
        try:
            fields = next(csv.reader((text.rstrip("\r"),), strict=True))
        except csv.Error as exc:
            if self.plain is None:
                raise SourceError(f"line {n} cannot be the CSV header: bad CSV quoting: {exc}") from exc
            self.write(failed(n, MALFORMED, f"bad CSV quoting: {exc}"))
            return
        if self.plain is None:
            names, self.columns = _header(fields)
            self.width, self.plain = len(names), _plain_lines(names)
        elif len(fields) != self.width:
            self.write(failed(n, MALFORMED, f"expected {self.width} fields, found {len(fields)}"))
        else:
            e_, a_, m_, q_, t_ = self.columns
            self.write(self.normalizer.row(n, fields[e_], fields[a_], fields[m_], fields[q_], fields[t_]))


class _JsonLines(_Lines):
    """One record per JSON line; the plain form is an object of the five fields in the contract's order."""

    def __init__(self, normalizer: Normalizer, write: Sink, write_text: TextSink | None) -> None:
        super().__init__(normalizer, write, write_text, _plain_json)

    def careful(self, text: str, problems: dict[int, str]) -> None:
        """Through the ``json`` module."""
        n, failed = self.n, self.normalizer.failed
        if problems and n in problems:
            self.write(failed(n, MALFORMED, problems[n]))
            return
        try:
            obj = _json_object(text)
        except (ValueError, RecursionError):
            if text.strip():  # a blank line is not a record
                self.write(failed(n, MALFORMED, "not valid JSON"))
            return
        if isinstance(obj, dict):
            self.write(_json_record(n, obj, self.normalizer))
        else:
            self.write(failed(n, MALFORMED, "not a JSON object"))


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
