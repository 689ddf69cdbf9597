"""Import and normalize, without a database: the record checks (table-driven) and the streaming reader."""

from __future__ import annotations

import io
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest

from workers.mediation.properties import FileFormat
from workers.mediation.reader import MAX_LINE_BYTES, ReadStats, file_checksum, read_records, records
from workers.mediation.records import Normalizer, RejectReason, SourceError

PRICES = {"data_gb": Decimal("0.10"), "sms": Decimal("0.05"), "voice_min": Decimal("0.015")}
HEADER = "event_id,account_number,meter,quantity,occurred_at\n"
R = RejectReason


def csv_rows(body: str | bytes, *, exact: bool = True, header: str = HEADER) -> list[tuple[object, ...]]:
    data = (header.encode() + body) if isinstance(body, bytes) else (header + body).encode()
    return list(records(io.BytesIO(data), FileFormat.CSV, Normalizer(PRICES, exact=exact)))


def reason_of(quantity: str = "1", occurred: str = "2026-05-01T10:00:00Z", *, exact: bool = True,
              meter: str = "data_gb") -> str | None:
    (row,) = csv_rows(f"E1,ACC-1,{meter},{quantity},{occurred}\n", exact=exact)
    return row[8]  # type: ignore[return-value]


@pytest.mark.parametrize("exact", [True, False], ids=["sqlite", "postgres"])
@pytest.mark.parametrize(("quantity", "reason"), [
    ("0", None),
    ("1", None),
    ("1.5", None),
    ("0.000001", None),
    ("999999999999.999999", None),
    (".5", None),
    ("5.", None),
    ("-1", R.NEGATIVE_QUANTITY),
    ("-0.5", R.NEGATIVE_QUANTITY),
    ("-0", R.BAD_QUANTITY),
    ("+1", R.BAD_QUANTITY),
    ("abc", R.BAD_QUANTITY),
    ("1e3", R.BAD_QUANTITY),
    ("1_000", R.BAD_QUANTITY),
    ("NaN", R.BAD_QUANTITY),
    ("1,5", R.BAD_QUANTITY),
    ("1.2345678", R.QUANTITY_OUT_OF_RANGE),
    ("1000000000000", R.QUANTITY_OUT_OF_RANGE),
])
def test_quantities(quantity: str, reason: str | None, exact: bool) -> None:
    if quantity == "1,5":  # a comma splits the field: the line has a field too many
        assert reason_of(f'"{quantity}"', exact=exact) == reason
        return
    assert reason_of(quantity, exact=exact) == reason


@pytest.mark.parametrize("exact", [True, False], ids=["sqlite", "postgres"])
@pytest.mark.parametrize(("occurred", "reason"), [
    ("2026-05-01T10:00:00Z", None),
    ("2026-05-01T10:00Z", None),
    ("2026-05-01 10:00:00Z", None),
    ("2026-05-01T10:00:00.123456+02:00", None),
    ("2026-05-01T10:00:00-0530", None),
    ("2026-05-01T10:00:00+14", None),
    ("2024-02-29T10:00:00Z", None),
    ("2026-02-29T10:00:00Z", R.BAD_TIMESTAMP),
    ("2026-04-31T10:00:00Z", R.BAD_TIMESTAMP),
    ("2026-13-01T10:00:00Z", R.BAD_TIMESTAMP),
    ("2026-05-01T24:00:00Z", R.BAD_TIMESTAMP),
    ("2026-05-01T10:60:00Z", R.BAD_TIMESTAMP),
    ("2026-05-01T10:00:00+15:00", R.BAD_TIMESTAMP),
    ("2026-05-01T10:00:00.1234567Z", R.BAD_TIMESTAMP),
    ("0999-05-01T10:00:00Z", R.BAD_TIMESTAMP),
    ("2026-05-01T10:00:00z", R.BAD_TIMESTAMP),
    ("20260501T100000Z", R.BAD_TIMESTAMP),
    ("yesterday", R.BAD_TIMESTAMP),
    ("1714557600", R.BAD_TIMESTAMP),
    ("2026-05-01T10:00:00", R.TIMESTAMP_WITHOUT_ZONE),
    ("2026-05-01 10:00", R.TIMESTAMP_WITHOUT_ZONE),
    ("2026-05-01", R.BAD_TIMESTAMP),
])
def test_timestamps(occurred: str, reason: str | None, exact: bool) -> None:
    assert reason_of(occurred=occurred, exact=exact) == reason


def test_exact_rows_are_rated_half_up_and_normalized_to_utc() -> None:
    rows = csv_rows(
        "E1,ACC-1,sms,0.00001,2026-05-01T23:30:00-02:00\n"  # 0.0000005 → 0.000001; next day in UTC
        "E2,ACC-1,voice_min,7.5,2026-05-01T00:00:00+00:00\n"
    )
    assert rows == [
        (2, "E1", "ACC-1", "sms", "0.000010", "0.000001", "2026-05-02 01:30:00.000000", "2026-05-02", None, None),
        (3, "E2", "ACC-1", "voice_min", "7.500000", "0.112500", "2026-05-01 00:00:00.000000", "2026-05-01",
         None, None),
    ]


def test_postgres_rows_keep_the_checked_strings_for_the_database_to_parse() -> None:
    (row,) = csv_rows("E1,ACC-1,sms,0.00001,2026-05-01T23:30:00-02:00\n", exact=False)
    assert row == (2, "E1", "ACC-1", "sms", "0.00001", None, "2026-05-01T23:30:00-02:00", None, None, None)


@pytest.mark.parametrize("exact", [True, False], ids=["sqlite", "postgres"])
def test_plain_and_careful_csv_paths_agree(exact: bool) -> None:
    # The same records, plain and in forms only the csv module reads (quotes, spaces, CRLF, extra columns)
    plain = csv_rows("E1,ACC-1,data_gb,1.5,2026-05-01T10:00:00Z\nE2,ACC-2,sms,2,2026-05-01T11:00:00+01:00\n",
                     exact=exact)
    careful = csv_rows('"E1", ACC-1 ,"data_gb",1.5,2026-05-01T10:00:00Z\r\n'
                       'E2,ACC-2,sms,"2",2026-05-01T11:00:00+01:00\r\n', exact=exact)
    assert [r[1:] for r in careful] == [r[1:] for r in plain]
    reordered = csv_rows("x,2026-05-01T10:00:00Z,1.5,data_gb,ACC-1,E1\n",
                         header="note,occurred_at,quantity,meter,account_number,event_id\n", exact=exact)
    assert [r[1:] for r in reordered] == [plain[0][1:]]


@pytest.mark.parametrize("exact", [True, False], ids=["sqlite", "postgres"])
def test_ids_beyond_plain_ascii_take_the_careful_path_and_come_out_the_same(exact: bool) -> None:
    # Non-ASCII ids, a backslash (which COPY text would escape), a tab and an account longer than 64 characters
    rows = csv_rows("Évé-1,ACC-ü,data_gb,1,2026-05-01T10:00:00Z\n"
                    "E\\2,ACC\\1,data_gb,2,2026-05-01T10:00:00Z\n"
                    "E3\t,ACC-1,data_gb,3,2026-05-01T10:00:00Z\n"
                    f"E4,{'A' * 70},data_gb,4,2026-05-01T10:00:00Z\n", exact=exact)
    assert [(r[0], r[1], r[2], r[8]) for r in rows] == [
        (2, "Évé-1", "ACC-ü", None), (3, "E\\2", "ACC\\1", None), (4, "E3", "ACC-1", None), (5, "E4", "A" * 64, None),
    ]


@pytest.mark.parametrize("exact", [True, False], ids=["sqlite", "postgres"])
def test_line_numbers_hold_across_blocks_with_bad_and_blank_lines_between(exact: bool) -> None:
    # Given a file of several read blocks with a bad line, a blank line and a CRLF line in later blocks
    lines = [f"ev-{n:06d},ACC-{n % 97},sms,{n % 50}.25,2026-05-{1 + n % 31:02d}T10:00:00Z" for n in range(40_000)]
    lines[20_000] = "ev-bad,ACC-1,sms,abc,2026-05-01T10:00:00Z"
    lines[25_000] = ""
    lines[30_000] += "\r"
    rows = csv_rows("\n".join(lines) + "\n", exact=exact)
    # Then every record keeps its own line number (the header is line 1) and only the bad one fails
    assert len(rows) == 39_999 and [r[0] for r in rows] == [n + 2 for n in range(40_000) if n != 25_000]
    assert [(r[0], r[1], r[8]) for r in rows if r[8] is not None] == [(20_002, "ev-bad", R.BAD_QUANTITY)]
    assert rows[30_000 - 1][1:5] == ("ev-030000", "ACC-27", "sms", "0.25" if not exact else "0.250000")
    assert (rows[30][1], rows[30][8]) == ("ev-000030", None)  # 31 May: a day past the 28th, checked and kept


def test_malformed_lines_fail_one_by_one_and_blank_lines_are_not_records() -> None:
    rows = csv_rows(
        b"E1,ACC-1,data_gb,1\n"  # 2: a field short
        b'E2,ACC-1,"data_gb,1,2026-05-01T10:00:00Z\n'  # 3: unbalanced quote
        b"E3,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n"  # 4: fine, the quote above joined nothing
        b"\n"  # 5: blank
        b"   \n"  # 6: blank
        b"E4,ACC-1,data_gb,1,2026-05-01T10:00:00Z,extra\n"  # 7: a field too many
        b"E5,ACC-\xff,data_gb,1,2026-05-01T10:00:00Z\n"  # 8: not UTF-8
        b"E6,ACC-1,data_gb,1,2026-05-01T10:00:00Z\x00\n"  # 9: NUL byte
        b"E7,ACC-1,data_gb,1,2026-05-01T10:00:00Z"  # 10: no newline at the end
    )
    assert [(r[0], r[8], r[9]) for r in rows] == [
        (2, R.MALFORMED_LINE, "expected 5 fields, found 4"),
        (3, R.MALFORMED_LINE, "bad CSV quoting: unexpected end of data"),
        (4, None, None),
        (7, R.MALFORMED_LINE, "expected 5 fields, found 6"),
        (8, R.MALFORMED_LINE, "line is not valid UTF-8"),
        (9, R.MALFORMED_LINE, "line contains NUL bytes"),
        (10, None, None),
    ]


def test_missing_fields_are_named_and_ids_are_kept_for_the_reject() -> None:
    (row,) = csv_rows("E1,ACC-1,, ,2026-05-01T10:00:00Z\n")
    assert (row[1], row[2], row[8], row[9]) == ("E1", "ACC-1", R.MISSING_FIELD, "missing meter, quantity")
    (long_id,) = csv_rows(f"{'x' * 101},ACC-1,data_gb,1,2026-05-01T10:00:00Z\n")
    assert long_id[8] == R.FIELD_TOO_LONG and long_id[1] == "x" * 100


@pytest.mark.parametrize(("header", "message"), [
    ("event_id,account,meter,quantity,occurred_at\n", "lacks column(s): account_number"),
    ("event_id,account_number,meter,quantity,occurred_at,meter\n", "names column(s) twice: meter"),
    ('event_id,"account_number,meter,quantity,occurred_at\n', "cannot be the CSV header"),
])
def test_a_bad_header_fails_the_whole_file(header: str, message: str) -> None:
    with pytest.raises(SourceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        csv_rows("E1,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n", header=header)


def test_byte_order_mark_and_header_case_are_accepted() -> None:
    rows = csv_rows("E1,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n",
                    header="\ufeffEvent_ID, Account_Number ,METER,quantity,occurred_at\n")
    assert rows[0][8] is None


def test_a_line_longer_than_a_block_is_refused_without_being_held() -> None:
    huge = "x" * (MAX_LINE_BYTES + 10)
    rows = csv_rows(f"E1,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n{huge}\nE2,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n")
    assert [(r[0], r[8]) for r in rows] == [(2, None), (3, R.MALFORMED_LINE), (4, None)]
    assert rows[1][9] == "line longer than 1 MiB"


def test_jsonl_types_and_lines() -> None:
    data = (
        '\ufeff{"event_id": 7, "account_number": "ACC-1", "meter": "sms", "quantity": 1e-5, '
        '"occurred_at": "2026-05-01T10:00:00Z"}\n'
        "\n"
        '{"event_id": "J2", "account_number": "ACC-1", "meter": "sms", "quantity": 2.50, '
        '"occurred_at": "2026-05-01T10:00:00Z", "extra": [1]}\n'
        '{"event_id": true, "account_number": "ACC-1", "meter": "sms", "quantity": 1, '
        '"occurred_at": "2026-05-01T10:00:00Z"}\n'
        '{"event_id": "J4", "account_number": "ACC-1", "meter": "sms", "quantity": 1, "occurred_at": 1714557600}\n'
        '{"event_id": "J5", "account_number": null, "meter": "sms", "quantity": "1", '
        '"occurred_at": "2026-05-01T10:00:00Z"}\n'
        "not json\n"
        '"a string"\n'
    ).encode()
    rows = list(records(io.BytesIO(data), FileFormat.JSONL, Normalizer(PRICES, exact=True)))
    assert [(r[0], r[1], r[4], r[8]) for r in rows] == [
        (1, "7", "0.000010", None),
        (3, "J2", "2.500000", None),
        (4, None, None, R.MALFORMED_LINE),
        (5, "J4", None, R.BAD_TIMESTAMP),
        (6, "J5", None, R.MISSING_FIELD),
        (7, None, None, R.MALFORMED_LINE),
        (8, None, None, R.MALFORMED_LINE),
    ]


def jsonl_rows(body: str, *, exact: bool) -> list[tuple[object, ...]]:
    return list(records(io.BytesIO(body.encode()), FileFormat.JSONL, Normalizer(PRICES, exact=exact)))


def json_line(quantity: str = "2.50", *, event_id: str = '"J1"', occurred: str = "2026-05-01T10:00:00Z") -> str:
    return (f'{{"event_id": {event_id}, "account_number": "ACC-1", "meter": "sms", "quantity": {quantity}, '
            f'"occurred_at": "{occurred}"}}\n')


@pytest.mark.parametrize("exact", [True, False], ids=["sqlite", "postgres"])
def test_plain_and_careful_json_paths_agree(exact: bool) -> None:
    # The same records in the plain form (contract order, no escapes) and in forms only json reads
    plain = jsonl_rows(json_line() + '{"event_id":"J2","account_number":"ACC-2","meter":"data_gb","quantity":7,'
                                     '"occurred_at":"2026-05-31T23:00:00+02:00"} \r\n', exact=exact)
    careful = jsonl_rows('{"account_number": "ACC-1", "event_id": "J1", "meter": "sms", "quantity": 2.50, '
                         '"occurred_at": "2026-05-01T10:00:00Z"}\n'
                         '{"event_id":"J\\u0032","account_number":"ACC-2","meter":"data_gb","quantity":"7",'
                         '"occurred_at":"2026-05-31T23:00:00+02:00", "note": null}\n', exact=exact)
    assert [r[8] for r in plain] == [None, None]
    assert [r[1:] for r in careful] == [r[1:] for r in plain]


@pytest.mark.parametrize("exact", [True, False], ids=["sqlite", "postgres"])
@pytest.mark.parametrize(("quantity", "reason"), [
    ("0", None), ("0.5", None), ("1E3", None), ("01.5", R.MALFORMED_LINE), (".5", R.MALFORMED_LINE),
    ("5.", R.MALFORMED_LINE), ("-1", R.NEGATIVE_QUANTITY), ("1.2345678", R.QUANTITY_OUT_OF_RANGE),
    ("1000000000000", R.QUANTITY_OUT_OF_RANGE), ('"1.5"', None), ("true", R.BAD_QUANTITY),
])
def test_json_quantities_are_what_json_reads(quantity: str, reason: str | None, exact: bool) -> None:
    (row,) = jsonl_rows(json_line(quantity), exact=exact)
    assert row[8] == reason


def test_the_checksum_covers_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text(HEADER + "E1,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n" * 3)
    stats = ReadStats()
    with path.open("rb") as handle:
        read_records(handle, FileFormat.CSV, Normalizer(PRICES, exact=False), stats, lambda row: None)
    assert (stats.checksum, stats.size_bytes, stats.lines) == (file_checksum(path), path.stat().st_size, 4)


def test_memory_stays_flat_whatever_the_file_size(tmp_path: Path) -> None:
    # Given a file of a few read blocks and one four times larger
    def write(name: str, count: int) -> Path:
        path = tmp_path / name
        with path.open("w") as out:
            out.write(HEADER)
            for n in range(count):
                out.write(f"ev-{n:09d},ACC-{n % 997},data_gb,{n % 100}.5,2026-05-01T{n % 24:02d}:00:00Z\n")
        return path

    def peak(path: Path) -> int:
        count = 0

        def sink(row: object) -> None:
            nonlocal count
            count += 1

        tracemalloc.start()
        with path.open("rb") as handle:
            read_records(handle, FileFormat.CSV, Normalizer(PRICES, exact=False), ReadStats(), sink)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(write("small.csv", 40_000)), peak(write("large.csv", 160_000))
    # Then reading the larger one needs no more memory than the small one: a few blocks' worth
    assert large < 16 * MAX_LINE_BYTES
    assert large < small * 1.3
