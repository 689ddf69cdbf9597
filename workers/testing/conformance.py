"""The conformance kit: what every job type promises, as pytest tests any job type runs on itself.

A job type's test module describes its type with a :class:`JobTypeCase` and subclasses
:class:`JobTypeConformance`::

    class TestConformance(JobTypeConformance):
        case = MyTypeCase()

The module needs an ``engine`` fixture: an empty scheduler database, migrated. The kit runs whole runs
in-process through the worker's executor (the same steps a worker pool executes, in the order it would
receive them) and checks:

- bad job and run properties are refused with errors naming the field;
- a preview changes nothing, and submitting it applies exactly the items it staged when nothing changed;
- every step delivered twice (a worker that crashed after the job type's work committed) applies once;
- a retry of a run whose apply failed in part redoes the failed items only;
- a cancelled run and a deleted preview change nothing;
- progress only moves forward, and never counts a chunk twice;
- with the type's tables in a billing database of their own, a run changes them as it does beside the
  scheduler's tables.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, delete, insert, inspect, select
from sqlmodel import SQLModel, col

from scheduler.clock import FrozenClock
from scheduler.db import make_engine
from scheduler.dispatch import Dispatcher, RunStep
from scheduler.errors import InvalidProperties
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import JobType, JobTypeRegistry
from scheduler.migrate import job_type_tree, upgrade
from scheduler.models import ItemOutcome, Job, JobRun, RunItem, RunStatus
from scheduler.runs import RunCreate as NewManualRun
from scheduler.runs import act_on_run, create_manual_run, retry_run, send_apply, send_run
from scheduler.settings import Settings
from workers.runtime.env import WorkerEnv, build_env
from workers.runtime.executor import execute_step

S = RunStatus
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CORE_TABLES = {*SQLModel.metadata.tables, "alembic_version"}


class JobTypeCase(ABC):
    """What the kit needs to know of a job type: its data, valid and invalid properties, its effects."""

    job_type: JobType

    @abstractmethod
    def prepare(self, engine: Engine) -> None:
        """Create the tables the type reads besides its own (which the kit migrates: ``JobType.migrations``)."""

    @abstractmethod
    def seed(self, engine: Engine, settings: Settings) -> None:
        """Data on which a run of :meth:`job_properties` has work in at least two chunks."""

    @abstractmethod
    def job_properties(self, settings: Settings) -> dict[str, Any]:
        """Valid job properties for the seeded data."""

    def run_properties(self) -> dict[str, Any]:
        """Properties of the kit's manual runs."""
        return {}

    @abstractmethod
    def bad_properties(self) -> list[tuple[dict[str, Any], str]]:
        """Invalid job properties, each with the field its error must name (``""`` for the whole object)."""

    def bad_run_properties(self) -> list[tuple[dict[str, Any], str]]:
        """Invalid properties of a manual run, each with the field its error must name (none: the type takes none)."""
        return []

    @abstractmethod
    def effects(self, engine: Engine) -> Any:
        """What the type's runs have changed, comparable with ``==`` across databases (no ids, no times)."""

    def settings(self, settings: Settings) -> Settings:
        """The settings of the kit's runs (by default: chunks of 3)."""
        return settings.model_copy(update={"chunk_size": 3})


class StepQueue(Dispatcher):
    """A dispatcher that keeps the steps it is asked to send, for the kit to execute in order."""

    def __init__(self) -> None:
        self.url = "memory://"
        self.steps: deque[RunStep] = deque()

    def send_steps(self, steps: Sequence[tuple[str, RunStep]]) -> None:
        self.steps.extend(step for _, step in steps)

    def wake_beat(self) -> None:
        return None


class Harness:
    """A scheduler database with one job type, and the operations the kit's tests perform on runs.

    The type's tables live in the scheduler's database, or in ``billing`` (a database of their own).
    """

    def __init__(self, case: JobTypeCase, engine: Engine, tmp_path: Path, *, billing: Engine | None = None) -> None:
        self.case = case
        self.engine = engine
        self.billing = billing or engine
        self.clock = FrozenClock(START)
        self.queue = StepQueue()
        case.prepare(self.billing)
        own_tables = job_type_tree(case.job_type)
        if own_tables is not None:
            upgrade(self.billing, own_tables)
        url = engine.url.render_as_string(hide_password=False)
        self.settings = case.settings(Settings(
            data_dir=tmp_path / "data", database_url=url, files_root=tmp_path / "files",
            billing_database_url=self.billing.url.render_as_string(hide_password=False) if billing else None,
        ))
        self.env: WorkerEnv = build_env(
            self.settings, dispatcher=self.queue, registry=JobTypeRegistry([case.job_type]), clock=self.clock,
            engine=engine, billing_engine=self.billing, worker_id="conformance", heartbeat=False,
        )
        case.seed(self.billing, self.settings)

    def make_job(self, name: str = "Conformance") -> Job:
        with self.env.factory() as session:
            job = create_job(
                session=session, registry=self.env.registry, actor="kit", clock=self.clock,
                job_in=JobCreate(name=name, job_type=self.case.job_type.name,
                                 properties=self.case.job_properties(self.settings)),
            )
            session.expunge(job)
            return job

    def start(self, job: Job, *, preview: bool = False) -> int:
        assert job.id is not None
        with self.env.factory() as session:
            run, _ = create_manual_run(
                session=session, registry=self.env.registry, actor="kit", clock=self.clock,
                run_in=NewManualRun(job_id=job.id, preview=preview, run_properties=self.case.run_properties()),
            )
            assert run.id is not None
            run_id = run.id
        assert send_run(factory=self.env.factory, dispatcher=self.queue, registry=self.env.registry,
                        run_id=run_id, clock=self.clock)
        return run_id

    def steps(self) -> Iterator[RunStep]:
        """Execute the queued steps (and those they send) in order, yielding each after it ran."""
        count = 0
        while self.queue.steps:
            step = self.queue.steps.popleft()
            execute_step(self.env, step.run_id, step.phase, step.chunk_no)
            count += 1
            assert count < 10_000, "steps keep coming"
            yield step

    def drain(self) -> None:
        for _ in self.steps():
            pass

    def act(self, run_id: int, action: str) -> None:
        with self.env.factory() as session:
            act_on_run(session=session, run_id=run_id, action=action, actor="kit", clock=self.clock)
        if action == "submit":
            send_apply(factory=self.env.factory, dispatcher=self.queue, registry=self.env.registry, run_id=run_id)

    def retry(self, run_id: int) -> int:
        self.clock.advance(timedelta(hours=1))
        with self.env.factory() as session:
            retry = retry_run(session=session, run_id=run_id, actor="kit", clock=self.clock)
            assert retry.id is not None
            retry_id = retry.id
        send_run(factory=self.env.factory, dispatcher=self.queue, registry=self.env.registry, run_id=retry_id,
                 clock=self.clock)
        return retry_id

    def run(self, run_id: int) -> JobRun:
        with self.env.factory() as session:
            run = session.get(JobRun, run_id)
            assert run is not None
            session.expunge(run)
            return run

    def items(self, run_id: int) -> dict[str, tuple[str, dict[str, Any]]]:
        """The run's items: ``{key: (outcome, detail)}``."""
        with self.env.factory() as session:
            rows = session.execute(
                select(col(RunItem.item_key), col(RunItem.outcome), col(RunItem.detail))
                .where(col(RunItem.run_id) == run_id)
            ).all()
        return {key: (outcome, detail) for key, outcome, detail in rows}

    def effects(self) -> Any:
        return self.case.effects(self.billing)

    def preview_and_submit(self) -> int:
        run_id = self.start(self.make_job(), preview=True)
        self.drain()
        self.act(run_id, "submit")
        self.drain()
        return run_id


def delivered_twice(method: Callable[..., Any]) -> Callable[..., Any]:
    """A job type's ``evaluate`` that runs twice, as when a worker died before the executor marked the chunk."""

    def twice(ctx: Any, chunk_no: int, spec: dict[str, Any]) -> Any:
        method(ctx, chunk_no, spec)
        return method(ctx, chunk_no, spec)

    return twice


def applied_twice(method: Callable[..., Any], engine: Engine) -> Callable[..., Any]:
    """A job type's ``apply`` that runs again after its item outcomes were lost.

    That is what a second delivery sees when the first one's work on the type's tables committed but
    its outcomes did not (another database, or read before the first committed): the type must find
    in its own tables what it already did, and not do it twice.
    """

    def twice(ctx: Any, chunk_no: int, spec: dict[str, Any]) -> None:
        where = (col(RunItem.run_id) == ctx.run_id, col(RunItem.chunk_no) == chunk_no)
        with engine.connect() as conn:
            before = [dict(r) for r in conn.execute(select(RunItem.__table__).where(*where)).mappings()]  # type: ignore[attr-defined]
        method(ctx, chunk_no, spec)
        with engine.begin() as conn:
            conn.execute(delete(RunItem.__table__).where(*where))  # type: ignore[attr-defined]
            if before:
                conn.execute(insert(RunItem.__table__), before)  # type: ignore[attr-defined]
        method(ctx, chunk_no, spec)

    return twice


class JobTypeConformance:
    """The kit's tests; subclass with ``case`` set (see the module)."""

    case: ClassVar[JobTypeCase]

    @pytest.fixture
    def harness(self, engine: Engine, tmp_path: Path) -> Harness:
        return Harness(self.case, engine, tmp_path)

    def test_bad_properties_are_refused_naming_the_field(self, harness: Harness) -> None:
        job_type = self.case.job_type
        assert self.case.bad_properties(), "list at least one invalid set of properties"
        for properties, field in self.case.bad_properties():
            with pytest.raises(InvalidProperties) as refused:
                job_type.validate_properties(properties, settings=harness.settings)
            _names_field(refused.value, properties, field)
        for properties, field in self.case.bad_run_properties():
            with pytest.raises(InvalidProperties) as refused:
                job_type.validate_run_properties(properties)
            _names_field(refused.value, properties, field)
        with pytest.raises(InvalidProperties):
            job_type.validate_properties("not an object", settings=harness.settings)  # type: ignore[arg-type]

    def test_preview_stages_what_submit_applies_when_nothing_changed(self, harness: Harness) -> None:
        # Given the seeded data, when a preview runs
        before = harness.effects()
        run_id = harness.start(harness.make_job(), preview=True)
        harness.drain()
        # Then it waits for review with its items planned, and nothing has changed
        assert harness.run(run_id).status == S.PREVIEW
        staged = harness.items(run_id)
        assert staged, "the seeded data gives a run work to do"
        assert {outcome for outcome, _ in staged.values()} <= {ItemOutcome.PLANNED, ItemOutcome.SKIPPED}
        assert harness.effects() == before, "a preview changed the type's tables"
        # When it is submitted
        harness.act(run_id, "submit")
        harness.drain()
        # Then exactly the staged items are applied, none skipped or failed
        assert harness.run(run_id).status == S.COMPLETED
        applied = harness.items(run_id)
        assert set(applied) == set(staged)
        assert {key for key, (outcome, _) in applied.items() if outcome != ItemOutcome.OK} == {
            key for key, (outcome, _) in staged.items() if outcome != ItemOutcome.PLANNED}
        assert harness.effects() != before, "applying the preview changed nothing"

    def test_every_step_delivered_twice_applies_once(
        self, harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Given the same data in a second database, where a run's steps are each delivered once
        twin_engine = make_engine(f"sqlite:///{tmp_path / 'twin.db'}")
        upgrade(twin_engine)
        twin = Harness(self.case, twin_engine, tmp_path / "twin")
        once = twin.start(twin.make_job())
        twin.drain()
        # When every evaluate and apply runs twice here (a worker died after the type's work committed,
        # before the executor marked the chunk), and every message arrives twice
        job_type = self.case.job_type
        monkeypatch.setattr(job_type, "evaluate", delivered_twice(job_type.evaluate))
        monkeypatch.setattr(job_type, "apply", applied_twice(job_type.apply, harness.engine))
        twice = harness.start(harness.make_job())
        for step in harness.steps():
            execute_step(harness.env, step.run_id, step.phase, step.chunk_no)
        monkeypatch.undo()
        # Then the run ends as the single delivery did, with the same items and the same effects
        assert harness.run(twice).status == twin.run(once).status == S.COMPLETED
        assert _outcomes(harness.items(twice)) == _outcomes(twin.items(once))
        assert harness.effects() == twin.effects()
        twin_engine.dispose()

    def test_tables_in_a_database_of_their_own_change_alike(self, harness: Harness, tmp_path: Path) -> None:
        # Given the same data in the scheduler's database and, apart, in a billing database of its own
        apart_dir = tmp_path / "apart"
        apart_dir.mkdir()
        scheduler_db = make_engine(f"sqlite:///{apart_dir / 'scheduler.db'}")
        billing_db = make_engine(f"sqlite:///{apart_dir / 'billing.db'}")
        upgrade(scheduler_db)
        apart = Harness(self.case, scheduler_db, apart_dir, billing=billing_db)
        # When a preview runs and is submitted in both
        together, alone = harness.preview_and_submit(), apart.preview_and_submit()
        # Then both end alike, with the same items and the same effects, none in the other database
        assert harness.run(together).status == apart.run(alone).status == S.COMPLETED
        assert _outcomes(harness.items(together)) == _outcomes(apart.items(alone))
        assert harness.effects() == apart.effects()
        with scheduler_db.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= CORE_TABLES, "the type's tables are in the billing database"
        scheduler_db.dispose()
        billing_db.dispose()

    def test_retry_redoes_only_the_failed_items(self, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        # Given a run whose first chunk fails to apply
        job_type = self.case.job_type
        apply = job_type.apply

        def failing(ctx: Any, chunk_no: int, spec: dict[str, Any]) -> None:
            if chunk_no == 0:
                raise RuntimeError("the target is down")
            apply(ctx, chunk_no, spec)

        monkeypatch.setattr(job_type, "apply", failing)
        run_id = harness.start(harness.make_job())
        harness.drain()
        monkeypatch.undo()
        first = harness.items(run_id)
        failed = {key for key, (outcome, _) in first.items() if outcome == ItemOutcome.ERROR}
        assert harness.run(run_id).status == S.INCOMPLETE
        assert failed, "chunk 0 has items"
        assert len(failed) < len(first), "the seeded data gives the run work in more than one chunk"
        # When it is retried with the failure gone
        retry_id = harness.retry(run_id)
        harness.drain()
        # Then the retry redoes exactly the failed items, and applies them
        assert harness.run(retry_id).status == S.COMPLETED
        retried = harness.items(retry_id)
        assert set(retried) == failed
        assert {outcome for outcome, _ in retried.values()} == {ItemOutcome.OK}

    def test_cancelled_run_and_deleted_preview_change_nothing(self, harness: Harness) -> None:
        before = harness.effects()
        job = harness.make_job()
        # A run cancelled before a worker took it
        cancelled = harness.start(job)
        harness.act(cancelled, "cancel")
        harness.drain()
        assert harness.run(cancelled).status == S.CANCELLED
        assert harness.items(cancelled) == {}
        # A preview deleted by its reviewer
        deleted = harness.start(job, preview=True)
        harness.drain()
        harness.act(deleted, "delete")
        harness.drain()
        assert harness.run(deleted).status == S.DELETED
        assert harness.effects() == before

    def test_progress_only_moves_forward(self, harness: Harness) -> None:
        run_id = harness.start(harness.make_job(), preview=True)
        seen = [_progress(harness.run(run_id))]
        for step in harness.steps():
            seen.append(_progress(harness.run(run_id)))
            execute_step(harness.env, step.run_id, step.phase, step.chunk_no)  # delivered again: counted once
            seen.append(_progress(harness.run(run_id)))
        harness.act(run_id, "submit")
        for step in harness.steps():
            seen.append(_progress(harness.run(run_id)))
            execute_step(harness.env, step.run_id, step.phase, step.chunk_no)
            seen.append(_progress(harness.run(run_id)))
        assert seen == sorted(seen), f"progress went back: {seen}"
        run = harness.run(run_id)
        assert run.status == S.COMPLETED and run.chunks_done == run.chunks_total >= 2


_STAGES = {S.CREATED: 0, S.PROCESSING: 1, S.PREVIEW: 2, S.SUBMITTED: 3, S.COMPLETED: 4, S.INCOMPLETE: 4}


def _progress(run: JobRun) -> tuple[int, int]:
    """Where a run is: its stage, then its chunks done in that stage (never above its chunks)."""
    assert run.chunks_done <= run.chunks_total, f"{run.chunks_done} of {run.chunks_total} chunks done"
    return _STAGES[RunStatus(run.status)], run.chunks_done if run.status in (S.PROCESSING, S.SUBMITTED) else 0


def _names_field(refused: InvalidProperties, properties: dict[str, Any], field: str) -> None:
    named = [".".join(str(part) for part in error["loc"]) for error in refused.details["errors"]]
    assert named, f"{properties} refused without naming a field"
    if field:
        assert any(name == field or name.startswith(f"{field}.") for name in named), (
            f"{properties} refused, but not naming {field!r}: {named}")


def _outcomes(items: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, str]:
    return {key: outcome for key, (outcome, _) in items.items()}
