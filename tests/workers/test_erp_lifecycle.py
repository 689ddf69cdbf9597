"""ERP transfer through the executor: preview and submit, auto-send off, duplicated steps, a worker lost mid-send."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from erp_sink import ErpSink
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
)
from sqlalchemy import Engine, update
from workers_testkit import Drain, RecordingDispatcher

from scheduler.clock import FrozenClock
from scheduler.dispatch import Phase
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import RunStatus
from scheduler.runs import act_on_run, send_apply
from workers.billing import accounts
from workers.erp import JOB_TYPE
from workers.erp import apply as erp_apply
from workers.runtime.env import WorkerEnv
from workers.runtime.executor import FINAL_CHECK, execute_step

S = RunStatus
MAY: dict[str, Any] = {"date_from": "2026-05-01", "date_to": "2026-05-31"}


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
    with ErpSink(token=TOKEN) as running:
        yield running


def submit(env: WorkerEnv, clock: FrozenClock, run_id: int) -> None:
    with env.factory() as session:
        act_on_run(session=session, run_id=run_id, action="submit", actor="reviewer", clock=clock)
    send_apply(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=run_id)


def assert_taken_once(sink: ErpSink, count: int) -> None:
    taken = Counter(sink.accepted_ids())
    assert len(taken) == count and set(taken.values()) == {1}


def test_a_preview_stages_the_batches_and_sends_only_once_submitted(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    with env.billing_engine.begin() as conn:  # ACC-2 bills in euros
        conn.execute(update(accounts).where(accounts.c.account_number == "ACC-2").values(currency="EUR"))
    job = make_job(env, clock, target=http_target(sink.url), batch_size=2)
    run_id = start_manual(env, clock, job, preview=True, **MAY)
    drain()
    # The run waits at PREVIEW with the records it would send, batch by batch, and nothing sent
    run = run_row(env, run_id)
    assert run.status == S.PREVIEW
    assert sink.requests == []
    staged = items_of(env, run_id)
    assert {i.outcome for i in staged.values()} == {"planned"}
    assert sorted((i.detail["batch_no"], i.detail["record"]["number"]) for i in staged.values()) == [
        (1, "INV-0501"), (1, "INV-0510"), (2, "INV-0520"), (2, "LF-0515"), (3, "INV-0531")]
    assert (run.summary["aggregated"], run.summary["delivered"], run.summary["batches"]) == (5, 0, 3)
    # And the amounts it would transfer, per currency of the records' accounts
    to_transfer = {"EUR": {"amount": "125.09"}, "USD": {"amount": "1120.50"}}
    assert run.summary["money"] == to_transfer
    assert staged[f"invoices:{ledger.invoices['LF-0515']}"].detail["currency"] == "EUR"
    # When it is submitted, the staged batches are sent
    submit(env, clock, run_id)
    drain()
    run = run_row(env, run_id)
    assert run.status == S.COMPLETED
    assert [r.key for r in sink.requests] == [f"{run_id}:1", f"{run_id}:2", f"{run_id}:3"]
    assert run.summary["delivered"] == 5
    assert run.summary["money"] == to_transfer  # what the preview showed is what was transferred
    assert_taken_once(sink, 5)


def test_a_job_without_auto_send_holds_every_run_for_review(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    job = make_job(env, clock, target=http_target(sink.url), auto_send=False)
    run_id = start_manual(env, clock, job, **MAY)
    drain()
    run = run_row(env, run_id)
    assert run.status == S.PREVIEW
    assert sink.requests == []
    submit(env, clock, run_id)
    drain()
    assert run_row(env, run_id).status == S.COMPLETED
    assert_taken_once(sink, 5)


def test_records_delivered_while_a_preview_waited_are_skipped_on_submit(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    # Given a preview of May, and meanwhile another run of the job delivering May 1-15
    job = make_job(env, clock, target=http_target(sink.url))
    preview_id = start_manual(env, clock, job, preview=True, **MAY)
    drain()
    other = start_manual(env, clock, job, date_from="2026-05-01", date_to="2026-05-15")
    drain()
    # When the preview is submitted
    submit(env, clock, preview_id)
    drain()
    # Then it sends only the rest, and says why it skipped the others
    run = run_row(env, preview_id)
    assert run.status == S.COMPLETED
    assert (run.summary["delivered"], run.summary["skipped"]) == (2, 3)
    skipped = items_of(env, preview_id)[f"invoices:{ledger.invoices['LF-0515']}"]
    assert (skipped.outcome, skipped.detail["reason"]) == (
        "skipped", f"already delivered to this target by run {other}")
    assert [r["number"] for r in sink.requests[-1].records] == ["INV-0520", "INV-0531"]
    assert_taken_once(sink, 5)


def test_duplicated_steps_send_nothing_twice(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
    dispatcher: RecordingDispatcher,
) -> None:
    job = make_job(env, clock, target=http_target(sink.url), batch_size=2)
    run_id = start_manual(env, clock, job, **MAY)
    # Every step is delivered twice
    while dispatcher.steps:
        _, step = dispatcher.steps.popleft()
        execute_step(env, step.run_id, step.phase, step.chunk_no)
        execute_step(env, step.run_id, step.phase, step.chunk_no)
    run = run_row(env, run_id)
    assert run.status == S.COMPLETED
    for phase in (Phase.PLAN, Phase.EVALUATE, Phase.APPLY):
        for chunk_no in (0, 1, 2, FINAL_CHECK):
            execute_step(env, run_id, phase, chunk_no)
    assert [r.key for r in sink.requests] == [f"{run_id}:1", f"{run_id}:2", f"{run_id}:3"]
    assert run_row(env, run_id).summary == run.summary
    assert len(delivered(env.billing_engine)) == 5
    assert_taken_once(sink, 5)


class WorkerKilled(BaseException):
    """Stands for the worker process dying: nothing after it runs, not even the executor's error handling."""


def test_a_worker_lost_after_the_erp_took_a_batch_resends_it_under_the_same_key(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
    dispatcher: RecordingDispatcher, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a submitted run whose worker dies right after the ERP took batch 1, before recording it
    job = make_job(env, clock, target=http_target(sink.url), batch_size=3)
    run_id = start_manual(env, clock, job, preview=True, **MAY)
    drain()
    submit(env, clock, run_id)
    record = erp_apply._record_deliveries

    def die(*args: Any, **kwargs: Any) -> None:
        raise WorkerKilled

    monkeypatch.setattr(erp_apply, "_record_deliveries", die)
    _, step = dispatcher.steps.popleft()
    with pytest.raises(WorkerKilled):
        execute_step(env, step.run_id, step.phase, step.chunk_no)
    assert sink.accepted and delivered(env.billing_engine) == []
    # When the step is delivered again (beat re-sends a stale run's unfinished chunks)
    monkeypatch.setattr(erp_apply, "_record_deliveries", record)
    execute_step(env, step.run_id, step.phase, step.chunk_no)
    drain()
    # Then the batch went again under the same key, the ERP recognised it, every record is recorded once
    assert run_row(env, run_id).status == S.COMPLETED
    assert [(r.key, r.accepted) for r in sink.requests] == [
        (f"{run_id}:1", True), (f"{run_id}:1", False), (f"{run_id}:2", True)]
    assert len(delivered(env.billing_engine)) == 5
    assert_taken_once(sink, 5)
