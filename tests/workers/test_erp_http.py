"""ERP transfer to a real HTTP endpoint, on SQLite and PostgreSQL: known answers and injected failures.

Every test ends by asking the endpoint which records it took: each exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from erp_sink import REFUSAL, ErpSink
from erp_testkit import (
    TOKEN,
    TOKEN_ENV,
    Ledger,
    delivered,
    http_target,
    items_of,
    make_job,
    run_row,
    seed_ledger,
    start_manual,
    start_retry,
)
from mailkit import free_port
from sqlalchemy import Engine
from workers_testkit import Drain

from scheduler.clock import FrozenClock
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import RunStatus
from scheduler.notify import events_for
from workers.erp import JOB_TYPE
from workers.runtime.env import WorkerEnv

S = RunStatus
MAY: dict[str, Any] = {"date_from": "2026-05-01", "date_to": "2026-05-31"}
MAY_INVOICES = ["INV-0501", "INV-0510", "LF-0515", "INV-0520", "INV-0531"]


@pytest.fixture
def registry() -> JobTypeRegistry:
    """Just this job type, so the tests do not depend on the other types installed."""
    return JobTypeRegistry([JOB_TYPE])


@pytest.fixture
def ledger(billing_engine: Engine) -> Ledger:
    return seed_ledger(billing_engine)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[ErpSink]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with ErpSink(token=TOKEN, stall_seconds=1.5) as running:
        yield running


def ids(ledger: Ledger, *numbers: str) -> list[str]:
    return [str(ledger.invoices[n]) for n in numbers]


def assert_taken_once(sink: ErpSink, expected: list[str]) -> None:
    taken = Counter(sink.accepted_ids())
    assert [record for record, times in taken.items() if times > 1] == []
    assert sorted(taken) == sorted(expected)


def test_invoices_of_a_date_range_arrive_once_in_batches_with_their_fields(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    # Given an HTTP ERP job in batches of 2
    job = make_job(env, clock, target=http_target(sink.url), batch_size=2)
    # When a run transfers May's invoices
    run_id = start_manual(env, clock, job, **MAY)
    drain()
    # Then the 5 invoices issued in May arrived in 3 batches, keyed by run and batch
    run = run_row(env, run_id)
    assert run.status == S.COMPLETED
    assert [r.key for r in sink.requests] == [f"{run_id}:1", f"{run_id}:2", f"{run_id}:3"]
    first = sink.requests[0]
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.headers["Content-Type"] == "application/json"
    assert first.document == {
        "run_id": run_id, "batch_no": 1, "dataset": "invoices",
        "records": [
            {"id": ids(ledger, "INV-0501")[0], "number": "INV-0501", "account_number": "ACC-1", "kind": "INVOICE",
             "status": "PAID", "issued_on": "2026-05-01", "due_on": "2026-07-01", "amount": "120.50",
             "balance": "0.00", "bill_cycle_run_id": "51"},
            {"id": ids(ledger, "INV-0510")[0], "number": "INV-0510", "account_number": "ACC-2", "kind": "INVOICE",
             "status": "OPEN", "issued_on": "2026-05-10", "due_on": "2026-07-01", "amount": "99.99",
             "balance": "99.99", "bill_cycle_run_id": "51"},
        ],
    }
    assert [r["number"] for r in sink.requests[2].records] == ["INV-0531"]
    assert_taken_once(sink, ids(ledger, *MAY_INVOICES))
    # And the run says what it did, the ledger records each delivery, each item is ok
    assert {k: run.summary[k] for k in ("aggregated", "delivered", "errored", "skipped", "batches")} == {
        "aggregated": 5, "delivered": 5, "errored": 0, "skipped": 0, "batches": 3}
    assert (run.summary["range_kind"], run.summary["range_start"], run.summary["range_end"]) == (
        "explicit", "2026-05-01", "2026-05-31")
    assert run.summary["target"] == {"kind": "http", "url": sink.url, "token_env": TOKEN_ENV}
    expected_rows = [("invoices", int(i), run_id, 1 + n // 2) for n, i in enumerate(ids(ledger, *MAY_INVOICES))]
    assert delivered(env.billing_engine) == sorted(expected_rows)
    items = items_of(env, run_id)
    assert {i.outcome for i in items.values()} == {"ok"}
    assert items[f"invoices:{ledger.invoices['LF-0515']}"].detail["batch_no"] == 2


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        ("UTC", ["P-0501-0000", "P-0531-2359"]),
        # May in New York is [May 1 04:00 UTC, Jun 1 04:00 UTC)
        ("America/New_York", ["P-0531-2359", "P-0601-0000"]),
    ],
)
def test_payments_are_taken_by_the_local_day_they_were_received(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain, timezone: str,
    expected: list[str],
) -> None:
    job = make_job(env, clock, name="ERP payments", dataset="payments", timezone=timezone,
                   target=http_target(sink.url))
    run_id = start_manual(env, clock, job, **MAY)
    drain()
    assert run_row(env, run_id).status == S.COMPLETED
    (batch,) = sink.requests
    by_ref = {str(v): k for k, v in ledger.payments.items()}
    assert [by_ref[r["id"]] for r in batch.records] == expected
    if timezone == "UTC":
        assert batch.records == [
            {"id": str(ledger.payments["P-0501-0000"]), "account_number": "ACC-1", "invoice_number": "INV-0501",
             "amount": "120.50", "received_at": "2026-05-01T00:00:00Z", "bill_cycle_run_id": "51"},
            {"id": str(ledger.payments["P-0531-2359"]), "account_number": "ACC-2", "invoice_number": None,
             "amount": "40.00", "received_at": "2026-05-31T23:59:59Z", "bill_cycle_run_id": None},
        ]
    assert [row[:2] for row in delivered(env.billing_engine)] == sorted(
        ("payments", ledger.payments[ref]) for ref in expected)


def test_a_500_is_retried_and_the_batch_delivered_once(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    job = make_job(env, clock, target=http_target(sink.url), batch_size=3)
    run_id = start_manual(env, clock, job, **MAY)
    sink.inject(f"{run_id}:1", "500")
    drain()
    run = run_row(env, run_id)
    assert run.status == S.COMPLETED
    assert [(r.key, r.accepted) for r in sink.requests] == [
        (f"{run_id}:1", False), (f"{run_id}:1", True), (f"{run_id}:2", True)]
    assert_taken_once(sink, ids(ledger, *MAY_INVOICES))
    first = items_of(env, run_id)[f"invoices:{ledger.invoices['INV-0501']}"]
    assert (first.outcome, first.detail["attempts"], first.detail["http_status"]) == ("ok", 2, 200)


def test_a_timeout_is_retried_and_the_batch_delivered_once(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    job = make_job(env, clock, target=http_target(sink.url, timeout_seconds=0.3))
    run_id = start_manual(env, clock, job, **MAY)
    sink.inject(f"{run_id}:1", "timeout")
    drain()
    assert run_row(env, run_id).status == S.COMPLETED
    assert [(r.fault, r.accepted) for r in sink.requests] == [("timeout", False), (None, True)]
    assert_taken_once(sink, ids(ledger, *MAY_INVOICES))


def test_a_refused_batch_errors_with_the_answer_and_its_retry_sends_only_that_batch(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    # Given batches of 2, and the ERP refusing batch 2 (LF-0515, INV-0520)
    job = make_job(env, clock, target=http_target(sink.url), batch_size=2)
    run_id = start_manual(env, clock, job, **MAY)
    sink.inject(f"{run_id}:2", "400")
    drain()
    # Then the run is INCOMPLETE: batches 1 and 3 delivered, batch 2's items errored with the answer
    run = run_row(env, run_id)
    assert run.status == S.INCOMPLETE
    assert (run.summary["delivered"], run.summary["errored"]) == (3, 2)
    assert run.error is not None and "2 of 5 items failed" in run.error and "HTTP 400" in run.error
    # and it raises target_error for whoever chose it among the job's notifications
    assert events_for(run) == ["incomplete", "complete_error", "target_error"]
    refused = items_of(env, run_id)[f"invoices:{ledger.invoices['LF-0515']}"]
    assert refused.outcome == "error"
    assert refused.detail["http_status"] == 400
    assert refused.detail["error"] == "refused by the target: HTTP 400"
    assert REFUSAL["error"] in refused.detail["response"]
    assert refused.detail["attempts"] == 1 and "uncertain" not in refused.detail
    assert len(sink.requests) == 3
    # When the run is retried and the ERP now accepts
    retry_id = start_retry(env, clock, run_id)
    drain()
    # Then the retry sent just the refused records, in one new batch, and COMPLETED
    retry = run_row(env, retry_id)
    assert retry.status == S.COMPLETED and events_for(retry) == ["completed"]
    assert [r.key for r in sink.requests[3:]] == [f"{retry_id}:1"]
    assert [r["number"] for r in sink.requests[3].records] == ["LF-0515", "INV-0520"]
    assert (retry.summary["aggregated"], retry.summary["delivered"]) == (2, 2)
    assert (retry.summary["range_start"], retry.summary["range_end"]) == ("2026-05-01", "2026-05-31")
    assert_taken_once(sink, ids(ledger, *MAY_INVOICES))
    assert len(delivered(env.billing_engine)) == 5


def test_a_connection_dropped_after_the_body_was_taken_is_retried_under_the_same_key(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    job = make_job(env, clock, target=http_target(sink.url))
    run_id = start_manual(env, clock, job, **MAY)
    sink.inject(f"{run_id}:1", "drop")
    drain()
    assert run_row(env, run_id).status == S.COMPLETED
    # The ERP took the batch on the first try and answered the second from its record
    assert [(r.key, r.fault, r.accepted) for r in sink.requests] == [
        (f"{run_id}:1", "drop", True), (f"{run_id}:1", None, False)]
    assert_taken_once(sink, ids(ledger, *MAY_INVOICES))
    assert len(delivered(env.billing_engine)) == 5


def test_a_batch_lost_after_every_try_is_retried_by_the_next_run_under_its_first_key(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    # Given one try per batch, and the ERP taking batch 1 but its answer never arriving
    job = make_job(env, clock, target=http_target(sink.url, max_attempts=1), batch_size=3)
    run_id = start_manual(env, clock, job, **MAY)
    sink.inject(f"{run_id}:1", "drop")
    drain()
    run = run_row(env, run_id)
    assert run.status == S.INCOMPLETE
    unsure = items_of(env, run_id)[f"invoices:{ledger.invoices['INV-0501']}"]
    assert unsure.outcome == "error" and unsure.detail["uncertain"] is True
    assert unsure.detail["idempotency_key"] == f"{run_id}:1"
    # When the run is retried
    retry_id = start_retry(env, clock, run_id)
    drain()
    # Then the retry re-sent that batch under its first key, the ERP recognised it, nothing arrived twice
    assert run_row(env, retry_id).status == S.COMPLETED
    assert [(r.key, r.accepted) for r in sink.requests] == [
        (f"{run_id}:1", True), (f"{run_id}:2", True), (f"{run_id}:1", False)]
    assert_taken_once(sink, ids(ledger, *MAY_INVOICES))
    assert {row[2] for row in delivered(env.billing_engine)} == {run_id, retry_id}


def test_a_rerun_delivers_nothing_new(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    job = make_job(env, clock, target=http_target(sink.url))
    first = start_manual(env, clock, job, **MAY)
    drain()
    again = start_manual(env, clock, job, **MAY)
    drain()
    run = run_row(env, again)
    assert run.status == S.COMPLETED
    assert (run.summary["aggregated"], run.summary["delivered"], run.summary["batches"]) == (0, 0, 0)
    assert [r.key for r in sink.requests] == [f"{first}:1"]
    # A wider range sends only what is new to this target
    wider = start_manual(env, clock, job, date_from="2026-04-01", date_to="2026-06-30")
    drain()
    assert [r["number"] for r in sink.requests[-1].records] == ["INV-0430", "INV-0601"]
    assert run_row(env, wider).summary["delivered"] == 2
    assert_taken_once(sink, ids(ledger, "INV-0430", *MAY_INVOICES, "INV-0601"))


def test_another_target_gets_its_own_copy(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    one = make_job(env, clock, name="ERP one", target=http_target(sink.url))
    two = make_job(env, clock, name="ERP two", target=http_target(sink.url + "?tenant=2"))
    start_manual(env, clock, one, **MAY)
    start_manual(env, clock, two, **MAY)
    drain()
    assert len(sink.requests) == 2
    assert len(delivered(env.billing_engine)) == 10


def test_a_missing_token_fails_the_run_without_sending_and_no_secret_is_stored(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = make_job(env, clock, target=http_target(sink.url))
    assert job.properties["target"]["token_env"] == TOKEN_ENV
    monkeypatch.delenv(TOKEN_ENV)
    run_id = start_manual(env, clock, job, **MAY)
    drain()
    run = run_row(env, run_id)
    assert run.status == S.FAILED
    assert run.error is not None and f"token env var {TOKEN_ENV} is not set" in run.error
    assert sink.requests == []
    assert delivered(env.billing_engine) == []
    # With the variable set again, the retry delivers; the token itself is nowhere in the database
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    retry_id = start_retry(env, clock, run_id)
    drain()
    assert run_row(env, retry_id).status == S.COMPLETED
    assert_taken_once(sink, ids(ledger, *MAY_INVOICES))
    stored = [repr(job.properties), repr(run_row(env, retry_id).summary)]
    stored += [repr(i.detail) for run in (run_id, retry_id) for i in items_of(env, run).values()]
    assert not [text for text in stored if TOKEN in text]


def test_an_unreachable_target_is_said_in_words_with_its_host_and_port(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an ERP target on a port where nothing listens (a real refused connection)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    port = free_port()
    job = make_job(env, clock, target=http_target(f"http://127.0.0.1:{port}/erp", max_attempts=1))
    # When the run tries to deliver
    run_id = start_manual(env, clock, job, **MAY)
    drain()
    # Then the run and each item say what failed and where, in words, without a Python exception name
    run = run_row(env, run_id)
    assert run.status == S.FAILED
    reason = f"Cannot reach the ERP target at 127.0.0.1:{port}: connection refused"
    assert reason in (run.error or "")
    errors = [item.detail["error"] for item in items_of(env, run_id).values()]
    assert errors and all(reason in error for error in errors)
    assert "Error" not in (run.error or "") and not any("Error" in error for error in errors)
