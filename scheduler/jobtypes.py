"""The ``JobType`` contract and the registry of installed job types.

Job types are found through the ``scheduler.job_types`` entry-point group (each entry names a
``JobType`` instance), plus any ``module:attribute`` listed in ``SCHEDULER_EXTRA_JOB_TYPES``.
The core never names a job type.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from scheduler.clock import Clock
from scheduler.errors import InvalidProperties, UnknownJobType
from scheduler.settings import Settings

ENTRY_POINT_GROUP = "scheduler.job_types"


class NoRunProperties(BaseModel):
    """A job type whose manual runs take no inputs."""


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """What a job type sees of the run it works on; its items are reached through ``scheduler.jobkit.RunItems``."""

    run_id: int
    job_id: int
    job_name: str
    trigger: str
    properties: BaseModel
    run_properties: BaseModel
    scheduled_for: datetime | None
    as_of: datetime
    created_at: datetime
    retry_of: int | None
    requires_review: bool = False
    """The job stops every run at PREVIEW for a person to submit."""
    settings: Settings
    billing_engine: Engine
    """The database of the type's own tables (the scheduler's, or one of their own)."""
    _core_engine: Engine
    """The scheduler's database: :mod:`scheduler.jobkit` reads and writes the run's items there, job types never."""
    clock: Clock
    extra: dict[str, Any] = field(default_factory=dict)


class JobType(ABC):
    """A kind of billing work the scheduler can run.

    ``plan`` splits a run into chunk specs (JSON-able dicts). ``evaluate`` stages a chunk's effects
    as ``planned`` run items and applies nothing. ``apply`` applies a chunk's planned items, each at
    most once, recording each item's outcome. ``summarize`` gives the run's summary counts.
    All three must be idempotent: a chunk may be delivered again after a crash.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    queue: ClassVar[str]
    description: ClassVar[str] = ""
    job_properties: ClassVar[type[BaseModel]]
    run_properties: ClassVar[type[BaseModel]] = NoRunProperties
    supports_preview: ClassVar[bool] = True
    migrations: ClassVar[Path | None] = None
    """The folder of the type's own Alembic revisions (tables only it uses), or None when it has none.

    ``scheduler migrate`` applies them to the billing database, recording them in ``<name>_alembic_version``.
    """

    @abstractmethod
    def plan(self, ctx: RunContext) -> list[dict[str, Any]]: ...

    @abstractmethod
    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int: ...

    @abstractmethod
    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None: ...

    @abstractmethod
    def summarize(self, ctx: RunContext) -> dict[str, Any]: ...

    def holds_for_review(self, properties: BaseModel) -> bool:
        """Whether a job with these properties stops every run at PREVIEW (besides ``requires_review``)."""
        return False

    def validate_properties(self, data: dict[str, Any], *, settings: Settings | None = None) -> BaseModel:
        """The job properties as the type's model; refused with :class:`InvalidProperties` when invalid.

        With ``settings`` (at job creation) the model may also check what the installation allows,
        such as allow-listed hosts: they reach its validators as ``info.context["settings"]``.
        """
        return _validate(self.job_properties, data, "job properties", settings)

    def validate_run_properties(self, data: dict[str, Any]) -> BaseModel:
        return _validate(self.run_properties, data, "run properties")

    def template(self) -> dict[str, Any]:
        """What ``GET /job-types`` publishes: the custom fields of the type as JSON schemas.

        Each field's ``default`` is what the API fills in when the field is left out (computed defaults such
        as a default ladder included), so the page's form and the API start from the same values.
        """
        return {
            "name": self.name,
            "label": self.label,
            "queue": self.queue,
            "description": self.description,
            "supports_preview": self.supports_preview,
            "job_properties": schema_with_defaults(self.job_properties),
            "run_properties": schema_with_defaults(self.run_properties),
        }


def schema_with_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema, every property carrying the value the model gives it when it is left out."""
    schema = model.model_json_schema()
    try:
        defaults = model.model_validate({}).model_dump(mode="json")
    except ValidationError:
        defaults = {}  # some fields are required: only the fields' own defaults apply
    for name, prop in (schema.get("properties") or {}).items():
        if name in defaults and "default" not in prop:
            prop["default"] = defaults[name]
    return schema


def _validate(model: type[BaseModel], data: dict[str, Any], what: str, settings: Settings | None = None) -> BaseModel:
    if not isinstance(data, dict):
        raise InvalidProperties(what, [{"loc": (), "msg": "must be a JSON object", "type": "dict_type"}])
    try:
        return model.model_validate(data, context={"settings": settings} if settings is not None else None)
    except ValidationError as exc:
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False)
        ]
        raise InvalidProperties(what, errors) from exc


class JobTypeRegistry:
    """The installed job types by name."""

    def __init__(self, job_types: Iterable[JobType]) -> None:
        self._by_name: dict[str, JobType] = {}
        for jt in job_types:
            self._by_name[jt.name] = jt

    def get(self, name: str) -> JobType:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownJobType(name, list(self._by_name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def all(self) -> list[JobType]:
        return [self._by_name[n] for n in sorted(self._by_name)]

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def queues(self) -> list[str]:
        return sorted({jt.queue for jt in self._by_name.values()})


def load_registry(settings: Settings) -> JobTypeRegistry:
    """Load job types from entry points and ``settings.extra_job_types``."""
    found: list[JobType] = [ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)]
    for ref in settings.extra_job_types:
        module_name, _, attr = ref.partition(":")
        found.append(getattr(importlib.import_module(module_name), attr))
    return JobTypeRegistry(found)
