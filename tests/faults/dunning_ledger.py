"""A dunning world whose outcome is known in advance, a driver that runs it, and the ledger check.

Each job owns one account category. Its runs go one after another, run ``k`` evaluating as of
``base + 15 k`` days, so which account escalates in which run — and which late fee it is charged —
follows from the invoices' due dates alone (:meth:`DunningWorld.expected`, a model independent of
the job type's SQL). The ledger then compares what exists with that: runs, status changes, chunks,
items, dunning actions, account tiers and statuses, and late-fee invoices.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from faultkit import rows
from sqlalchemy import Engine, insert

from scheduler.clock import SystemClock
from scheduler.db import make_session_factory
from scheduler.dispatch import Dispatcher, make_broker
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import load_registry
from scheduler.models import RunStatus
from scheduler.runs import RunCreate, create_manual_run, send_run
from scheduler.settings import Settings
from workers.billing import accounts, invoices

STEP = timedelta(days=15)
LADDER: list[dict[str, Any]] = [
    {"code": 0, "name": "No dunning", "min_days_past_due": 0, "actions": []},
    {"code": 1, "name": "Reminder", "min_days_past_due": 1, "actions": ["notice"]},
    {"code": 2, "name": "First fee", "min_days_past_due": 15, "actions": ["notice", "late_fee"], "late_fee": "5.00"},
    {"code": 3, "name": "Second fee", "min_days_past_due": 30, "actions": ["late_fee"], "late_fee": "10.00"},
    {"code": 4, "name": "Third fee", "min_days_past_due": 60, "actions": ["late_fee"], "late_fee": "15.00"},
    {"code": 5, "name": "Suspension", "min_days_past_due": 90, "actions": ["suspend"]},
]
FINAL = (RunStatus.COMPLETED, RunStatus.INCOMPLETE, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.DELETED)
HAPPY_PATH = [(None, "CREATED"), ("CREATED", "PROCESSING"), ("PROCESSING", "SUBMITTED"), ("SUBMITTED", "COMPLETED")]


def target_tier(days_past_due: int) -> int:
    if days_past_due <= 0:
        return 0
    return max(t["code"] for t in LADDER if t["code"] > 0 and t["min_days_past_due"] <= days_past_due)


@dataclass(frozen=True, kw_only=True)
class Escalation:
    step: int
    from_tier: int
    to_tier: int
    fee: Decimal | None


@dataclass(kw_only=True)
class Expected:
    """What the runs made so far must have done."""

    escalations: dict[str, list[Escalation]]
    """By account number."""
    per_run: dict[tuple[str, int], set[tuple[str, int, int]]]
    """(category, step) → {(account number, from tier, to tier)}."""


@dataclass(kw_only=True)
class DunningWorld:
    base: date
    categories: list[str]
    due: dict[str, date]
    """Each account's one invoice (100.00) due on this date."""
    category_of: dict[str, str]
    chunk_size: int

    @classmethod
    def create(cls, engine: Engine, *, jobs: int, accounts_per_job: int, chunk_size: int,
               base: date = date(2026, 1, 1)) -> DunningWorld:
        categories = [f"F{j}" for j in range(jobs)]
        due: dict[str, date] = {}
        category_of: dict[str, str] = {}
        for j, category in enumerate(categories):
            for i in range(accounts_per_job):
                number = f"{category}-{i:04d}"
                # between 10 days before being due and 119 days past due on the first run
                due[number] = base - timedelta(days=(i * 7 + j * 3) % 130 - 10)
                category_of[number] = category
        with engine.begin() as conn:
            ids = {
                r.account_number: r.id
                for r in conn.execute(
                    insert(accounts).returning(accounts.c.id, accounts.c.account_number),
                    [{"account_number": n, "name": f"Customer {n}", "category": category_of[n], "status": "ACTIVE",
                      "dunning_tier": 0} for n in due],
                )
            }
            conn.execute(insert(invoices), [
                {"account_id": ids[n], "number": f"INV-{n}", "issued_on": d - timedelta(days=30), "due_on": d,
                 "amount": Decimal("100.00"), "balance": Decimal("100.00"), "status": "OPEN", "disputed": False,
                 "kind": "INVOICE"}
                for n, d in due.items()
            ])
        return cls(base=base, categories=categories, due=due, category_of=category_of, chunk_size=chunk_size)

    def as_of(self, step: int) -> date:
        return self.base + step * STEP

    @property
    def chunks_per_run(self) -> int:
        per_category = Counter(self.category_of.values())
        sizes = {math.ceil(n / self.chunk_size) for n in per_category.values()}
        assert len(sizes) == 1
        return sizes.pop()

    def expected(self, steps: dict[str, int]) -> Expected:
        """The escalations of ``steps[category]`` runs of each category, from the due dates alone."""
        fee_of = {t["code"]: Decimal(t["late_fee"]) for t in LADDER if "late_fee" in t}
        escalations: dict[str, list[Escalation]] = {}
        per_run: dict[tuple[str, int], set[tuple[str, int, int]]] = {
            (c, k): set() for c in self.categories for k in range(steps.get(c, 0))
        }
        for number, due in self.due.items():
            category = self.category_of[number]
            tier = 0
            found: list[Escalation] = []
            for k in range(steps.get(category, 0)):
                target = target_tier((self.as_of(k) - due).days)
                if target > tier:
                    found.append(Escalation(step=k, from_tier=tier, to_tier=target, fee=fee_of.get(target)))
                    per_run[(category, k)].add((number, tier, target))
                    tier = target
            escalations[number] = found
        return Expected(escalations=escalations, per_run=per_run)


@dataclass(kw_only=True)
class RunDriver:
    """Runs each category's job one run after another; run ``k`` evaluates as of ``world.as_of(k)``."""

    engine: Engine
    world: DunningWorld
    redis_url: str
    jobs: dict[str, int] = field(default_factory=dict)
    runs: dict[str, list[int]] = field(default_factory=dict)
    creating: bool = True

    def __post_init__(self) -> None:
        self.factory = make_session_factory(self.engine)
        self.registry = load_registry(Settings())
        self.dispatcher = Dispatcher(make_broker(self.redis_url), self.redis_url)
        self.clock = SystemClock()
        with self.factory() as session:
            for category in self.world.categories:
                job = create_job(
                    session=session, registry=self.registry, actor="fault-suite", clock=self.clock,
                    job_in=JobCreate(name=f"Dunning {category}", job_type="dunning", properties={
                        "account_category": category, "minimum_account_due": "10.00", "tiers": LADDER,
                    }),
                )
                assert job.id is not None
                self.jobs[category] = job.id
                self.runs[category] = []

    def pump(self) -> None:
        """Start the next run of every category whose latest run has finished (while ``creating``)."""
        if not self.creating:
            return
        latest = {runs[-1]: c for c, runs in self.runs.items() if runs}
        finished = {r.id for r in rows(self.engine, "SELECT id, status FROM job_run WHERE id = ANY(:ids)",
                                       ids=list(latest)) if r.status in FINAL}
        for category, runs in self.runs.items():
            if runs and runs[-1] not in finished:
                continue
            step = len(runs)
            with self.factory() as session:
                run, _ = create_manual_run(
                    session=session, registry=self.registry, actor="fault-suite", clock=self.clock,
                    run_in=RunCreate(job_id=self.jobs[category], run_properties={
                        "as_of": self.world.as_of(step).isoformat()}),
                )
                assert run.id is not None
                runs.append(run.id)
            # Redis may be down: the run is recorded, and beat's outbox sends it later
            send_run(factory=self.factory, dispatcher=self.dispatcher, registry=self.registry, run_id=run.id,
                     clock=self.clock)

    def all_runs(self) -> list[int]:
        return sorted(r for runs in self.runs.values() for r in runs)

    def unfinished(self) -> list[int]:
        ids = self.all_runs()
        return [r.id for r in rows(self.engine, "SELECT id, status FROM job_run WHERE id = ANY(:ids)", ids=ids)
                if r.status not in FINAL]

    def min_steps(self) -> int:
        return min(len(runs) for runs in self.runs.values())

    def close(self) -> None:
        self.dispatcher.broker.close()


def verify_ledger(engine: Engine, driver: RunDriver) -> dict[str, int]:
    """Assert the database holds exactly the runs and effects the world and the driver's runs imply.

    Returns counts for the figures: runs, escalations, late fees.
    """
    world = driver.world
    steps = {c: len(runs) for c, runs in driver.runs.items()}
    expected = world.expected(steps)
    step_of = {run_id: (c, k) for c, runs in driver.runs.items() for k, run_id in enumerate(runs)}
    run_ids = sorted(step_of)

    # Every run finished, completed, through exactly one pass of the happy path
    runs = {r.id: r for r in rows(engine, "SELECT id, status, error, chunks_total, chunks_done FROM job_run "
                                          "WHERE id = ANY(:ids)", ids=run_ids)}
    assert set(runs) == set(run_ids), "a run is missing"
    not_completed = {i: (r.status, r.error) for i, r in runs.items() if r.status != RunStatus.COMPLETED}
    assert not not_completed, f"runs not COMPLETED: {not_completed}"
    history: dict[int, list[tuple[str | None, str]]] = {}
    for e in rows(engine, "SELECT run_id, from_status, to_status FROM run_event WHERE run_id = ANY(:ids) "
                          "AND (from_status IS NULL OR from_status <> to_status) ORDER BY id", ids=run_ids):
        history.setdefault(e.run_id, []).append((e.from_status, e.to_status))
    odd = {i: h for i, h in history.items() if h != HAPPY_PATH}
    assert not odd, f"runs whose status changed other than once along the happy path: {odd}"

    # Every chunk of every run evaluated and applied, and counted once
    chunks = world.chunks_per_run
    for r in runs.values():
        assert (r.chunks_total, r.chunks_done) == (chunks, chunks), f"run {r.id}: {r.chunks_done}/{r.chunks_total}"
    marks = rows(engine, "SELECT run_id, COUNT(*) AS n, COUNT(evaluated_at) AS evaluated, COUNT(applied_at) AS applied,"
                         " COUNT(error) AS errors FROM run_chunk WHERE run_id = ANY(:ids) GROUP BY run_id", ids=run_ids)
    marked = {m.run_id: (m.n, m.evaluated, m.applied, m.errors) for m in marks}
    assert marked == dict.fromkeys(run_ids, (chunks, chunks, chunks, 0)), "chunks not evaluated and applied once"

    # Items: exactly the expected escalations of each run, each applied, in the same transaction as its effect
    items = rows(engine, "SELECT i.run_id, i.item_key, i.outcome, i.applied_at, i.detail, da.applied_at AS acted_at,"
                         " da.from_tier, da.to_tier FROM run_item i JOIN accounts a ON a.account_number = i.item_key"
                         " LEFT JOIN dunning_actions da ON da.run_id = i.run_id AND da.account_id = a.id"
                         " WHERE i.run_id = ANY(:ids)", ids=run_ids)
    found: dict[tuple[str, int], set[tuple[str, int, int]]] = {key: set() for key in expected.per_run}
    for item in items:
        assert item.outcome == "ok" and item.applied_at is not None, f"item not applied once: {item}"
        assert item.acted_at == item.applied_at, f"item and its effect applied apart: {item}"
        assert (item.from_tier, item.to_tier) == (item.detail["from_tier"], item.detail["to_tier"])
        found[step_of[item.run_id]].add((item.item_key, item.from_tier, item.to_tier))
    wrong = {key: (found[key], want) for key, want in expected.per_run.items() if found[key] != want}
    assert not wrong, f"runs whose escalations differ from the model: {wrong}"
    actions = rows(engine, "SELECT run_id, COUNT(*) AS n FROM dunning_actions GROUP BY run_id")
    assert {a.run_id: a.n for a in actions} == {
        i: len(expected.per_run[step_of[i]]) for i in run_ids if expected.per_run[step_of[i]]
    }, "dunning actions outside the expected ones"

    # Effects on the accounts: tier, status, and one late fee per fee-bearing escalation
    state = {a.account_number: a for a in rows(engine, "SELECT id, account_number, dunning_tier, status FROM accounts")}
    fees: dict[str, list[tuple[str, Decimal]]] = {}
    for fee in rows(engine, "SELECT a.account_number, i.number, i.amount FROM invoices i "
                            "JOIN accounts a ON a.id = i.account_id WHERE i.kind = 'LATE_FEE'"):
        fees.setdefault(fee.account_number, []).append((fee.number, fee.amount))
    bad: list[str] = []
    fee_count = 0
    for number, escalations in expected.escalations.items():
        tier = escalations[-1].to_tier if escalations else 0
        status = "SUSPENDED" if tier == 5 else "ACTIVE"
        got = state[number]
        if (got.dunning_tier, got.status) != (tier, status):
            bad.append(f"{number}: tier/status {got.dunning_tier}/{got.status}, expected {tier}/{status}")
        account_id = got.id
        want_fees = sorted(
            (f"LF-{driver.runs[world.category_of[number]][e.step]}-{account_id}", e.fee)
            for e in escalations if e.fee is not None
        )
        fee_count += len(want_fees)
        if sorted(fees.get(number, [])) != want_fees:
            bad.append(f"{number}: late fees {sorted(fees.get(number, []))}, expected {want_fees}")
    assert not bad, "effects differ from the model:\n" + "\n".join(bad[:20])
    return {
        "runs": len(run_ids),
        "escalations": sum(len(e) for e in expected.escalations.values()),
        "late_fees": fee_count,
        "chunks": len(run_ids) * chunks,
    }
