"""Dunning on a hand-made ledger with known answers, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from workers_testkit import AS_OF, TIERS, Drain, RecordingDispatcher, dunning_registry

from scheduler.clock import FrozenClock
from scheduler.errors import InvalidProperties
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import Job, RunEvent, RunItem, RunStatus
from scheduler.outcomes import outcome_line
from scheduler.runs import act_on_run, retry_run, send_apply, send_run
from workers.billing import accounts, dunning_actions, invoices
from workers.dunning import JOB_TYPE, DunningJobType
from workers.runtime.env import WorkerEnv
from workers.runtime.executor import build_context, execute_step, load_run

S = RunStatus
StateFn = Callable[[], dict[str, tuple[int, str]]]


@pytest.fixture
def registry() -> JobTypeRegistry:
    return dunning_registry()


def items_of(env: WorkerEnv, run_id: int) -> dict[str, tuple[str, dict[str, Any]]]:
    with env.factory() as session:
        rows = session.scalars(select(RunItem).where(RunItem.run_id == run_id))  # type: ignore[arg-type]
        return {r.item_key: (r.outcome, r.detail) for r in rows}


def late_fees(engine: Engine) -> list[tuple[int, Decimal, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(invoices.c.account_id, invoices.c.amount, invoices.c.due_on).where(invoices.c.kind == "LATE_FEE")
        )
        return [(r.account_id, r.amount, r.due_on.isoformat()) for r in rows]


def billing_snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            name: sorted(tuple(r) for r in conn.execute(select(table)).all())
            for name, table in (("invoices", invoices), ("dunning_actions", dunning_actions))
        } | {"accounts": sorted(tuple(r) for r in conn.exec_driver_sql("SELECT * FROM accounts").all())}


def submit(env: WorkerEnv, run_id: int, clock: FrozenClock) -> None:
    """A reviewer submits the preview; its apply steps are sent."""
    with env.factory() as session:
        act_on_run(session=session, run_id=run_id, action="submit", actor="reviewer", clock=clock)
    send_apply(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=run_id)


EXPECTED_TIERS = {
    "A10": (1, "ACTIVE"), "A40": (2, "ACTIVE"), "A95": (3, "SUSPENDED"), "ADIS": (0, "ACTIVE"),
    "APAID": (0, "ACTIVE"), "AMIN": (0, "ACTIVE"), "AAT2": (2, "ACTIVE"), "BIZ": (0, "ACTIVE"),
    "CLOSED": (0, "CLOSED"),
}


def test_known_ledger_escalates_clears_and_posts_fees_exactly(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain, account_state: StateFn,
) -> None:
    # Given the hand-made ledger and a residential dunning job (minimum due 10.00)
    job = make_job()
    # When a manual run goes through the executor
    run_id = start_run(job)
    drain()
    # Then exactly the four expected accounts changed tier, with the expected actions
    run = load_run(env, run_id)
    assert run is not None
    assert run[0].status == S.COMPLETED, run[0].error
    items = items_of(env, run_id)
    assert set(items) == {"A10", "A40", "A95", "APAID"}
    assert all(outcome == "ok" for outcome, _ in items.values())
    picked = {
        key: (d["from_tier"], d["to_tier"], d["tier_name"], d["days_past_due"], d["amount_due"], d["actions"],
              d["late_fee"], d["change"])
        for key, (_, d) in items.items()
    }
    assert picked == {
        "A10": (0, 1, "Reminder", 10, "50.00", ["notice"], None, "escalate"),
        "A40": (0, 2, "Late fee", 40, "100.00", ["notice", "late_fee"], "15.00", "escalate"),
        "A95": (1, 3, "Suspension", 95, "400.00", ["suspend", "webhook"], None, "escalate"),
        "APAID": (2, 0, "No dunning", 0, "0.00", ["reinstate"], None, "clear"),
    }
    assert items["A95"][1]["webhook"] == "queued"
    assert items["A10"][1]["account_id"] == known_ledger["A10"]
    assert account_state() == EXPECTED_TIERS
    assert late_fees(env.billing_engine) == [
        (known_ledger["A40"], Decimal("15.00"), (AS_OF + timedelta(days=14)).isoformat())
    ]
    summary = run[0].summary
    assert {k: summary[k] for k in ("accounts_evaluated", "escalated", "cleared", "unchanged", "skipped",
                                    "fees_posted", "fees_total", "as_of")} == {
        "accounts_evaluated": 7, "escalated": 3, "cleared": 1, "unchanged": 3, "skipped": 0,
        "fees_posted": 1, "fees_total": "15.00", "as_of": AS_OF.isoformat(),
    }
    assert summary["items"] == {"ok": 4}
    assert summary["by_tier"] == {"0": 1, "1": 1, "2": 1, "3": 1}


def test_applying_again_changes_nothing(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain, dispatcher: RecordingDispatcher,
) -> None:
    # Given a completed run
    run_id = start_run(make_job())
    drain()
    before = billing_snapshot(env.billing_engine)
    items_before = items_of(env, run_id)
    # When every apply step is delivered again
    for _, step in [s for s in dispatcher.sent if s[1].phase == "apply"]:
        execute_step(env, run_id, "apply", step.chunk_no)
    # And, as after a crash between the billing commit and the item update, the job type applies again
    with env.factory() as session:
        session.execute(update(RunItem).where(RunItem.run_id == run_id).values(outcome="planned"))  # type: ignore[arg-type]
        session.commit()
    loaded = load_run(env, run_id)
    assert loaded is not None
    ctx = build_context(env, *loaded)
    with env.factory() as session:
        from scheduler.models import RunChunk

        chunks = session.scalars(select(RunChunk).where(RunChunk.run_id == run_id)).all()  # type: ignore[arg-type]
        specs = [(c.chunk_no, c.spec) for c in chunks]
    for chunk_no, spec in specs:
        JOB_TYPE.apply(ctx, chunk_no, spec)
    # Then the ledger is exactly as it was and every item is ok again
    assert billing_snapshot(env.billing_engine) == before
    assert {k: o for k, (o, _) in items_of(env, run_id).items()} == {k: o for k, (o, _) in items_before.items()}


def test_account_paid_after_preview_is_skipped_with_the_reason(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain, account_state: StateFn, clock: FrozenClock,
) -> None:
    # Given a preview run that staged the escalations and applied nothing
    run_id = start_run(make_job(), preview=True)
    drain()
    run = load_run(env, run_id)
    assert run is not None and run[0].status == S.PREVIEW
    assert run[0].summary["escalated"] == 3 and run[0].summary["items"] == {"planned": 4}
    assert account_state()["A40"] == (0, "ACTIVE")
    assert late_fees(env.billing_engine) == []
    # When A40 pays everything before the preview is submitted
    with env.billing_engine.begin() as conn:
        conn.execute(update(invoices).where(invoices.c.account_id == known_ledger["A40"])
                     .values(balance=0, status="PAID"))
    submit(env, run_id, clock)
    drain()
    # Then A40 is skipped with the reason, gets no fee, and the rest is applied
    run = load_run(env, run_id)
    assert run is not None and run[0].status == S.COMPLETED
    items = items_of(env, run_id)
    assert items["A40"][0] == "skipped" and items["A40"][1]["reason"] == "paid since preview"
    assert {k for k, (o, _) in items.items() if o == "ok"} == {"A10", "A95", "APAID"}
    assert account_state()["A40"] == (0, "ACTIVE")
    assert late_fees(env.billing_engine) == []
    assert run[0].summary["skipped"] == 1 and run[0].summary["fees_posted"] == 0
    # And its outcome says so in one line, with the counts by reason
    assert outcome_line(run[0].status, run[0].summary, run[0].error) == (
        "applied 3 items, 1 skipped at apply: paid since preview")
    assert run[0].summary["reasons"] == {"skipped": {"paid since preview": 1}}


def test_preview_shows_the_fees_and_write_offs_applying_posts_per_currency(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain, clock: FrozenClock,
) -> None:
    # Given a ladder whose top tier writes off, and A40 billed in euros
    tiers = [*TIERS[:3], {"code": 3, "name": "Write-off", "min_days_past_due": 90, "actions": ["write_off"]}]
    with env.billing_engine.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.account_number == "A40").values(currency="EUR"))
    # When a preview is evaluated
    run_id = start_run(make_job(tiers=tiers), preview=True)
    drain()
    preview = load_run(env, run_id)
    assert preview is not None and preview[0].status == S.PREVIEW
    # Then each item and the totals say what applying will charge, in the account's currency
    items = items_of(env, run_id)
    assert (items["A40"][1]["late_fee"], items["A40"][1]["currency"]) == ("15.00", "EUR")
    assert (items["A95"][1]["write_off"], items["A95"][1]["currency"]) == ("400.00", "USD")
    expected = {"EUR": {"late_fees": "15.00", "write_offs": "0.00"},
                "USD": {"late_fees": "0.00", "write_offs": "400.00"}}
    assert preview[0].summary["money"] == expected
    assert (preview[0].summary["fees_posted"], preview[0].summary["write_offs"]) == (1, 1)
    assert late_fees(env.billing_engine) == []
    # And when it is submitted with nothing changed, the applied run posts exactly that
    submit(env, run_id, clock)
    drain()
    applied = load_run(env, run_id)
    assert applied is not None and applied[0].status == S.COMPLETED
    assert applied[0].summary["money"] == expected
    assert [(amount, due) for _, amount, due in late_fees(env.billing_engine)] == [
        (Decimal("15.00"), (AS_OF + timedelta(days=14)).isoformat())]
    with env.billing_engine.connect() as conn:
        written_off = conn.execute(select(dunning_actions.c.write_off_amount)
                                   .where(dunning_actions.c.write_off_amount.is_not(None))).scalars().all()
    assert written_off == [Decimal("400.00")]


def test_a_preview_with_nothing_to_do_completes_at_once_unless_the_job_reviews_empty_ones(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain,
) -> None:
    # Given jobs that require review, over a category with no account to escalate or clear
    plain = make_job("Enterprise dunning", requires_review=True, account_category="ENTERPRISE")
    strict = make_job("Enterprise dunning, reviewed", requires_review=True, review_empty_previews=True,
                      account_category="ENTERPRISE")
    # When each runs
    plain_id, strict_id = start_run(plain), start_run(strict)
    drain()
    # Then the empty preview of the plain job completed at once, saying there was nothing to do
    done = load_run(env, plain_id)
    assert done is not None and done[0].status == S.COMPLETED
    assert outcome_line(done[0].status, done[0].summary, done[0].error) == "nothing to do"
    # And the job that asks to review empty previews waits for its reviewer
    waiting = load_run(env, strict_id)
    assert waiting is not None and waiting[0].status == S.PREVIEW
    assert outcome_line(waiting[0].status, waiting[0].summary, waiting[0].error) == "awaiting review: nothing to do"


def test_a_database_error_at_apply_is_told_in_words_on_the_run_and_its_items(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain, clock: FrozenClock,
) -> None:
    # Given a preview, and the table apply writes gone when it is submitted (a real database error)
    run_id = start_run(make_job(), preview=True)
    drain()
    with env.billing_engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE dunning_actions RENAME TO dunning_actions_away")
    try:
        submit(env, run_id, clock)
        drain()
    finally:
        with env.billing_engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE dunning_actions_away RENAME TO dunning_actions")
    # Then the run failed, and it and its items say what the database refused, never an exception's name
    run = load_run(env, run_id)
    assert run is not None and run[0].status == S.FAILED
    error = run[0].error or ""
    assert "the database refused the statement: " in error and "dunning_actions" in error, error
    items = items_of(env, run_id)
    assert {outcome for outcome, _ in items.values()} == {"error"}
    texts = [error, *(detail["error"] for _, detail in items.values())]
    assert not [t for t in texts if "Error" in t or "Traceback" in t], texts
    with env.factory() as session:
        notes = [e.note for e in session.scalars(select(RunEvent).where(RunEvent.run_id == run_id))]  # type: ignore[arg-type]
    assert not [n for n in notes if "Error" in n], notes


def test_deleted_preview_applies_nothing(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain, clock: FrozenClock,
) -> None:
    before = billing_snapshot(env.billing_engine)
    run_id = start_run(make_job(requires_review=True))
    drain()
    with env.factory() as session:
        act_on_run(session=session, run_id=run_id, action="delete", actor="reviewer", clock=clock)
    execute_step(env, run_id, "apply", 0)
    run = load_run(env, run_id)
    assert run is not None and run[0].status == S.DELETED
    assert billing_snapshot(env.billing_engine) == before


def test_retry_of_an_incomplete_run_redoes_only_the_failed_items(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain, account_state: StateFn, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given chunks of 3 accounts, and applying chunk 0 (A10, A40, A95) fails
    original_apply = DunningJobType.apply

    def failing_apply(self: DunningJobType, ctx: Any, chunk_no: int, spec: dict[str, Any]) -> None:
        if chunk_no == 0:
            raise RuntimeError("ledger service timed out")
        original_apply(self, ctx, chunk_no, spec)

    monkeypatch.setattr(DunningJobType, "apply", failing_apply)
    run_id = start_run(make_job())
    drain()
    run = load_run(env, run_id)
    assert run is not None
    assert run[0].status == S.INCOMPLETE
    assert "ledger service timed out" in (run[0].error or "")
    items = items_of(env, run_id)
    assert {k for k, (o, _) in items.items() if o == "error"} == {"A10", "A40", "A95"}
    assert items["APAID"][0] == "ok"
    assert "ledger service timed out" in items["A10"][1]["error"]
    assert account_state()["A10"] == (0, "ACTIVE") and account_state()["APAID"] == (0, "ACTIVE")
    # When the failure is gone and the run is retried
    monkeypatch.setattr(DunningJobType, "apply", original_apply)
    clock.advance(timedelta(days=3))
    with env.factory() as session:
        retry = retry_run(session=session, run_id=run_id, actor="operator", clock=clock)
        assert retry.id is not None
        retry_id = retry.id
    send_run(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=retry_id, clock=clock)
    drain()
    # Then only the three failed accounts are redone, as of the original run's date
    retried = load_run(env, retry_id)
    assert retried is not None and retried[0].status == S.COMPLETED
    assert {k: o for k, (o, _) in items_of(env, retry_id).items()} == {"A10": "ok", "A40": "ok", "A95": "ok"}
    assert items_of(env, retry_id)["A10"][1]["days_past_due"] == 10
    assert account_state() == EXPECTED_TIERS
    with env.billing_engine.connect() as conn:
        per_run = conn.execute(select(dunning_actions.c.run_id, dunning_actions.c.account_id)).all()
    assert sorted(per_run) == sorted(
        [(run_id, known_ledger["APAID"])] + [(retry_id, known_ledger[k]) for k in ("A10", "A40", "A95")]
    )
    assert len(late_fees(env.billing_engine)) == 1


def test_run_restricted_to_account_numbers(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    drain: Drain,
) -> None:
    run_id = start_run(make_job(), account_numbers=["A40", "AMIN", "BIZ"])
    drain()
    run = load_run(env, run_id)
    assert run is not None and run[0].status == S.COMPLETED
    assert set(items_of(env, run_id)) == {"A40"}
    assert run[0].summary["accounts_evaluated"] == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tiers": [{"code": 1, "name": "Fee", "min_days_past_due": 1, "actions": ["late_fee"]}]},
         "late_fee action needs a late_fee amount"),
        ({"tiers": [TIERS[1], {**TIERS[2], "code": 1}]}, "unique"),
        ({"tiers": [TIERS[2], TIERS[1]]}, "ascending"),
        ({"tiers": [TIERS[1], {**TIERS[2], "min_days_past_due": 1}]}, "more days past due"),
        ({"tiers": [{**TIERS[0], "actions": ["notice"]}, TIERS[1]]}, "tier 0"),
        ({"tiers": [TIERS[0]]}, "at least one tier above 0"),
        ({"strategy": "newest_invoice"}, "strategy"),
        ({"tiers": [{**TIERS[1], "actions": ["phone_call"]}]}, "actions"),
    ],
)
def test_invalid_job_properties_are_refused(change: dict[str, Any], message: str) -> None:
    props = {"minimum_account_due": "10.00", "tiers": TIERS, **change}
    with pytest.raises(InvalidProperties) as caught:
        JOB_TYPE.validate_properties(props)
    assert message in str(caught.value) or message in str(caught.value.details)


def test_default_properties_are_valid() -> None:
    props = JOB_TYPE.validate_properties({})
    assert props.model_dump(mode="json")["strategy"] == "oldest_open_invoice"
    run_props = JOB_TYPE.validate_run_properties({"as_of": "2026-06-01", "account_numbers": ["A1"]})
    assert run_props.model_dump(mode="json") == {"as_of": "2026-06-01", "account_numbers": ["A1"]}

