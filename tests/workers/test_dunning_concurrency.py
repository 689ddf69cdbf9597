"""Two runs of one dunning job applying the same accounts at the same moment (overlap ALLOW, a manual
run beside a scheduled one): each escalation and late fee happens once, not once per run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text
from workers_testkit import RecordingDispatcher

from scheduler.models import Job
from workers.dunning import apply as dunning_apply
from workers.runtime.env import WorkerEnv
from workers.runtime.executor import execute_step


def test_concurrent_applies_of_two_runs_charge_each_late_fee_once(
    env: WorkerEnv, known_ledger: dict[str, int], make_job: Callable[..., Job], start_run: Callable[..., int],
    dispatcher: RecordingDispatcher, billing_engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two runs of one job, both evaluated as of the same date: both staged the same escalations
    job = make_job()
    runs = [start_run(job), start_run(job)]
    while dispatcher.steps and dispatcher.steps[0][1].phase != "apply":
        _, step = dispatcher.steps.popleft()
        execute_step(env, step.run_id, step.phase, step.chunk_no)
    assert {s.run_id for _, s in dispatcher.steps if s.phase == "apply"} == set(runs)

    # When both apply their first chunk at once, each holding its transaction open once it has decided and
    # written, until the other has too
    both_decided = threading.Barrier(2, timeout=3)
    apply_effects = dunning_apply._apply_effects

    def write_then_meet(*args: Any) -> None:
        apply_effects(*args)
        try:
            both_decided.wait()
        except threading.BrokenBarrierError:
            pass  # the other one could not decide yet (it waits for this one's accounts): fine

    monkeypatch.setattr(dunning_apply, "_apply_effects", write_then_meet)
    errors: list[BaseException] = []

    def apply(run_id: int) -> None:
        try:
            execute_step(env, run_id, "apply", 0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=apply, args=(run_id,)) for run_id in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors

    # Then A40 (40 days late) reached tier 2 once, with one late fee, whichever run got there first
    with billing_engine.connect() as conn:
        fees = conn.execute(text("SELECT number FROM invoices WHERE kind = 'LATE_FEE' AND account_id = :a"),
                            {"a": known_ledger["A40"]}).scalars().all()
        actions = conn.execute(text("SELECT COUNT(*) FROM dunning_actions WHERE account_id = :a"),
                               {"a": known_ledger["A40"]}).scalar_one()
    assert len(fees) == 1, fees
    assert actions == 1
