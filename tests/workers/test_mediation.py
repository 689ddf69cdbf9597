"""Usage mediation through the executor with known answers, on SQLite and PostgreSQL.

The known file has one line of every kind: good records (one rated half up at the 7th decimal, one
in another zone crossing midnight UTC), every way a record fails, and every way one is filtered.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from workers_testkit import Drain, RecordingDispatcher, add_account

from cli.migrations import migrate_billing_database
from scheduler.clock import FrozenClock
from scheduler.errors import InvalidProperties, RetryUnavailable
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import JobTypeRegistry, load_registry
from scheduler.models import Job, JobRun, RunItem, RunStatus
from scheduler.outcomes import outcome_line
from scheduler.runs import RunCreate, act_on_run, create_manual_run, retry_run, send_apply, send_run
from scheduler.settings import Settings
from workers.billing import accounts
from workers.mediation import JOB_TYPE
from workers.mediation.staging import table_name
from workers.mediation.tables import usage_daily, usage_events, usage_files, usage_rejects
from workers.runtime.env import WorkerEnv, build_env
from workers.runtime.executor import build_context, execute_step, load_run

S = RunStatus

METERS = [
    {"meter": "data_gb", "unit": "GB", "price_per_unit": "0.10"},
    {"meter": "voice_min", "unit": "min", "price_per_unit": "0.015"},
    {"meter": "sms", "unit": "msg", "price_per_unit": "0.05"},
]

EARLIER_CSV = (
    "event_id,account_number,meter,quantity,occurred_at\n"
    "E-OLD,ACC-1,data_gb,4,2026-04-30T10:00:00Z\n"
)

# Line numbers count the header as line 1.
KNOWN_CSV = (
    b"event_id,account_number,meter,quantity,occurred_at\n"  # 1
    b"E1,ACC-1,data_gb,1.5,2026-05-01T10:00:00Z\n"  # 2 ok
    b"E2,ACC-1,data_gb,2.25,2026-05-01T23:30:00-02:00\n"  # 3 ok, UTC day 2026-05-02
    b"E3,ACC-2,voice_min,10,2026-05-01T08:00:00+02:00\n"  # 4 ok
    b"E4,ACC-1,,3,2026-05-01T10:00:00Z\n"  # 5 missing meter
    b"E5,ACC-1,data_gb,-3,2026-05-01T10:00:00Z\n"  # 6 negative
    b"E6,ACC-1,data_gb,abc,2026-05-01T10:00:00Z\n"  # 7 not a number
    b"E7,ACC-1,data_gb,1,yesterday\n"  # 8 bad timestamp
    b"E8,ACC-1,data_gb,1,2026-05-01T10:00:00\n"  # 9 no zone
    b"E9,ACC-1,video_hours,1,2026-05-01T10:00:00Z\n"  # 10 unknown meter
    b"E10,ACC-404,data_gb,1,2026-05-01T10:00:00Z\n"  # 11 unknown account
    b"E11,ACC-S,data_gb,1,2026-05-01T10:00:00Z\n"  # 12 suspended
    b"E12,ACC-C,data_gb,1,2026-05-01T10:00:00Z\n"  # 13 closed
    b"E1,ACC-1,data_gb,1.5,2026-05-01T10:00:00Z\n"  # 14 duplicate of line 2
    b"E-OLD,ACC-1,data_gb,4,2026-05-01T10:00:00Z\n"  # 15 mediated by the earlier run
    b"\n"  # 16 blank: not a record
    b"E13,ACC-2,sms,0.00001,2026-05-01T12:00:00Z\n"  # 17 ok, 0.0000005 rounds half up to 0.000001
    b'E14,ACC-2,voice_min,"7.5",2026-05-02T00:00:00Z\n'  # 18 ok, quoted field
    b"E15,ACC-1,data_gb,1.1234567,2026-05-01T10:00:00Z\n"  # 19 seven decimals
    b"E16,ACC-1,data_gb,1,2026-02-30T10:00:00Z\n"  # 20 no such day
    b"E17,ACC-1,data_gb,1\n"  # 21 a field short
    b'E18,ACC-1,"data_gb,1,2026-05-01T10:00:00Z\n'  # 22 unbalanced quote
    b"E19,ACC-1,data_gb,2,2026-05-01T11:00:00Z\n"  # 23 ok (after the bad quote)
    b"E5,ACC-1,data_gb,5,2026-05-01T12:00:00Z\n"  # 24 ok: line 6 with this id failed, so no duplicate
    b"E20,ACC-1,data_gb,1,2026-05-01T10:00:00Z\xff\n"  # 25 not UTF-8
)

KNOWN_JSONL = "\n".join([
    '{"event_id": "J1", "account_number": "ACC-1", "meter": "data_gb", "quantity": 1.5, '
    '"occurred_at": "2026-05-01T10:00:00Z"}',  # 1 ok
    '{"event_id": "J2", "account_number": "ACC-2", "meter": "voice_min", "quantity": "10", '
    '"occurred_at": "2026-05-01T08:00:00+02:00"}',  # 2 ok
    '{"event_id": "J3", "account_number": "ACC-1", "quantity": 3, "occurred_at": "2026-05-01T10:00:00Z"}',  # 3
    '{"event_id": "J4", "account_number": "ACC-1", "meter": "data_gb", "quantity": -3, '
    '"occurred_at": "2026-05-01T10:00:00Z"}',  # 4 negative
    '{"event_id": "J5", "account_number": "ACC-1", "meter": "data_gb", "quantity": "abc", '
    '"occurred_at": "2026-05-01T10:00:00Z"}',  # 5 not a number
    '{"event_id": "J6", "account_number": "ACC-1", "meter": "data_gb", "quantity": true, '
    '"occurred_at": "2026-05-01T10:00:00Z"}',  # 6 wrong JSON type
    '{"event_id": "J7", "account_number": "ACC-1", "meter": "data_gb", "quantity": 1, "occurred_at": "yesterday"}',
    '{"event_id": "J8", "account_number": "ACC-1", "meter": "data_gb", "quantity": 1, '
    '"occurred_at": "2026-05-01T10:00:00"}',  # 8 no zone
    '{"event_id": "J9", "account_number": "ACC-1", "meter": "video_hours", "quantity": 1, '
    '"occurred_at": "2026-05-01T10:00:00Z"}',  # 9 unknown meter
    '{"event_id": "J10", "account_number": "ACC-1", ',  # 10 not JSON
    "[1, 2, 3]",  # 11 not an object
    '{"event_id": "J12", "account_number": "ACC-404", "meter": "data_gb", "quantity": 1, '
    '"occurred_at": "2026-05-01T10:00:00Z"}',  # 12 unknown account
    '{"event_id": "J13", "account_number": "ACC-S", "meter": "data_gb", "quantity": 1, '
    '"occurred_at": "2026-05-01T10:00:00Z"}',  # 13 suspended
    '{"event_id": "J14", "account_number": "ACC-C", "meter": "data_gb", "quantity": 1, '
    '"occurred_at": "2026-05-01T10:00:00Z"}',  # 14 closed
    '{"event_id": "J1", "account_number": "ACC-1", "meter": "data_gb", "quantity": 1.5, '
    '"occurred_at": "2026-05-01T10:00:00Z"}',  # 15 duplicate of line 1
    '{"event_id": "E-OLD", "account_number": "ACC-1", "meter": "data_gb", "quantity": 4, '
    '"occurred_at": "2026-05-01T10:00:00Z"}',  # 16 mediated by the earlier run
    "",  # 17 blank
    '{"event_id": 12345, "account_number": "ACC-2", "meter": "sms", "quantity": 1e-5, '
    '"occurred_at": "2026-05-01T12:00:00Z"}',  # 18 ok: integer id, exponent quantity, half up
]) + "\n"


@pytest.fixture
def registry() -> JobTypeRegistry:
    return JobTypeRegistry([JOB_TYPE])


@pytest.fixture
def usage_accounts(billing_engine: Engine) -> dict[str, int]:
    return {
        "ACC-1": add_account(billing_engine, "ACC-1"),
        "ACC-2": add_account(billing_engine, "ACC-2"),
        "ACC-S": add_account(billing_engine, "ACC-S", status="SUSPENDED"),
        "ACC-C": add_account(billing_engine, "ACC-C", status="CLOSED"),
    }


@pytest.fixture
def incoming(worker_settings: Settings) -> Path:
    path = worker_settings.resolved_files_root / "usage" / "incoming"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def make_job(env: WorkerEnv, clock: FrozenClock) -> Callable[..., Job]:
    def make(name: str = "Usage", *, requires_review: bool = False, **overrides: Any) -> Job:
        props = {"source_dir": "usage/incoming", "pattern": "*.csv", "format": "csv", "meters": METERS, **overrides}
        with env.factory() as session:
            job = create_job(
                session=session, registry=env.registry, actor="test", clock=clock,
                job_in=JobCreate(name=name, job_type="usage_mediation", properties=props,
                                 requires_review=requires_review),
            )
            session.expunge(job)
            return job

    return make


@pytest.fixture
def run(env: WorkerEnv, clock: FrozenClock, drain: Drain) -> Callable[..., JobRun]:
    """Start a manual run, execute every step, return the run."""

    def start(job: Job, *, preview: bool = False, **run_properties: Any) -> JobRun:
        assert job.id is not None
        with env.factory() as session:
            created, _ = create_manual_run(
                session=session, registry=env.registry, actor="test", clock=clock,
                run_in=RunCreate(job_id=job.id, preview=preview, run_properties=run_properties),
            )
            assert created.id is not None
            run_id = created.id
        assert send_run(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=run_id,
                        clock=clock)
        drain()
        return fetch(env, run_id)

    return start


def fetch(env: WorkerEnv, run_id: int) -> JobRun:
    loaded = load_run(env, run_id)
    assert loaded is not None
    return loaded[0]


def items_of(env: WorkerEnv, run_id: int) -> dict[str, tuple[str, dict[str, Any]]]:
    with env.factory() as session:
        rows = session.scalars(select(RunItem).where(RunItem.run_id == run_id))  # type: ignore[arg-type]
        return {r.item_key: (r.outcome, r.detail) for r in rows}


def rejects_of(env: WorkerEnv, run_id: int) -> dict[str, tuple[str, str, str]]:
    """Record items as ``{key: (outcome, kind, code)}``."""
    return {k: (o, d["kind"], d["code"]) for k, (o, d) in items_of(env, run_id).items() if d.get("item") == "record"}


def daily(engine: Engine) -> dict[tuple[str, str, str], tuple[int, Decimal, Decimal]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(accounts.c.account_number, usage_daily.c.meter, usage_daily.c.usage_day, usage_daily.c.events,
                   usage_daily.c.quantity, usage_daily.c.amount)
            .join(accounts, accounts.c.id == usage_daily.c.account_id)
        )
        return {(r[0], r[1], r[2].isoformat()): (r[3], Decimal(r[4]).quantize(Decimal("0.000001")),
                                                 Decimal(r[5]).quantize(Decimal("0.000001"))) for r in rows}


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything mediation writes to the billing tables."""
    with engine.connect() as conn:
        out: dict[str, Any] = {
            name: sorted(tuple(str(v) for v in r) for r in conn.execute(select(table)))
            for name, table in (("events", usage_events), ("files", usage_files), ("rejects", usage_rejects))
        }
    out["daily"] = daily(engine)
    return out


def d(value: str) -> Decimal:
    return Decimal(value)


EXPECTED_CSV_REJECTS = {
    "usage-1.csv:5": ("error", "FAILED", "MISSING_FIELD"),
    "usage-1.csv:6": ("error", "FAILED", "NEGATIVE_QUANTITY"),
    "usage-1.csv:7": ("error", "FAILED", "BAD_QUANTITY"),
    "usage-1.csv:8": ("error", "FAILED", "BAD_TIMESTAMP"),
    "usage-1.csv:9": ("error", "FAILED", "TIMESTAMP_WITHOUT_ZONE"),
    "usage-1.csv:10": ("error", "FAILED", "UNKNOWN_METER"),
    "usage-1.csv:11": ("skipped", "FILTERED", "UNKNOWN_ACCOUNT"),
    "usage-1.csv:12": ("skipped", "FILTERED", "INACTIVE_ACCOUNT"),
    "usage-1.csv:13": ("skipped", "FILTERED", "INACTIVE_ACCOUNT"),
    "usage-1.csv:14": ("skipped", "FILTERED", "DUPLICATE_IN_FILE"),
    "usage-1.csv:15": ("skipped", "FILTERED", "ALREADY_MEDIATED"),
    "usage-1.csv:19": ("error", "FAILED", "QUANTITY_OUT_OF_RANGE"),
    "usage-1.csv:20": ("error", "FAILED", "BAD_TIMESTAMP"),
    "usage-1.csv:21": ("error", "FAILED", "MALFORMED_LINE"),
    "usage-1.csv:22": ("error", "FAILED", "MALFORMED_LINE"),
    "usage-1.csv:25": ("error", "FAILED", "MALFORMED_LINE"),
}

EARLIER_DAILY = {("ACC-1", "data_gb", "2026-04-30"): (1, d("4.000000"), d("0.400000"))}

EXPECTED_CSV_DAILY = EARLIER_DAILY | {
    ("ACC-1", "data_gb", "2026-05-01"): (3, d("8.500000"), d("0.850000")),  # E1 1.5 + E19 2 + E5 5
    ("ACC-1", "data_gb", "2026-05-02"): (1, d("2.250000"), d("0.225000")),  # E2, 01:30 UTC next day
    ("ACC-2", "voice_min", "2026-05-01"): (1, d("10.000000"), d("0.150000")),
    ("ACC-2", "voice_min", "2026-05-02"): (1, d("7.500000"), d("0.112500")),
    ("ACC-2", "sms", "2026-05-01"): (1, d("0.000010"), d("0.000001")),
}


def mediate_earlier(make_job: Callable[..., Job], run: Callable[..., JobRun], incoming: Path) -> Job:
    """A first run mediates ``E-OLD``; returns the job (its archive is ``usage/incoming/processed``)."""
    (incoming / "usage-0.csv").write_text(EARLIER_CSV)
    job = make_job()
    first = run(job)
    assert first.status == S.COMPLETED, first.error
    return job


def test_known_csv_file_gives_exactly_the_expected_rejects_and_aggregates(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun], clock: FrozenClock,
) -> None:
    # Given an earlier run that mediated E-OLD, and the known file
    job = mediate_earlier(make_job, run, incoming)
    (incoming / "usage-1.csv").write_bytes(KNOWN_CSV)
    # When the job runs again
    done = run(job)
    # Then failed lines make it INCOMPLETE, and each reject is an item with its line and reason
    assert done.status == S.INCOMPLETE, done.error
    assert rejects_of(env, done.id or 0) == EXPECTED_CSV_REJECTS
    outcome, file_detail = items_of(env, done.id or 0)["file:usage-1.csv"]
    assert outcome == "ok"
    assert {k: file_detail[k] for k in ("records", "mediated", "filtered", "failed", "amount", "daily_rows")} == {
        "records": 23, "mediated": 7, "filtered": 5, "failed": 11, "amount": "1.337501", "daily_rows": 5,
    }
    assert file_detail["archived_as"] == "usage/incoming/processed/usage-1.csv"
    assert file_detail["by_reason"] == {
        "ALREADY_MEDIATED": 1, "BAD_QUANTITY": 1, "BAD_TIMESTAMP": 2, "DUPLICATE_IN_FILE": 1,
        "INACTIVE_ACCOUNT": 2, "MALFORMED_LINE": 3, "MISSING_FIELD": 1, "NEGATIVE_QUANTITY": 1,
        "QUANTITY_OUT_OF_RANGE": 1, "TIMESTAMP_WITHOUT_ZONE": 1, "UNKNOWN_ACCOUNT": 1, "UNKNOWN_METER": 1,
    }
    # And the readable reasons say what is wrong
    details = {k: v[1] for k, v in items_of(env, done.id or 0).items()}
    assert details["usage-1.csv:5"]["reason"] == "missing meter"
    assert details["usage-1.csv:14"]["reason"] == "event id already on line 2"
    assert details["usage-1.csv:12"]["reason"] == "account ACC-S is SUSPENDED"
    assert details["usage-1.csv:15"]["reason"].startswith("event id already mediated by run ")
    assert details["usage-1.csv:25"]["reason"] == "line is not valid UTF-8"
    assert details["usage-1.csv:6"]["event_id"] == "E5"
    # And the aggregates are exact, in Decimal
    assert daily(billing_engine) == EXPECTED_CSV_DAILY
    with billing_engine.connect() as conn:
        events = {r.event_id: r.line_no for r in conn.execute(select(usage_events).where(
            usage_events.c.run_id == done.id))}
        rejects = {r.line_no: (r.kind, r.reason) for r in conn.execute(select(usage_rejects))}
    assert events == {"E1": 2, "E2": 3, "E3": 4, "E13": 17, "E14": 18, "E19": 23, "E5": 24}
    assert rejects == {int(k.split(":")[1]): (v[1], v[2]) for k, v in EXPECTED_CSV_REJECTS.items()}
    # And the summary names the file and its counts
    assert {k: done.summary[k] for k in ("files", "records_read", "mediated", "filtered", "failed",
                                         "rated_amount")} == {
        "files": 1, "records_read": 23, "mediated": 7, "filtered": 5, "failed": 11, "rated_amount": "1.337501"}
    assert done.summary["by_file"]["usage-1.csv"]["failed"] == 11
    assert done.error is not None and done.error.startswith("11 of ")
    # And the file was moved aside
    assert not (incoming / "usage-1.csv").exists()
    assert (incoming / "processed" / "usage-1.csv").read_bytes() == KNOWN_CSV
    # And no retry is offered (the failed lines are bad data a retry cannot fix), saying why
    assert done.summary["retry_unavailable"].startswith("a retry would redo nothing: its 11 failed items")
    with env.factory() as session, pytest.raises(RetryUnavailable):
        retry_run(session=session, run_id=done.id or 0, actor="test", clock=clock)
    assert outcome_line(done.status, done.summary, done.error) == (
        "applied 1 item, 5 skipped at apply (inactive account: 2; already mediated: 1; 2 more reasons), "
        "11 failed (malformed line: 3; bad timestamp: 2; 6 more reasons)")


def test_known_jsonl_file_gives_exactly_the_expected_rejects_and_aggregates(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun],
) -> None:
    # Given E-OLD mediated from a CSV file, and a JSON-lines job on the same directory
    mediate_earlier(make_job, run, incoming)
    (incoming / "usage-1.jsonl").write_text(KNOWN_JSONL)
    job = make_job("Usage JSON", pattern="*.jsonl", format="jsonl")
    # When it runs
    done = run(job)
    # Then
    assert done.status == S.INCOMPLETE, done.error
    assert rejects_of(env, done.id or 0) == {
        "usage-1.jsonl:3": ("error", "FAILED", "MISSING_FIELD"),
        "usage-1.jsonl:4": ("error", "FAILED", "NEGATIVE_QUANTITY"),
        "usage-1.jsonl:5": ("error", "FAILED", "BAD_QUANTITY"),
        "usage-1.jsonl:6": ("error", "FAILED", "BAD_QUANTITY"),
        "usage-1.jsonl:7": ("error", "FAILED", "BAD_TIMESTAMP"),
        "usage-1.jsonl:8": ("error", "FAILED", "TIMESTAMP_WITHOUT_ZONE"),
        "usage-1.jsonl:9": ("error", "FAILED", "UNKNOWN_METER"),
        "usage-1.jsonl:10": ("error", "FAILED", "MALFORMED_LINE"),
        "usage-1.jsonl:11": ("error", "FAILED", "MALFORMED_LINE"),
        "usage-1.jsonl:12": ("skipped", "FILTERED", "UNKNOWN_ACCOUNT"),
        "usage-1.jsonl:13": ("skipped", "FILTERED", "INACTIVE_ACCOUNT"),
        "usage-1.jsonl:14": ("skipped", "FILTERED", "INACTIVE_ACCOUNT"),
        "usage-1.jsonl:15": ("skipped", "FILTERED", "DUPLICATE_IN_FILE"),
        "usage-1.jsonl:16": ("skipped", "FILTERED", "ALREADY_MEDIATED"),
    }
    assert daily(billing_engine) == EARLIER_DAILY | {
        ("ACC-1", "data_gb", "2026-05-01"): (1, d("1.500000"), d("0.150000")),
        ("ACC-2", "voice_min", "2026-05-01"): (1, d("10.000000"), d("0.150000")),
        ("ACC-2", "sms", "2026-05-01"): (1, d("0.000010"), d("0.000001")),
    }
    with billing_engine.connect() as conn:
        assert sorted(conn.scalars(select(usage_events.c.event_id))) == ["12345", "E-OLD", "J1", "J2"]
    assert {k: done.summary[k] for k in ("records_read", "mediated", "filtered", "failed", "rated_amount")} == {
        "records_read": 17, "mediated": 3, "filtered": 5, "failed": 9, "rated_amount": "0.300001"}


def test_apply_twice_and_duplicated_messages_post_nothing_twice(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun], dispatcher: RecordingDispatcher,
) -> None:
    job = mediate_earlier(make_job, run, incoming)
    (incoming / "usage-1.csv").write_bytes(KNOWN_CSV)
    done = run(job)
    before, items_before = snapshot(billing_engine), items_of(env, done.id or 0)
    assert done.id is not None
    # When every message of the run is delivered again
    for _, step in list(dispatcher.sent):
        execute_step(env, step.run_id, step.phase, step.chunk_no)
    # And the job type's apply of the chunk is called again directly (as after a crash)
    loaded = load_run(env, done.id)
    assert loaded is not None
    JOB_TYPE.apply(build_context(env, *loaded), 0, {"file": "usage-1.csv"})
    # Then nothing changed
    assert snapshot(billing_engine) == before
    assert items_of(env, done.id) == items_before
    assert fetch(env, done.id).status == S.INCOMPLETE


def test_the_same_file_again_is_skipped_and_its_events_are_not_posted_twice(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun],
) -> None:
    job = mediate_earlier(make_job, run, incoming)
    before = snapshot(billing_engine)
    # Given the processed file dropped into the source directory again (same bytes)
    shutil.copy(incoming / "processed" / "usage-0.csv", incoming / "usage-0.csv")
    # When the job runs
    again = run(job)
    # Then the file is skipped as already processed, and left where it is
    assert again.status == S.COMPLETED, again.error
    outcome, detail = items_of(env, again.id or 0)["file:usage-0.csv"]
    assert outcome == "skipped"
    assert detail["reason"].startswith("already processed by run ")
    assert again.summary["files_skipped"] == 1 and again.summary["mediated"] == 0
    assert snapshot(billing_engine) == before
    # And a new file resending the same event (another checksum) filters it as already mediated
    (incoming / "usage-0.csv").write_text(EARLIER_CSV + "\n")
    resent = run(job)
    assert resent.status == S.COMPLETED
    assert rejects_of(env, resent.id or 0) == {"usage-0.csv:2": ("skipped", "FILTERED", "ALREADY_MEDIATED")}
    assert daily(billing_engine) == EARLIER_DAILY
    assert (incoming / "processed" / f"usage-0.{_checksum(incoming / 'processed', 'usage-0')}.csv").exists()


def _checksum(folder: Path, stem: str) -> str:
    marked = [p.name for p in folder.iterdir() if p.name.startswith(f"{stem}.") and p.name != f"{stem}.csv"]
    assert len(marked) == 1, marked
    return marked[0].split(".")[1]


def test_preview_rates_per_currency_exactly_what_applying_rates(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun], clock: FrozenClock, drain: Drain,
) -> None:
    # Given usage of two accounts, ACC-2 billing in euros
    with billing_engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET currency = 'EUR' WHERE account_number = 'ACC-2'"))
    (incoming / "a.csv").write_text(
        "event_id,account_number,meter,quantity,occurred_at\n"
        "M1,ACC-1,data_gb,3,2026-05-01T10:00:00Z\n"
        "M2,ACC-2,data_gb,5,2026-05-01T11:00:00Z\n"
        "M3,ACC-2,data_gb,2,2026-05-02T11:00:00Z\n"
    )
    # When a preview is made
    preview = run(make_job(), preview=True)
    assert preview.status == S.PREVIEW and preview.id is not None
    # Then it shows the amount rated per currency
    rated = preview.summary["money"]
    assert rated == {"EUR": {"rated": "0.700000"}, "USD": {"rated": "0.300000"}}
    assert sum(Decimal(m["rated"]) for m in rated.values()) == Decimal(preview.summary["rated_amount"])
    # And submitted with nothing changed, the run rates exactly that
    with env.factory() as session:
        act_on_run(session=session, run_id=preview.id, action="submit", actor="test", clock=clock)
    send_apply(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=preview.id)
    drain()
    done = fetch(env, preview.id)
    assert done.status == S.COMPLETED, done.error
    assert done.summary["money"] == rated


def test_preview_stops_with_staged_items_and_completes_after_submit(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun], clock: FrozenClock, drain: Drain,
) -> None:
    # Given a good file with one record of a suspended account
    (incoming / "a.csv").write_text(
        "occurred_at,quantity,meter,account_number,event_id,note\n"  # any column order, extra columns
        "2026-05-01T10:00:00Z,1,data_gb,ACC-1,P1,x\n"
        "2026-05-01T11:00:00Z,2,data_gb,ACC-S,P2,y\n"
    )
    job = make_job()
    # When a preview run is made
    preview = run(job, preview=True)
    # Then it stops at PREVIEW with staged items, and nothing is applied
    assert preview.status == S.PREVIEW, preview.error
    assert preview.id is not None
    staged = items_of(env, preview.id)
    assert {k: v[0] for k, v in staged.items()} == {"file:a.csv": "planned", "a.csv:3": "planned"}
    assert staged["file:a.csv"][1]["mediated"] == 1 and staged["a.csv:3"][1]["code"] == "INACTIVE_ACCOUNT"
    assert preview.summary["mediated"] == 1 and preview.summary["filtered"] == 1
    assert snapshot(billing_engine)["events"] == []
    assert (incoming / "a.csv").exists()
    # When the account is reinstated and the preview is submitted
    with billing_engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET status = 'ACTIVE' WHERE account_number = 'ACC-S'"))
    with env.factory() as session:
        act_on_run(session=session, run_id=preview.id, action="submit", actor="test", clock=clock)
    send_apply(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=preview.id)
    drain()
    # Then it completes, applying against current data: the reinstated account's record is mediated too
    done = fetch(env, preview.id)
    assert done.status == S.COMPLETED, done.error
    final = items_of(env, preview.id)
    assert final["a.csv:3"][0] == "ok"
    assert final["file:a.csv"][1]["mediated"] == 2
    assert final["file:a.csv"][1]["changed_since_evaluation"] == {
        "mediated": {"previewed": 1, "applied": 2}, "filtered": {"previewed": 1, "applied": 0}}
    assert done.summary["mediated"] == 2
    assert sorted(e[0] for e in snapshot(billing_engine)["events"]) == ["P1", "P2"]
    assert not (incoming / "a.csv").exists()


def test_two_files_of_one_run_with_the_same_event_post_it_once(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun],
) -> None:
    header = "event_id,account_number,meter,quantity,occurred_at\n"
    (incoming / "a.csv").write_text(header + "X1,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n")
    (incoming / "b.csv").write_text(header + "X1,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n"
                                    "X2,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n")
    done = run(make_job())
    assert done.status == S.COMPLETED, done.error
    assert done.chunks_total == 2
    # Both files were evaluated before either was applied: the second finds X1 mediated when it applies
    assert rejects_of(env, done.id or 0) == {"b.csv:2": ("skipped", "FILTERED", "ALREADY_MEDIATED")}
    assert daily(billing_engine) == {("ACC-1", "data_gb", "2026-05-01"): (2, d("2.000000"), d("0.200000"))}
    assert done.summary["mediated"] == 2 and done.summary["files"] == 2


def test_unreadable_file_is_an_error_item_and_other_files_go_on(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun], clock: FrozenClock, drain: Drain,
) -> None:
    (incoming / "bad.csv").write_text("event,account,meter,qty,at\nZ1,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n")
    job = make_job()
    alone = run(job)
    assert alone.status == S.FAILED
    assert alone.error is not None and "header lacks column(s): event_id, account_number" in alone.error
    assert alone.summary["notify_events"] == ["source_error"]
    assert (incoming / "bad.csv").exists()
    (incoming / "good.csv").write_text(EARLIER_CSV)
    mixed = run(job)
    assert mixed.status == S.INCOMPLETE
    assert {k: v[0] for k, v in items_of(env, mixed.id or 0).items()} == {"file:bad.csv": "error",
                                                                          "file:good.csv": "ok"}
    # When the file is corrected and the run retried, only that file is read again
    (incoming / "bad.csv").write_text("event_id,account_number,meter,quantity,occurred_at\n"
                                      "Z1,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n")
    with env.factory() as session:
        retry = retry_run(session=session, run_id=mixed.id or 0, actor="test", clock=clock)
    assert send_run(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=retry.id or 0,
                    clock=clock)
    drain()
    retried = fetch(env, retry.id or 0)
    assert retried.status == S.COMPLETED, retried.error
    assert set(items_of(env, retried.id or 0)) == {"file:bad.csv"}
    assert retried.summary["mediated"] == 1


def test_lost_staging_fails_the_file_and_leaves_it_for_the_next_run(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun], clock: FrozenClock, drain: Drain,
) -> None:
    (incoming / "a.csv").write_text(EARLIER_CSV)
    job = make_job()
    preview = run(job, preview=True)
    assert preview.id is not None
    # Given the staged records vanish while the preview waits (an UNLOGGED table after a crash)
    with billing_engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {table_name(preview.id, 0)}"))
    with env.factory() as session:
        act_on_run(session=session, run_id=preview.id, action="submit", actor="test", clock=clock)
    send_apply(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=preview.id)
    drain()
    failed = fetch(env, preview.id)
    assert failed.status == S.FAILED
    assert failed.error is not None and "1 records were staged but 0 remain" in failed.error
    assert "StagingLost" not in failed.error
    assert snapshot(billing_engine)["files"] == []
    assert (incoming / "a.csv").exists()
    # And the next run processes it
    assert run(job).status == S.COMPLETED
    assert daily(billing_engine) == EARLIER_DAILY


@pytest.mark.parametrize("props", [
    {"source_dir": "../outside"},
    {"source_dir": "/etc"},
    {"source_dir": "usage/../../etc"},
    {"source_dir": "C:/data"},
    {"source_dir": "usage\\incoming"},
    {"archive_dir": "../archive"},
    {"archive_dir": "/tmp/archive"},
    {"archive_dir": "usage/incoming"},
    {"pattern": "../*.csv"},
    {"pattern": "sub/*.csv"},
    {"meters": []},
    {"meters": [METERS[0], METERS[0]]},
    {"meters": [{"meter": "x", "unit": "u", "price_per_unit": "-1"}]},
    {"meters": [{"meter": "x", "unit": "u", "price_per_unit": "0.0000001"}]},
    {"format": "xml"},
])
def test_job_validation_refuses_paths_outside_the_root_and_bad_meters(props: dict[str, Any]) -> None:
    base = {"source_dir": "usage/incoming", "meters": METERS}
    with pytest.raises(InvalidProperties):
        JOB_TYPE.validate_properties(base | props)


def test_job_validation_normalizes_paths_and_defaults_the_archive() -> None:
    props: Any = JOB_TYPE.validate_properties({"source_dir": "./usage//incoming/", "meters": METERS})
    assert (props.source_dir, props.archive_path, props.pattern, str(props.format)) == (
        "usage/incoming", "usage/incoming/processed", "*.csv", "csv")
    assert props.prices == {"data_gb": d("0.10"), "voice_min": d("0.015"), "sms": d("0.05")}


def test_a_link_out_of_the_files_root_is_refused_at_run_time(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path, tmp_path: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun], worker_settings: Settings,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.csv").write_text(EARLIER_CSV)
    # A source directory that is a link out of the root: the run fails at planning
    (worker_settings.resolved_files_root / "escape").symlink_to(outside)
    escaped = run(make_job("Escape", source_dir="escape"))
    assert escaped.status == S.FAILED
    assert escaped.error is not None and "resolves outside the files root" in escaped.error
    # A file that is a link out of the root: that file is an error item
    (incoming / "x.csv").symlink_to(outside / "x.csv")
    linked = run(make_job())
    assert linked.status == S.FAILED
    assert "outside the files root" in items_of(env, linked.id or 0)["file:x.csv"][1]["error"]
    assert (outside / "x.csv").exists()


def test_billing_tables_in_their_own_database(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path, clock: FrozenClock, dispatcher: RecordingDispatcher,
) -> None:
    # Given billing tables in a separate SQLite database: items are written in batches, not INSERT … SELECT
    from scheduler.db import make_engine

    worker_settings = Settings(data_dir=tmp_path / "data", database_url=sqlite_url, files_root=tmp_path / "files")
    billing = make_engine(f"sqlite:///{tmp_path / 'billing.db'}")
    migrate_billing_database(billing, load_registry(Settings()).all())
    for number, status in (("ACC-1", "ACTIVE"), ("ACC-2", "ACTIVE"), ("ACC-S", "SUSPENDED"), ("ACC-C", "CLOSED")):
        add_account(billing, number, status=status)
    env = build_env(worker_settings, dispatcher=dispatcher, registry=JobTypeRegistry([JOB_TYPE]), clock=clock,
                    engine=sqlite_engine, billing_engine=billing, worker_id="w", heartbeat=False)
    incoming = worker_settings.resolved_files_root / "usage" / "incoming"
    incoming.mkdir(parents=True)
    (incoming / "usage-0.csv").write_text(EARLIER_CSV)
    (incoming / "usage-1.csv").write_bytes(KNOWN_CSV)
    with env.factory() as session:
        job = create_job(session=session, registry=env.registry, actor="t", clock=clock, job_in=JobCreate(
            name="Usage", job_type="usage_mediation",
            properties={"source_dir": "usage/incoming", "meters": METERS}))
        created, _ = create_manual_run(session=session, registry=env.registry, actor="t", clock=clock,
                                       run_in=RunCreate(job_id=job.id or 0))
    send_run(factory=env.factory, dispatcher=dispatcher, registry=env.registry, run_id=created.id or 0, clock=clock)
    while dispatcher.steps:
        _, step = dispatcher.steps.popleft()
        execute_step(env, step.run_id, step.phase, step.chunk_no)
    done = fetch(env, created.id or 0)
    # usage-0 and usage-1 are two chunks of one run: E-OLD is a duplicate across files of the run
    assert done.status == S.INCOMPLETE, done.error
    assert rejects_of(env, done.id or 0) == {**EXPECTED_CSV_REJECTS}
    assert daily(billing) == EXPECTED_CSV_DAILY
    with sqlite_engine.connect() as conn:
        assert not conn.execute(text("SELECT name FROM sqlite_master WHERE name = 'usage_events'")).first()
    billing.dispose()


def test_item_details_are_json_a_page_can_render(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun],
) -> None:
    (incoming / "usage-1.csv").write_bytes(KNOWN_CSV)
    done = run(make_job())
    for _, detail in items_of(env, done.id or 0).values():
        assert json.loads(json.dumps(detail)) == detail
    by_meter = done.summary["by_meter"]
    # Without the earlier run, E-OLD is mediated here too
    assert by_meter["data_gb"] == {"unit": "GB", "events": 5, "quantity": "14.750000", "amount": "1.475000"}


def test_an_account_suspended_after_the_preview_is_filtered_when_applied(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun], clock: FrozenClock, drain: Drain,
) -> None:
    (incoming / "a.csv").write_text(
        "event_id,account_number,meter,quantity,occurred_at\n"
        "S1,ACC-1,data_gb,1,2026-05-01T10:00:00Z\n"
        "S2,ACC-2,data_gb,2,2026-05-01T10:00:00Z\n"
    )
    preview = run(make_job(), preview=True)
    assert preview.id is not None and preview.summary["mediated"] == 2
    # When ACC-2 is suspended before the preview is submitted
    with billing_engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET status = 'SUSPENDED' WHERE account_number = 'ACC-2'"))
    with env.factory() as session:
        act_on_run(session=session, run_id=preview.id, action="submit", actor="test", clock=clock)
    send_apply(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=preview.id)
    drain()
    # Then its record is filtered now (an item made at apply), and only ACC-1's is posted
    done = fetch(env, preview.id)
    assert done.status == S.COMPLETED, done.error
    assert rejects_of(env, preview.id) == {"a.csv:3": ("skipped", "FILTERED", "INACTIVE_ACCOUNT")}
    assert daily(billing_engine) == {("ACC-1", "data_gb", "2026-05-01"): (1, d("1.000000"), d("0.100000"))}
    assert items_of(env, preview.id)["file:a.csv"][1]["changed_since_evaluation"] == {
        "mediated": {"previewed": 2, "applied": 1}, "filtered": {"previewed": 0, "applied": 1}}


def test_the_demo_files_and_job(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], worker_settings: Settings,
    clock: FrozenClock, run: Callable[..., JobRun],
) -> None:
    from datetime import date

    from workers.billing.demo_usage import DEMO_JOB, seed_usage_demo

    # Given the demo files for the test ledger's accounts (ACC-1, ACC-2 active; ACC-S, ACC-C not)
    written = seed_usage_demo(billing_engine, worker_settings.resolved_files_root, day=date(2026, 5, 31))
    assert written["files"] == ["usage-20260531-a.csv", "usage-20260531-b.csv"]
    with env.factory() as session:
        job = create_job(session=session, registry=env.registry, actor="demo", clock=clock,
                         job_in=JobCreate.model_validate(DEMO_JOB))
        session.expunge(job)
    # When the demo job runs
    done = run(job)
    # Then each file's five bad lines failed and three were filtered; everything else was mediated
    assert done.status == S.INCOMPLETE, done.error
    assert {k: done.summary[k] for k in ("files", "records_read", "failed", "filtered", "mediated")} == {
        "files": 2, "records_read": 416, "failed": 10, "filtered": 6, "mediated": 400}
    assert sorted(done.summary["by_file"]) == written["files"]
    # And writing the same day's files again changes nothing: they are skipped as already processed
    seed_usage_demo(billing_engine, worker_settings.resolved_files_root, day=date(2026, 5, 31))
    again = run(job)
    assert again.status == S.COMPLETED
    assert (again.summary["files_skipped"], again.summary["mediated"]) == (2, 0)


def test_staging_tables_of_a_deleted_preview_are_dropped_by_the_next_run(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun], clock: FrozenClock,
) -> None:
    from sqlalchemy import inspect

    (incoming / "a.csv").write_text(EARLIER_CSV)
    job = make_job()
    preview = run(job, preview=True)
    assert preview.id is not None
    assert inspect(billing_engine).has_table(table_name(preview.id, 0))
    with env.factory() as session:
        act_on_run(session=session, run_id=preview.id, action="delete", actor="test", clock=clock)
    # The file was not applied, so the next run mediates it, and drops the deleted preview's table
    assert run(job).status == S.COMPLETED
    assert not inspect(billing_engine).has_table(table_name(preview.id, 0))
    assert [t for t in inspect(billing_engine).get_table_names() if t.startswith("usage_stage_")] == []


def test_manual_runs_can_name_files_and_a_vanished_file_is_skipped(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun], dispatcher: RecordingDispatcher, drain: Drain,
    clock: FrozenClock,
) -> None:
    header = "event_id,account_number,meter,quantity,occurred_at\n"
    for name in ("a.csv", "b.csv", "c.csv"):
        (incoming / name).write_text(header + f"{name},ACC-1,data_gb,1,2026-05-01T10:00:00Z\n")
    (incoming / ".upload.csv").write_text(header)  # dot files are uploads in progress
    job = make_job(max_files=2)
    only_c = run(job, files=["c.csv"])
    assert set(items_of(env, only_c.id or 0)) == {"file:c.csv"}
    # The plan takes the first max_files names; a file gone before its evaluation is skipped
    assert job.id is not None
    with env.factory() as session:
        created, _ = create_manual_run(session=session, registry=env.registry, actor="t", clock=clock,
                                       run_in=RunCreate(job_id=job.id))
    send_run(factory=env.factory, dispatcher=dispatcher, registry=env.registry, run_id=created.id or 0, clock=clock)
    _, plan = dispatcher.steps.popleft()
    execute_step(env, plan.run_id, plan.phase, plan.chunk_no)
    (incoming / "b.csv").unlink()
    drain()
    done = fetch(env, created.id or 0)
    assert done.status == S.COMPLETED
    assert {k: (v[0], v[1].get("reason")) for k, v in items_of(env, done.id or 0).items()} == {
        "file:a.csv": ("ok", None), "file:b.csv": ("skipped", "no longer in the source directory")}
    assert (incoming / ".upload.csv").exists()


def test_run_details_and_failed_lines_through_the_api_and_in_the_notification(
    env: WorkerEnv, billing_engine: Engine, usage_accounts: dict[str, int], incoming: Path,
    make_job: Callable[..., Job], run: Callable[..., JobRun], worker_settings: Settings, clock: FrozenClock,
) -> None:
    import warnings

    from starlette.exceptions import StarletteDeprecationWarning

    from scheduler import auth
    from scheduler.api.app import create_app
    from scheduler.notify import build_message

    with warnings.catch_warnings():
        # Starlette warns once, at import, that it prefers the httpx2 fork; httpx works.
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient

    (incoming / "usage-1.csv").write_bytes(KNOWN_CSV)
    job = make_job()
    done = run(job)
    with env.factory() as session:
        _, token = auth.create_key(session, "viewer", "viewer", actor="test")
    app = create_app(worker_settings, engine=billing_engine, registry=env.registry, dispatcher=env.dispatcher,
                     clock=clock)
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        detail = client.get(f"/api/v1/runs/{done.id}", headers=headers)
        assert detail.status_code == 200, detail.text
        body = detail.json()
        assert body["status"] == "INCOMPLETE"
        assert body["summary"]["by_file"]["usage-1.csv"]["failed"] == 11
        errors = client.get(f"/api/v1/runs/{done.id}/items", params={"outcome": "error", "limit": 100},
                            headers=headers)
        assert errors.status_code == 200, errors.text
        listed = {i["key"]: i for i in errors.json()["items"]}
    assert set(listed) == {k for k, v in EXPECTED_CSV_REJECTS.items() if v[0] == "error"}
    assert listed["usage-1.csv:6"]["detail"]["reason"] == "quantity -3 is negative"
    # The notification names the file with its counts, and lists the failed lines with their reason
    with env.factory() as session:
        errored = list(session.scalars(select(RunItem).where(RunItem.run_id == done.id,  # type: ignore[arg-type]
                                                             RunItem.outcome == "error")))  # type: ignore[arg-type]
        mail = build_message(worker_settings, job, done, ["incomplete"], errored).get_content()
    assert "usage-1.csv" in mail and "'failed': 11" in mail
    assert "usage-1.csv:6: quantity -3 is negative" in mail
