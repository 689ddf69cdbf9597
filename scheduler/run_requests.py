"""The ``request_run`` message contract: how another service asks for a run over the broker.

A service sends ``request_run(job, run_properties=None, idempotency_key=None, preview=False)`` to the
``scheduler`` queue (positionally or by name; ``job`` is a job id or the name of a job that is not
archived). The answer is the run itself: ``GET /api/v1/runs?idempotency_key=…`` finds it. A repeated
idempotency key for the same job gives the run of the first message. A request that can never succeed
(no such job, invalid run properties, a malformed message) is refused: counted, logged and kept in
:mod:`scheduler.refused_requests`. A database outage is not a refusal: the message is retried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StringConstraints, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from scheduler.clock import Clock
from scheduler.dispatch import Dispatcher
from scheduler.errors import InvalidMessage, JobNotFound, SchedulerError
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import Job, JobStatus
from scheduler.refused_requests import Refusal, record_refusal
from scheduler.runs import RunCreate, create_manual_run, send_created

log = logging.getLogger(__name__)

ACTOR = "dramatiq:request_run"
"""Who the audit trail says created a requested run."""
FIELDS = ("job", "run_properties", "idempotency_key", "preview")
"""``request_run``'s arguments, in positional order."""


class RunRequest(BaseModel):
    """One ``request_run`` message's arguments, checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: StrictInt | Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    run_properties: dict[str, Any] | None = None
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    preview: StrictBool = False


def parse_request(args: Sequence[Any], kwargs: Mapping[str, Any]) -> RunRequest:
    """The request a message's ``args`` and ``kwargs`` make, or :class:`InvalidMessage` saying what is wrong."""
    if len(args) > len(FIELDS):
        raise InvalidMessage(f"at most {len(FIELDS)} arguments ({', '.join(FIELDS)}), got {len(args)}")
    named = dict(zip(FIELDS, args, strict=False))
    twice = sorted(named.keys() & kwargs.keys())
    if twice:
        raise InvalidMessage(f"{twice[0]} given both by position and by name")
    try:
        return RunRequest.model_validate({**named, **kwargs})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the message"
        if first["type"] == "extra_forbidden":
            reason = f"unknown argument {where!r} (known: {', '.join(FIELDS)})"
        elif first["loc"][:1] == ("job",) and first["type"] != "missing":
            where, reason = "job", "job: a job id (a number) or a job's name (1 to 200 characters) is needed"
        else:
            reason = f"{where}: {first['msg']}"
        raise InvalidMessage(reason, details={"field": where}) from exc


@dataclass(frozen=True, kw_only=True)
class RequestDesk:
    """What handling a request needs: the database, the job types, the broker, the clock, the retention."""

    factory: sessionmaker[Session]
    registry: JobTypeRegistry
    dispatcher: Dispatcher
    clock: Clock
    retention: timedelta

    def handle(self, args: Sequence[Any], kwargs: Mapping[str, Any], *, message_id: str | None = None) -> int | None:
        """Record and send the run a message asks for; returns its id, or ``None`` when refused.

        Database errors propagate (the caller retries the message); refusals do not.
        """
        try:
            request = parse_request(args, kwargs)
            with self.factory() as session:
                run, created = create_manual_run(
                    session=session, registry=self.registry, actor=ACTOR, clock=self.clock,
                    run_in=RunCreate(job_id=job_id_of(session, request.job), preview=request.preview,
                                     run_properties=request.run_properties or {}),
                    idempotency_key=request.idempotency_key, sending=True,
                )
                assert run.id is not None
                run_id = run.id
        except SchedulerError as exc:
            self.refuse(exc, args, kwargs, message_id)
            return None
        if created:
            send_created(factory=self.factory, dispatcher=self.dispatcher, registry=self.registry,
                         runs=[(run_id, run.job_type)])
        log.info("request_run: job %r → run %s (%s)", kwargs.get("job", args[0] if args else None), run_id,
                 "new" if created else "existing", extra={"run_id": run_id})
        return run_id

    def refuse(
        self, exc: SchedulerError, args: Sequence[Any], kwargs: Mapping[str, Any], message_id: str | None
    ) -> None:
        """Count, keep and log a refused request."""
        body: dict[str, Any] = {**dict(zip(FIELDS, args, strict=False)), **kwargs}
        if len(args) > len(FIELDS):
            body["extra_args"] = list(args[len(FIELDS):])
        job, key = body.get("job"), body.get("idempotency_key")
        refusal = Refusal(
            reason=exc.code, message=exc.message, job=None if job is None else str(job),
            idempotency_key=key if isinstance(key, str) else None, message_id=message_id, body=body,
        )
        with self.factory() as session:
            refused_id = record_refusal(session, refusal, at=self.clock.now(), retention=self.retention)
        log.warning("request_run refused (%s), kept as refused request %s: %s", exc.code, refused_id, exc.message,
                    extra={"reason": exc.code, "message_id": message_id})


def job_id_of(session: Session, job: int | str) -> int:
    """A job id from an id or the name of a job that is not archived."""
    if isinstance(job, int):
        return job
    if job.isdigit():
        return int(job)
    job_id = session.scalar(select(col(Job.id)).where(col(Job.name) == job, col(Job.status) != JobStatus.ARCHIVED))
    if job_id is None:
        raise JobNotFound(job)
    return int(job_id)
