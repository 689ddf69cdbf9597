"""The GL collector on a hand-made ledger with a hand-computed journal, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, text, update
from workers_testkit import Drain, RecordingDispatcher

from cli.migrations import migrate_billing_database
from scheduler.clock import FrozenClock
from scheduler.errors import InvalidProperties
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import load_registry
from scheduler.models import Job, JobRun, RunChunk, RunItem, RunStatus
from scheduler.runs import RunCreate, act_on_run, create_manual_run, retry_run, send_apply, send_run
from scheduler.settings import Settings
from workers.billing import accounts, dunning_actions, invoices, payments
from workers.billing.gl_tables import gl_entries
from workers.gl import JOB_TYPE, GLProperties
from workers.gl import evaluate as gl_evaluate
from workers.gl.sources import JournalLine, journal_lines
from workers.gl.summary import run_lines
from workers.gl.tables import gl_staged
from workers.runtime.env import WorkerEnv
from workers.runtime.executor import build_context, execute_step, load_run
from workers.testing.conformance import delivered_twice

S = RunStatus
D = Decimal

# The clock of the tests (conftest): runs are created, hence cut off, at this instant.
AS_OF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def at(day: str, time: str = "10:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{time}:00+00:00")


@pytest.fixture
def worker_settings(settings: Settings) -> Settings:
    """Chunks of two documents, so every collector with more than two spans several chunks."""
    return settings.model_copy(update={"chunk_size": 2})


@pytest.fixture
def ledger(billing_engine: Engine) -> dict[str, int]:
    """Documents with a known journal (see ``EXPECTED_LINES``) plus some that must not be collected."""
    with billing_engine.begin() as conn:
        def account(number: str) -> int:
            return int(conn.execute(insert(accounts).values(account_number=number, name=number)
                                    .returning(accounts.c.id)).scalar_one())

        def invoice(key: str, account_id: int, issued: str, amount: str, **extra: Any) -> tuple[str, int]:
            values = {"account_id": account_id, "number": key, "issued_on": date.fromisoformat(issued),
                      "due_on": date.fromisoformat(issued), "amount": D(amount), "balance": D(amount), **extra}
            return key, int(conn.execute(insert(invoices).values(**values).returning(invoices.c.id)).scalar_one())

        def payment(key: str, account_id: int, received: datetime, amount: str) -> tuple[str, int]:
            values = {"account_id": account_id, "amount": D(amount), "received_at": received}
            return key, int(conn.execute(insert(payments).values(**values).returning(payments.c.id)).scalar_one())

        a, b = account("A-1"), account("B-2")
        docs = dict([
            invoice("INV-1", a, "2026-05-01", "100.00"),
            invoice("INV-2", a, "2026-05-15", "250.50"),
            invoice("INV-3", b, "2026-05-20", "75.25"),
            invoice("INV-LATER", b, "2026-06-05", "99.00"),  # issued after the as-of date
            invoice("INV-VOID", b, "2026-05-10", "40.00", status="VOID"),
            invoice("INV-ZERO", b, "2026-05-11", "0.00"),
            invoice("LF-1", b, "2026-05-21", "15.00", kind="LATE_FEE"),
            payment("PAY-1", a, at("2026-05-20"), "100.00"),
            payment("PAY-2", b, AS_OF, "30.00"),  # exactly at the cut-off: collected
            payment("PAY-LATER", b, at("2026-06-02"), "10.00"),
            payment("REFUND-1", a, at("2026-05-25"), "-20.00"),
        ])
        docs["WO-1"] = int(conn.execute(
            insert(dunning_actions).values(run_id=9999, account_id=b, from_tier=3, to_tier=4, actions=["write_off"],
                                           write_off_amount=D("60.25"), applied_at=at("2026-05-28", "09:00"))
            .returning(dunning_actions.c.id)
        ).scalar_one())
        conn.execute(insert(dunning_actions).values(run_id=9999, account_id=a, from_tier=0, to_tier=1,
                                                    actions=["notice"], applied_at=at("2026-05-28", "09:00")))
        docs["A"], docs["B"] = a, b
    return docs


def expected_lines(docs: dict[str, int]) -> set[tuple[Any, ...]]:
    """The journal worked out by hand: (source, document, line, GL account, debit, credit, entry date)."""
    rows = [
        ("INVOICE", "INV-1", 1, "1200", "100.00", "0.00", "2026-05-01"),
        ("INVOICE", "INV-1", 2, "4000", "0.00", "100.00", "2026-05-01"),
        ("INVOICE", "INV-2", 1, "1200", "250.50", "0.00", "2026-05-15"),
        ("INVOICE", "INV-2", 2, "4000", "0.00", "250.50", "2026-05-15"),
        ("INVOICE", "INV-3", 1, "1200", "75.25", "0.00", "2026-05-20"),
        ("INVOICE", "INV-3", 2, "4000", "0.00", "75.25", "2026-05-20"),
        ("PAYMENT", "PAY-1", 1, "1000", "100.00", "0.00", "2026-05-20"),
        ("PAYMENT", "PAY-1", 2, "1200", "0.00", "100.00", "2026-05-20"),
        ("PAYMENT", "PAY-2", 1, "1000", "30.00", "0.00", "2026-06-01"),
        ("PAYMENT", "PAY-2", 2, "1200", "0.00", "30.00", "2026-06-01"),
        # A refund (negative payment) swaps the sides.
        ("PAYMENT", "REFUND-1", 1, "1000", "0.00", "20.00", "2026-05-25"),
        ("PAYMENT", "REFUND-1", 2, "1200", "20.00", "0.00", "2026-05-25"),
        ("LATE_FEE", "LF-1", 1, "1200", "15.00", "0.00", "2026-05-21"),
        ("LATE_FEE", "LF-1", 2, "4100", "0.00", "15.00", "2026-05-21"),
        ("WRITE_OFF", "WO-1", 1, "6100", "60.25", "0.00", "2026-05-28"),
        ("WRITE_OFF", "WO-1", 2, "1200", "0.00", "60.25", "2026-05-28"),
    ]
    return {(t, docs[k], n, acct, D(dr), D(cr), date.fromisoformat(day)) for t, k, n, acct, dr, cr, day in rows}


EXPECTED_ACCOUNTS = {
    "1000": {"debit": "130.00", "credit": "20.00", "lines": 3},
    "1200": {"debit": "460.75", "credit": "190.25", "lines": 8},
    "4000": {"debit": "0.00", "credit": "425.75", "lines": 3},
    "4100": {"debit": "0.00", "credit": "15.00", "lines": 1},
    "6100": {"debit": "60.25", "credit": "0.00", "lines": 1},
}


def posted(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(select(gl_entries.c.source_type, gl_entries.c.source_id, gl_entries.c.line_no,
                                   gl_entries.c.gl_account, gl_entries.c.debit, gl_entries.c.credit,
                                   gl_entries.c.entry_date))
        return [(r[0], r[1], r[2], r[3], D(r[4]).quantize(D("0.01")), D(r[5]).quantize(D("0.01")), r[6])
                for r in rows]


def account_totals(engine: Engine) -> dict[str, tuple[Decimal, Decimal]]:
    with engine.connect() as conn:
        rows = conn.execute(select(gl_entries.c.gl_account, func.sum(gl_entries.c.debit), func.sum(gl_entries.c.credit))
                            .group_by(gl_entries.c.gl_account))
        return {r[0]: (D(r[1]).quantize(D("0.01")), D(r[2]).quantize(D("0.01"))) for r in rows}


def staged_count(engine: Engine, run_id: int | None = None) -> int:
    query = select(func.count()).select_from(gl_staged)
    if run_id is not None:
        query = query.where(gl_staged.c.run_id == run_id)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def items_of(env: WorkerEnv, run_id: int) -> dict[str, tuple[str, dict[str, Any]]]:
    with env.factory() as session:
        rows = session.scalars(select(RunItem).where(RunItem.run_id == run_id))  # type: ignore[arg-type]
        return {r.item_key: (r.outcome, r.detail) for r in rows}


def run_of(env: WorkerEnv, run_id: int) -> JobRun:
    loaded = load_run(env, run_id)
    assert loaded is not None
    return loaded[0]


@pytest.fixture
def gl_job(env: WorkerEnv, clock: FrozenClock) -> Callable[..., Job]:
    def make(name: str = "GL collector", *, requires_review: bool = False, **properties: Any) -> Job:
        with env.factory() as session:
            job = create_job(
                session=session, registry=env.registry, actor="test", clock=clock,
                job_in=JobCreate(name=name, job_type="gl_collector", properties=properties,
                                 requires_review=requires_review),
            )
            session.expunge(job)
            return job

    return make


@pytest.fixture
def gl_run(env: WorkerEnv, clock: FrozenClock) -> Callable[..., int]:
    """Record a manual run and send its plan step."""

    def start(job: Job, *, preview: bool = False, **run_properties: Any) -> int:
        assert job.id is not None
        with env.factory() as session:
            run, _ = create_manual_run(
                session=session, registry=env.registry, actor="test", clock=clock,
                run_in=RunCreate(job_id=job.id, preview=preview, run_properties=run_properties),
            )
            assert run.id is not None
            run_id = run.id
        assert send_run(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=run_id,
                        clock=clock)
        return run_id

    return start


def submit(env: WorkerEnv, clock: FrozenClock, run_id: int) -> None:
    with env.factory() as session:
        act_on_run(session=session, run_id=run_id, action="submit", actor="reviewer", clock=clock)
    send_apply(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=run_id)


def test_known_ledger_posts_the_hand_computed_journal(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain,
) -> None:
    # Given the hand-made ledger and a GL job with the default chart of accounts
    # When a run goes through the executor
    run_id = gl_run(gl_job())
    drain()
    # Then it completed and posted exactly the hand-computed lines, balanced per run and per account
    run = run_of(env, run_id)
    assert run.status == S.COMPLETED, run.error
    assert set(posted(billing_engine)) == expected_lines(ledger)
    assert len(posted(billing_engine)) == 16
    assert account_totals(billing_engine) == {
        a: (D(t["debit"]), D(t["credit"])) for a, t in EXPECTED_ACCOUNTS.items()  # type: ignore[arg-type]
    }
    summary = run.summary
    assert summary["journal"] == "posted"
    assert (summary["documents"], summary["lines"]) == (8, 16)
    assert (summary["debit_total"], summary["credit_total"], summary["balanced"]) == ("651.00", "651.00", True)
    assert summary["accounts"] == EXPECTED_ACCOUNTS
    assert (summary["skipped_documents"], summary["skipped_lines"]) == (0, 0)
    assert summary["items"] == {"ok": 12}
    # Chunks of two: invoices 2+1, payments 2+1, one late fee, one write-off; an item per chunk and GL account
    assert run.chunks_total == 6
    items = items_of(env, run_id)
    assert all(outcome == "ok" for outcome, _ in items.values())
    first = f"INVOICE:{ledger['INV-1']}-{ledger['INV-2']}:1200"
    assert items[first][1] == {
        "collector": "invoices", "source_type": "INVOICE", "first_id": ledger["INV-1"], "last_id": ledger["INV-2"],
        "gl_account": "1200", "documents": 2, "lines": 2, "debit": "350.50", "credit": "0.00",
        "posted_documents": 2, "posted_lines": 2, "posted_debit": "350.50", "posted_credit": "0.00",
        "skipped_lines": 0,
    }
    # The lines are readable by run, with the run and the posting time on each
    assert len(run_lines(billing_engine, run_id)) == 16
    with billing_engine.connect() as conn:
        stamped = conn.execute(select(gl_entries.c.run_id, gl_entries.c.posted_at).distinct()).all()
    assert stamped == [(run_id, AS_OF)]
    assert staged_count(billing_engine) == 0


def test_a_second_run_collects_nothing_new_then_only_what_is_new(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock,
) -> None:
    job = gl_job()
    gl_run(job)
    drain()
    before = sorted(posted(billing_engine))
    # When the job runs again with nothing new
    again = gl_run(job)
    drain()
    # Then it completes with no chunk and no line
    run = run_of(env, again)
    assert run.status == S.COMPLETED
    assert run.chunks_total == 0
    assert (run.summary["documents"], run.summary["lines"]) == (0, 0)
    assert sorted(posted(billing_engine)) == before
    # When a payment arrives and time passes, the next run collects that payment only
    with billing_engine.begin() as conn:
        pay = conn.execute(insert(payments).values(account_id=ledger["A"], amount=D("12.34"),
                                                   received_at=at("2026-06-01", "13:00"))
                           .returning(payments.c.id)).scalar_one()
    clock.set(at("2026-06-01", "14:00"))
    third = gl_run(job)
    drain()
    assert run_of(env, third).summary["accounts"] == {
        "1000": {"debit": "12.34", "credit": "0.00", "lines": 1},
        "1200": {"debit": "0.00", "credit": "12.34", "lines": 1},
    }
    new = sorted(set(posted(billing_engine)) - set(before))
    assert [(r[0], r[1], r[2]) for r in new] == [("PAYMENT", pay, 1), ("PAYMENT", pay, 2)]


def test_run_as_of_property_limits_what_is_collected(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain,
) -> None:
    # A run as of 2026-05-20 10:00 UTC sees INV-1, INV-2, INV-3 (issued on or before that date) and PAY-1
    run_id = gl_run(gl_job(), as_of="2026-05-20T10:00:00Z")
    drain()
    run = run_of(env, run_id)
    assert run.status == S.COMPLETED
    assert {(r[0], r[1]) for r in posted(billing_engine)} == {
        ("INVOICE", ledger["INV-1"]), ("INVOICE", ledger["INV-2"]), ("INVOICE", ledger["INV-3"]),
        ("PAYMENT", ledger["PAY-1"]),
    }
    assert run.summary["as_of"] == "2026-05-20T10:00:00+00:00"


def test_only_the_configured_collectors_and_accounts_are_used(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain,
) -> None:
    job = gl_job(collectors=["late_fees", "write_offs"],
                 gl_accounts={"late_fees": {"debit": "AR-9", "credit": "FEES"}})
    run_id = gl_run(job)
    drain()
    assert run_of(env, run_id).status == S.COMPLETED
    assert account_totals(billing_engine) == {
        "AR-9": (D("15.00"), D("0.00")), "FEES": (D("0.00"), D("15.00")),
        "6100": (D("60.25"), D("0.00")), "1200": (D("0.00"), D("60.25")),
    }


def test_preview_stops_with_the_staged_journal_and_posts_it_after_submit(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock,
) -> None:
    # Given a preview run through the executor, one account billing in euros
    with billing_engine.begin() as conn:
        conn.exec_driver_sql("UPDATE accounts SET currency = 'EUR' WHERE id = (SELECT MIN(id) FROM accounts)")
    run_id = gl_run(gl_job(), preview=True)
    drain()
    # Then it waits at PREVIEW with the journal staged (totals per GL account) and nothing posted
    run = run_of(env, run_id)
    assert run.status == S.PREVIEW
    assert run.summary["journal"] == "staged"
    assert run.summary["accounts"] == EXPECTED_ACCOUNTS
    assert run.summary["items"] == {"planned": 12}
    # And the debits and credits submit will post, per currency, balanced
    staged_money = run.summary["money"]
    assert set(staged_money) == {"EUR", "USD"}
    assert all(m["debits"] == m["credits"] for m in staged_money.values())
    assert sum(Decimal(m["debits"]) for m in staged_money.values()) == Decimal(run.summary["debit_total"])
    assert posted(billing_engine) == []
    lines = run_lines(billing_engine, run_id)
    assert {(r["source_type"], r["source_id"], r["line_no"], r["gl_account"], r["debit"], r["credit"],
             r["entry_date"]) for r in lines} == expected_lines(ledger)
    assert {r["table"] for r in lines} == {"gl_staged"}
    # When it is submitted
    submit(env, clock, run_id)
    drain()
    # Then the staged journal is posted
    run = run_of(env, run_id)
    assert run.status == S.COMPLETED, run.error
    assert set(posted(billing_engine)) == expected_lines(ledger)
    assert run.summary["journal"] == "posted" and run.summary["accounts"] == EXPECTED_ACCOUNTS
    assert run.summary["money"] == staged_money  # what the preview showed is what was posted
    assert staged_count(billing_engine) == 0



def test_a_preview_evaluated_twice_stages_each_line_once_with_the_same_totals(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given every chunk's evaluation delivered twice (the worker died before its chunk was marked)
    monkeypatch.setattr(JOB_TYPE, "evaluate", delivered_twice(JOB_TYPE.evaluate))
    # When a preview runs
    run_id = gl_run(gl_job(), preview=True)
    drain()
    # Then it stages the journal once, and its items and totals are those of one evaluation
    run = run_of(env, run_id)
    assert run.status == S.PREVIEW
    assert staged_count(billing_engine, run_id) == 16
    assert run.summary["accounts"] == EXPECTED_ACCOUNTS
    assert run.summary["items"] == {"planned": 12}
    assert (run.summary["documents"], run.summary["lines"]) == (8, 16)


def money_of_lines(engine: Engine, table: Any, run_id: int) -> dict[str, dict[str, str]]:
    """Debits and credits per currency of the accounts, summed from the run's lines themselves."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(accounts.c.currency, func.sum(table.c.debit), func.sum(table.c.credit))
            .join_from(table, accounts, accounts.c.id == table.c.account_id)
            .where(table.c.run_id == run_id).group_by(accounts.c.currency)
        ).all()
    return {c: {"debits": str(D(d).quantize(D("0.01"))), "credits": str(D(k).quantize(D("0.01")))} for c, d, k in rows}


@pytest.mark.parametrize("review", [True, False], ids=["reviewed", "unattended"])
def test_money_in_one_currency_is_the_sum_of_the_runs_lines(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock, review: bool,
) -> None:
    # Given every account billing in euros, and a document already collected by an earlier run
    with billing_engine.begin() as conn:
        conn.exec_driver_sql("UPDATE accounts SET currency = 'EUR'")
    first = gl_run(gl_job(collectors=["invoices"]))
    drain()
    assert run_of(env, first).status == S.COMPLETED
    # When a run of every collector is evaluated (staged for review, or not) and applied
    run_id = gl_run(gl_job(name="GL all"), preview=review)
    drain()
    run = run_of(env, run_id)
    if review:
        # Then the preview's money is what its staged lines sum to
        assert run.summary["money"] == money_of_lines(billing_engine, gl_staged, run_id)
        assert run.summary["money"]["EUR"]["debits"] == run.summary["debit_total"]
        submit(env, clock, run_id)
        drain()
        run = run_of(env, run_id)
    # And the run's money is what it posted, in the one currency, without the earlier run's lines
    assert run.status == S.COMPLETED, run.error
    assert run.summary["money"] == money_of_lines(billing_engine, gl_entries, run_id)
    assert set(run.summary["money"]) == {"EUR"}
    assert run.summary["money"]["EUR"]["debits"] == run.summary["debit_total"] != "0.00"

@pytest.mark.parametrize("review", [True, False], ids=["reviewed", "unattended"])
def test_a_duplicated_apply_message_posts_nothing_twice(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock, dispatcher: RecordingDispatcher, review: bool,
) -> None:
    run_id = gl_run(gl_job(), preview=review)
    if review:
        drain()
        submit(env, clock, run_id)
    else:
        # Run up to the end of evaluation: the apply steps are then queued
        while not any(step.phase == "apply" for _, step in dispatcher.steps):
            _, step = dispatcher.steps.popleft()
            execute_step(env, step.run_id, step.phase, step.chunk_no)
    # Every apply message delivered twice, the second copies after the first round
    dispatcher.steps.extend(list(dispatcher.steps))
    drain()
    assert run_of(env, run_id).status == S.COMPLETED
    assert len(posted(billing_engine)) == 16
    # And the job type itself applied again (a crash after its commit, before the chunk was marked)
    loaded = load_run(env, run_id)
    assert loaded is not None
    ctx = build_context(env, *loaded)
    items_before = items_of(env, run_id)
    with env.factory() as session:
        chunks = session.scalars(select(RunChunk).where(RunChunk.run_id == run_id)).all()  # type: ignore[arg-type]
        specs = [(c.chunk_no, dict(c.spec)) for c in chunks]
    for chunk_no, spec in specs:
        JOB_TYPE.apply(ctx, chunk_no, spec)
    assert set(posted(billing_engine)) == expected_lines(ledger)
    assert items_of(env, run_id) == items_before


def test_a_chunk_applied_again_after_a_lost_commit_mark_records_its_lines_once(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock,
) -> None:
    # Given a submitted run whose first chunk was applied but whose items were reset (as if not recorded)
    run_id = gl_run(gl_job(), preview=True)
    drain()
    loaded = load_run(env, run_id)
    assert loaded is not None
    ctx = build_context(env, *loaded)
    with env.factory() as session:
        spec = session.get(RunChunk, (run_id, 0)).spec  # type: ignore[union-attr]
    JOB_TYPE.apply(ctx, 0, spec)
    with env.factory() as session:
        session.execute(update(RunItem).where(RunItem.run_id == run_id).values(outcome="planned"))  # type: ignore[arg-type]
        session.commit()
    # When the whole run is then submitted and applied
    submit(env, clock, run_id)
    drain()
    # Then the first chunk's lines count as this run's own (ok), not as skipped
    run = run_of(env, run_id)
    assert run.status == S.COMPLETED
    assert run.summary["items"] == {"ok": 12}
    assert run.summary["accounts"] == EXPECTED_ACCOUNTS
    assert set(posted(billing_engine)) == expected_lines(ledger)


def test_two_runs_planned_before_either_applies_post_each_document_once(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock,
) -> None:
    # Given two jobs' runs that both staged the same journal
    first = gl_run(gl_job("GL one"), preview=True)
    second = gl_run(gl_job("GL two"), preview=True)
    drain()
    assert run_of(env, first).status == run_of(env, second).status == S.PREVIEW
    assert run_of(env, second).summary["accounts"] == EXPECTED_ACCOUNTS
    # When both are submitted and applied, the second one first
    submit(env, clock, second)
    submit(env, clock, first)
    drain()
    # Then each document is posted once, by the second run; the first skipped everything, saying why
    assert set(posted(billing_engine)) == expected_lines(ledger)
    with billing_engine.connect() as conn:
        assert set(conn.execute(select(gl_entries.c.run_id).distinct()).scalars()) == {second}
    one, two = run_of(env, first), run_of(env, second)
    assert two.status == S.COMPLETED and two.summary["accounts"] == EXPECTED_ACCOUNTS
    assert one.status == S.COMPLETED
    assert (one.summary["documents"], one.summary["lines"]) == (0, 0)
    assert (one.summary["skipped_documents"], one.summary["skipped_lines"]) == (8, 16)
    assert one.summary["items"] == {"skipped": 12}
    reasons = {d["reason"] for _, d in items_of(env, first).values()}
    assert reasons == {"1 line(s) already collected by another run", "2 line(s) already collected by another run"}


def test_two_unattended_runs_evaluated_before_either_applies_post_each_document_once(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, dispatcher: RecordingDispatcher,
) -> None:
    # Given two runs without review, both planned and evaluated before either applies (steps run in order)
    first, second = gl_run(gl_job("GL one")), gl_run(gl_job("GL two"))
    drain()
    phases = [(step.run_id, step.phase) for _, step in dispatcher.sent]
    last_evaluate = max(i for i, (_, phase) in enumerate(phases) if phase == "evaluate")
    first_apply = min(i for i, (_, phase) in enumerate(phases) if phase == "apply")
    assert last_evaluate < first_apply
    # Then each document is posted once, by the first run to apply; the other skipped all of it
    assert set(posted(billing_engine)) == expected_lines(ledger)
    one, two = run_of(env, first), run_of(env, second)
    assert (one.status, two.status) == (S.COMPLETED, S.COMPLETED)
    assert one.summary["accounts"] == EXPECTED_ACCOUNTS and two.summary["staged_lines"] == 16
    assert (two.summary["lines"], two.summary["skipped_lines"], two.summary["items"]) == (0, 16, {"skipped": 12})
    assert {d["reason"] for _, d in items_of(env, second).values()} == {
        "already collected by another run (or no longer collectable)"
    }


def test_two_runs_applying_at_the_same_time_post_each_document_once(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock, dispatcher: RecordingDispatcher,
) -> None:
    # Given two submitted runs with the same staged journal
    runs = [gl_run(gl_job(f"GL {n}"), preview=True) for n in range(2)]
    drain()
    for run_id in runs:
        submit(env, clock, run_id)
    steps = list(dispatcher.steps)
    dispatcher.steps.clear()
    # When two workers apply them concurrently (one thread per run, chunks in opposite orders)
    failures: list[BaseException] = []

    def work(run_id: int, reverse: bool) -> None:
        try:
            mine = [s for _, s in steps if s.run_id == run_id]
            for step in reversed(mine) if reverse else mine:
                execute_step(env, step.run_id, step.phase, step.chunk_no)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(run_id, n == 1)) for n, run_id in enumerate(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    drain()
    assert not failures
    # Then every document is posted exactly once, and between them the runs posted the whole journal
    assert sorted(posted(billing_engine)) == sorted(expected_lines(ledger))
    summaries = [run_of(env, r).summary for r in runs]
    assert all(run_of(env, r).status == S.COMPLETED for r in runs)
    assert sum(s["documents"] for s in summaries) == 8
    assert sum(s["lines"] for s in summaries) == 16
    assert sum(s["skipped_lines"] for s in summaries) == 16


def test_an_unattended_apply_skips_a_document_another_transaction_posts_meanwhile(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], dispatcher: RecordingDispatcher, drain: Drain,
) -> None:
    if billing_engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no posting can happen meanwhile")
    # Given an unattended run evaluated, its apply steps not yet run
    run_id = gl_run(gl_job())
    while dispatcher.steps and dispatcher.steps[0][1].phase != "apply":
        _, step = dispatcher.steps.popleft()
        execute_step(env, step.run_id, step.phase, step.chunk_no)
    _, first_apply = dispatcher.steps.popleft()
    # And another transaction posting INV-1 (its first chunk's first document), not yet committed
    holder = billing_engine.connect()
    holder.begin()
    holder.execute(insert(gl_entries), [
        {"run_id": 0, "source_type": "INVOICE", "source_id": ledger["INV-1"], "line_no": n, "account_id": 1,
         "gl_account": account, "debit": debit, "credit": credit, "entry_date": date(2026, 5, 1), "posted_at": AS_OF}
        for n, account, debit, credit in ((1, "1200", D("100.00"), D(0)), (2, "4000", D(0), D("100.00")))
    ])
    # When the run applies that chunk (its insert waits on INV-1's key) and the other transaction commits
    failures: list[BaseException] = []

    def apply() -> None:
        try:
            execute_step(env, first_apply.run_id, first_apply.phase, first_apply.chunk_no)
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=apply)
    worker.start()
    with billing_engine.connect() as conn:
        while worker.is_alive() and not conn.execute(select(func.count()).select_from(
                text("pg_locks")).where(text("NOT granted"))).scalar_one():
            threading.Event().wait(0.05)
    holder.commit()
    holder.close()
    worker.join(60)
    drain()
    # Then INV-1 is posted once (by the other transaction) and the run posted everything else
    assert not failures
    run = run_of(env, run_id)
    assert run.status == S.COMPLETED, run.error
    assert sorted(posted(billing_engine)) == sorted(expected_lines(ledger))
    with billing_engine.connect() as conn:
        by_run = dict(conn.execute(select(gl_entries.c.run_id, func.count()).group_by(gl_entries.c.run_id)).all())
    assert by_run == {0: 2, run_id: 14}
    assert (run.summary["lines"], run.summary["skipped_lines"]) == (14, 2)
    assert run.summary["accounts"]["4000"] == {"debit": "0.00", "credit": "325.75", "lines": 2}


def test_documents_voided_after_posting_are_reversed_once_on_the_run_date(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock,
) -> None:
    # Given the ledger posted by a job with its own accounts for late fees
    job = gl_job(gl_accounts={"late_fees": {"debit": "AR-9", "credit": "FEES"}})
    gl_run(job)
    drain()
    before = set(posted(billing_engine))
    # When INV-2 and the late fee are voided, and a day later the job runs again
    with billing_engine.begin() as conn:
        conn.execute(update(invoices).where(invoices.c.id.in_([ledger["INV-2"], ledger["LF-1"]]))
                     .values(status="VOID"))
    clock.set(at("2026-06-02"))
    run_id = gl_run(job)
    drain()
    # Then each gets the reverse of the entry it was posted with, dated the run's date, and nothing else moves
    run = run_of(env, run_id)
    assert run.status == S.COMPLETED, run.error
    day = date(2026, 6, 2)
    new = set(posted(billing_engine)) - before
    assert {(r[0], r[1]) for r in new if not r[0].endswith("_VOID")} == {("PAYMENT", ledger["PAY-LATER"])}
    assert {r for r in new if r[0].endswith("_VOID")} == {
        ("INVOICE_VOID", ledger["INV-2"], 1, "4000", D("250.50"), D("0.00"), day),
        ("INVOICE_VOID", ledger["INV-2"], 2, "1200", D("0.00"), D("250.50"), day),
        ("LATE_FEE_VOID", ledger["LF-1"], 1, "FEES", D("15.00"), D("0.00"), day),
        ("LATE_FEE_VOID", ledger["LF-1"], 2, "AR-9", D("0.00"), D("15.00"), day),
    }
    assert (run.summary["documents"], run.summary["balanced"]) == (3, True)  # with PAY-LATER, received since
    # INV-2's own lines and the reversal net to zero on both accounts
    with billing_engine.connect() as conn:
        net = conn.execute(select(gl_entries.c.gl_account, func.sum(gl_entries.c.debit - gl_entries.c.credit))
                           .where(gl_entries.c.source_id == ledger["INV-2"],
                                  gl_entries.c.source_type.in_(["INVOICE", "INVOICE_VOID"]))
                           .group_by(gl_entries.c.gl_account)).all()
    assert {account: D(total) for account, total in net} == {"1200": D("0.00"), "4000": D("0.00")}
    # A further run reverses nothing again; INV-VOID, voided before it was ever collected, is never reversed
    again = gl_run(job)
    drain()
    assert run_of(env, again).summary["documents"] == 0
    assert not [r for r in posted(billing_engine) if r[1] == ledger["INV-VOID"]]


def test_a_reversal_is_previewed_and_posted_on_submit(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock,
) -> None:
    job = gl_job(collectors=["invoices", "invoice_voids"])
    gl_run(job)
    drain()
    with billing_engine.begin() as conn:
        conn.execute(update(invoices).where(invoices.c.id == ledger["INV-1"]).values(status="VOID"))
    run_id = gl_run(job, preview=True)
    drain()
    assert run_of(env, run_id).status == S.PREVIEW
    assert staged_count(billing_engine, run_id) == 2
    assert not [r for r in posted(billing_engine) if r[0] == "INVOICE_VOID"]
    submit(env, clock, run_id)
    drain()
    assert run_of(env, run_id).status == S.COMPLETED
    assert sorted((r[0], r[1], r[2], r[3]) for r in posted(billing_engine) if r[0] == "INVOICE_VOID") == [
        ("INVOICE_VOID", ledger["INV-1"], 1, "4000"), ("INVOICE_VOID", ledger["INV-1"], 2, "1200")]
    # A void undone between the preview and the submit is not reversed, and the items say why
    with billing_engine.begin() as conn:
        conn.execute(update(invoices).where(invoices.c.id == ledger["INV-2"]).values(status="VOID"))
    undone = gl_run(job, preview=True)
    drain()
    with billing_engine.begin() as conn:
        conn.execute(update(invoices).where(invoices.c.id == ledger["INV-2"]).values(status="OPEN"))
    submit(env, clock, undone)
    drain()
    assert not [r for r in posted(billing_engine) if r[:2] == ("INVOICE_VOID", ledger["INV-2"])]
    reasons = {d["reason"] for outcome, d in items_of(env, undone).values() if outcome == "skipped"}
    assert reasons == {"1 line(s) of documents no longer collectable (no longer void since the preview)"}


def test_an_invoice_voided_after_the_preview_is_skipped_with_the_reason(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock,
) -> None:
    run_id = gl_run(gl_job(collectors=["invoices"]), preview=True)
    drain()
    with billing_engine.begin() as conn:
        conn.execute(update(invoices).where(invoices.c.id == ledger["INV-3"]).values(status="VOID"))
    submit(env, clock, run_id)
    drain()
    run = run_of(env, run_id)
    assert run.status == S.COMPLETED
    assert {(r[0], r[1]) for r in posted(billing_engine)} == {
        ("INVOICE", ledger["INV-1"]), ("INVOICE", ledger["INV-2"]),
    }
    skipped = {k: d for k, (outcome, d) in items_of(env, run_id).items() if outcome == "skipped"}
    assert set(skipped) == {f"INVOICE:{ledger['INV-3']}-{ledger['INV-3']}:1200",
                            f"INVOICE:{ledger['INV-3']}-{ledger['INV-3']}:4000"}
    assert {d["reason"] for d in skipped.values()} == {
        "1 line(s) of documents no longer collectable (voided since the preview)"
    }
    assert (run.summary["documents"], run.summary["skipped_documents"]) == (2, 1)


def corrupt_credit(source: Any, posting: Any) -> list[JournalLine]:
    """A broken mapping: payments' credit lines lose a cent."""
    lines = journal_lines(source, posting)
    if source.collector != "payments":
        return lines
    debit_line, credit_line = lines
    broken = JournalLine(line_no=2, gl_account=credit_line.gl_account, debit=credit_line.debit,
                         credit="(CASE WHEN doc.amount > 0 THEN doc.amount - 0.01 ELSE 0 END)")
    return [debit_line, broken]


@pytest.mark.parametrize("review", [True, False], ids=["reviewed", "unattended"])
def test_an_unbalanced_mapping_fails_the_run_and_posts_nothing(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, monkeypatch: pytest.MonkeyPatch, review: bool,
) -> None:
    # Given a mapping that loses a cent on the credit side of payments
    monkeypatch.setattr(gl_evaluate, "journal_lines", corrupt_credit)
    job = gl_job()
    run_id = gl_run(job, preview=review)
    drain()
    # Then the run fails naming the batch and the first unbalanced document, and nothing is posted
    run = run_of(env, run_id)
    assert run.status == S.FAILED
    assert "unbalanced journal in chunk 2" in (run.error or "")
    assert "debits 130.00 != credits 129.98" in (run.error or "")
    assert f"first unbalanced document: PAYMENT {ledger['PAY-1']} (debit 100.00, credit 99.99)" in (run.error or "")
    assert posted(billing_engine) == []
    # A reviewed run keeps the chunks it staged before the bad one until the next run purges them
    assert (staged_count(billing_engine, run_id) > 0) is review
    # When the mapping is mended, the next run collects everything and drops the failed run's staging
    monkeypatch.undo()
    again = gl_run(job)
    drain()
    assert run_of(env, again).status == S.COMPLETED
    assert set(posted(billing_engine)) == expected_lines(ledger)
    assert staged_count(billing_engine) == 0


def test_an_unbalanced_staged_row_fails_the_run_and_posts_nothing(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain,
) -> None:
    # Given a stray line already staged for a preview run in its last chunk (the write-off)
    run_id = gl_run(gl_job(), preview=True)
    with billing_engine.begin() as conn:
        conn.execute(insert(gl_staged).values(
            run_id=run_id, source_type="WRITE_OFF", source_id=ledger["WO-1"], line_no=3, account_id=ledger["B"],
            gl_account="6100", debit=D("5.00"), credit=D("0.00"), entry_date=date(2026, 5, 28)))
    drain()
    run = run_of(env, run_id)
    assert run.status == S.FAILED
    assert "debits 65.25 != credits 60.25" in (run.error or "")
    assert posted(billing_engine) == []


def test_an_unbalanced_chunk_found_at_apply_posts_nothing_of_it(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock,
) -> None:
    # Given a preview whose staged write-off line is altered before submit
    run_id = gl_run(gl_job(collectors=["write_offs"]), preview=True)
    drain()
    with billing_engine.begin() as conn:
        conn.execute(update(gl_staged).where(gl_staged.c.run_id == run_id, gl_staged.c.line_no == 1)
                     .values(debit=D("61.00")))
    submit(env, clock, run_id)
    drain()
    run = run_of(env, run_id)
    assert run.status == S.FAILED
    assert "unbalanced journal" in (run.error or "")
    assert posted(billing_engine) == []


def test_the_executor_context_sees_typed_properties(
    env: WorkerEnv, ledger: dict[str, int], gl_job: Callable[..., Job], gl_run: Callable[..., int],
) -> None:
    run_id = gl_run(gl_job(), as_of="2026-05-31T23:00:00-02:00")
    loaded = load_run(env, run_id)
    assert loaded is not None
    ctx = build_context(env, *loaded)
    assert isinstance(ctx.properties, GLProperties)
    from workers.gl.sources import as_of, as_of_date

    assert as_of(ctx) == at("2026-06-01", "01:00")
    assert as_of_date(ctx) == date(2026, 6, 1)


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"collectors": []}, "collectors"),
        ({"collectors": ["invoices", "invoices"]}, "listed twice"),
        ({"collectors": ["usage"]}, "collectors"),
        ({"gl_accounts": {"payments": {"debit": "1000", "credit": "1000"}}}, "different GL accounts"),
        ({"gl_accounts": {"payments": {"debit": "", "credit": "1200"}}}, "debit"),
        ({"gl_accounts": {"payments": {"debit": "10 00", "credit": "1200"}}}, "debit"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_job_properties_are_refused(properties: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidProperties, match=message):
        JOB_TYPE.validate_properties(properties)


def test_defaults_and_run_properties() -> None:
    props = JOB_TYPE.validate_properties({})
    assert isinstance(props, GLProperties)
    assert [c.value for c in props.collectors] == [
        "invoices", "payments", "late_fees", "write_offs", "invoice_voids", "late_fee_voids"]
    assert props.model_dump(mode="json")["gl_accounts"] == {
        "invoices": {"debit": "1200", "credit": "4000"},
        "payments": {"debit": "1000", "credit": "1200"},
        "late_fees": {"debit": "1200", "credit": "4100"},
        "write_offs": {"debit": "6100", "credit": "1200"},
    }
    with pytest.raises(InvalidProperties, match="as_of"):
        JOB_TYPE.validate_run_properties({"as_of": "2026-06-01T00:00:00"})  # naive: refused
    assert JOB_TYPE.template()["queue"] == "gl_collector"


def test_a_run_with_a_separate_billing_database(tmp_path: Path, sqlite_engine: Engine, clock: FrozenClock) -> None:
    """Billing tables in their own database: the items go to the scheduler's, the journal to the billing one."""
    from scheduler.db import make_engine
    from workers.runtime.env import build_env

    billing = make_engine(f"sqlite:///{tmp_path / 'billing.db'}")
    migrate_billing_database(billing, load_registry(Settings()).all())
    dispatcher = RecordingDispatcher()
    sched_settings = Settings(data_dir=tmp_path / "data", database_url=str(sqlite_engine.url), chunk_size=2)
    env = build_env(sched_settings, dispatcher=dispatcher, registry=load_registry(sched_settings), clock=clock,
                    engine=sqlite_engine, billing_engine=billing, worker_id="w", heartbeat=False)
    with billing.begin() as conn:
        acct = conn.execute(insert(accounts).values(account_number="X", name="X").returning(accounts.c.id)).scalar_one()
        conn.execute(insert(payments), [
            {"account_id": acct, "amount": D("10.00"), "received_at": at("2026-05-01")},
            {"account_id": acct, "amount": D("5.50"), "received_at": at("2026-05-02")},
            {"account_id": acct, "amount": D("1.25"), "received_at": at("2026-05-03")},
        ])
    with env.factory() as session:
        job = create_job(session=session, registry=env.registry, actor="t", clock=clock,
                         job_in=JobCreate(name="GL", job_type="gl_collector", properties={"collectors": ["payments"]}))
        run, _ = create_manual_run(session=session, registry=env.registry, actor="t", clock=clock,
                                   run_in=RunCreate(job_id=job.id or 0))
        run_id = run.id or 0
    send_run(factory=env.factory, dispatcher=dispatcher, registry=env.registry, run_id=run_id, clock=clock)
    while dispatcher.steps:
        _, step = dispatcher.steps.popleft()
        execute_step(env, step.run_id, step.phase, step.chunk_no)
    done = run_of(env, run_id)
    assert done.status == S.COMPLETED, done.error
    assert done.summary["accounts"] == {"1000": {"debit": "16.75", "credit": "0.00", "lines": 3},
                                        "1200": {"debit": "0.00", "credit": "16.75", "lines": 3}}
    assert account_totals(billing) == {"1000": (D("16.75"), D("0.00")), "1200": (D("0.00"), D("16.75"))}
    billing.dispose()


def test_a_deleted_preview_posts_nothing_and_its_staging_is_purged_by_the_next_run(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock,
) -> None:
    job = gl_job()
    preview = gl_run(job, preview=True)
    drain()
    with env.factory() as session:
        act_on_run(session=session, run_id=preview, action="delete", actor="reviewer", clock=clock)
    assert staged_count(billing_engine, preview) == 16
    assert posted(billing_engine) == []
    # The next run collects everything and drops the deleted preview's staged lines
    again = gl_run(job)
    drain()
    assert run_of(env, again).status == S.COMPLETED
    assert set(posted(billing_engine)) == expected_lines(ledger)
    assert staged_count(billing_engine) == 0


def test_a_retry_of_an_incomplete_run_collects_what_was_left(
    env: WorkerEnv, billing_engine: Engine, ledger: dict[str, int], gl_job: Callable[..., Job],
    gl_run: Callable[..., int], drain: Drain, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.gl import apply as gl_apply

    # Given a run whose payment chunks fail to post (the database refuses them)
    real = gl_apply.direct_posting

    def failing(select_sql: str) -> str:
        return "INSERT INTO no_such_table SELECT 1" if "'PAYMENT' AS source_type" in select_sql else real(select_sql)

    monkeypatch.setattr(gl_apply, "direct_posting", failing)
    first = gl_run(gl_job())
    drain()
    run = run_of(env, first)
    assert run.status == S.INCOMPLETE
    assert {(r[0]) for r in posted(billing_engine)} == {"INVOICE", "LATE_FEE", "WRITE_OFF"}
    # When it is retried with the database mended
    monkeypatch.undo()
    with env.factory() as session:
        retry = retry_run(session=session, run_id=first, actor="ops", clock=clock)
        assert retry.id is not None
        retry_id = retry.id
    send_run(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=retry_id, clock=clock)
    drain()
    # Then the retry posts the payments, and the ledger holds the whole journal once
    done = run_of(env, retry_id)
    assert done.status == S.COMPLETED
    assert (done.summary["documents"], done.summary["accounts"]["1000"]) == (
        3, {"debit": "130.00", "credit": "20.00", "lines": 3})
    assert set(posted(billing_engine)) == expected_lines(ledger)
