"""One exception tree rooted at :class:`SchedulerError`.

Each error builds its own message and carries a stable ``code`` and ``details`` so the API can
answer ``{code, message, details}`` and the CLI can print one clear line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scheduler.redact import redact


class SchedulerError(Exception):
    """Root of every error the scheduler raises on purpose."""

    code = "scheduler_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class InvalidInput(SchedulerError, ValueError):
    """Input that can never be accepted as given (HTTP 422)."""

    code = "invalid_input"


class InvalidCron(InvalidInput):
    """A cron expression that cannot be parsed or never fires."""

    code = "invalid_cron"

    def __init__(self, expression: str, reason: str, *, why: str = "") -> None:
        super().__init__(
            f"invalid cron expression {expression!r}: {reason}" + (f": {why}" if why else ""),
            details={"cron": expression, "reason": reason},
        )


class UnknownTimezone(InvalidInput):
    """A time zone name that is not in the IANA database."""

    code = "unknown_timezone"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/London'",
            details={"timezone": name},
        )


class UnknownJobType(InvalidInput):
    """A job type that is not installed."""

    code = "unknown_job_type"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown job type {name!r}; installed types: {', '.join(sorted(known)) or 'none'}",
            details={"job_type": name, "known": sorted(known)},
        )


class InvalidProperties(InvalidInput):
    """Job or run properties that fail the job type's schema."""

    code = "invalid_properties"

    def __init__(self, what: str, errors: list[dict[str, Any]]) -> None:
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or what
        super().__init__(
            f"{what} are invalid: {where}: {first.get('msg', 'invalid value')}",
            details={"errors": errors},
        )


class InvalidCursor(InvalidInput):
    """A page cursor the API did not issue (HTTP 400): pass back the previous page's ``next_cursor``."""

    code = "invalid_cursor"

    def __init__(self, cursor: str) -> None:
        super().__init__(
            "invalid cursor: pass back the next_cursor of the previous page",
            details={"field": "cursor", "cursor": cursor[:100]},
        )


class InvalidValue(InvalidInput):
    """A field whose value cannot be stored as given (too large, NUL characters, out of range)."""

    code = "invalid_value"

    def __init__(self, field: str, reason: str, **details: Any) -> None:
        super().__init__(f"{field} {reason}", details={"field": field, **details})


class ExportTooLarge(InvalidInput):
    """A CSV export over the row limit; narrow the filters."""

    code = "export_too_large"

    def __init__(self, rows: int, limit: int) -> None:
        super().__init__(
            f"the export would hold {rows} runs; the limit is {limit}: narrow the filters "
            "(status, job_id, created_from, created_to)",
            details={"rows": rows, "limit": limit},
        )


class InvalidMessage(InvalidInput):
    """A ``request_run`` message that does not follow the message contract (arguments, their types)."""

    code = "invalid_message"

    def __init__(self, reason: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"request_run message refused: {reason}", details=details)


class NotFound(SchedulerError, LookupError):
    """Something asked for by id that does not exist (HTTP 404)."""

    code = "not_found"


class JobNotFound(NotFound):
    code = "job_not_found"

    def __init__(self, job_id: object) -> None:
        super().__init__(f"job {job_id} does not exist", details={"job_id": job_id})


class RunNotFound(NotFound):
    code = "run_not_found"

    def __init__(self, run_id: object) -> None:
        super().__init__(f"run {run_id} does not exist", details={"run_id": run_id})


class Conflict(SchedulerError):
    """A request that contradicts the current state (HTTP 409)."""

    code = "conflict"


class JobNameTaken(Conflict):
    """A live job already has this name, compared after Unicode NFC and case folding."""

    code = "job_name_taken"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"a job named {name!r} already exists (names are compared ignoring case and Unicode form); "
            "archive it or choose another name",
            details={"field": "name", "name": name},
        )


class InvalidTransition(Conflict):
    """A run or job action not allowed at its current status."""

    code = "invalid_transition"

    def __init__(self, what: str, current: str, action: str, allowed: Sequence[str]) -> None:
        super().__init__(
            f"cannot {action} {what} in status {current}; allowed: {', '.join(allowed) or 'none'}",
            details={"status": current, "action": action, "allowed_actions": list(allowed)},
        )


class RetryUnavailable(Conflict):
    """A retry refused because it would redo nothing (every failed item was refused for its data)."""

    code = "retry_unavailable"

    def __init__(self, run_id: int, reason: str) -> None:
        super().__init__(f"cannot retry run {run_id}: {reason}", details={"run_id": run_id, "reason": reason})


class JobNotRunnable(Conflict):
    """A manual run refused because the job is paused, archived or manual runs are off."""

    code = "job_not_runnable"

    def __init__(self, job_id: int, reason: str) -> None:
        super().__init__(f"job {job_id} cannot run manually: {reason}", details={"job_id": job_id})


class IdempotencyMismatch(Conflict):
    """An ``Idempotency-Key`` reused with a different request: the first run stands, nothing new is created."""

    code = "idempotency_mismatch"

    def __init__(self, key: str, run_id: int, differs: list[str]) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for run {run_id} with a different request "
            f"({', '.join(differs)} differ); use a new key for a new run",
            details={"idempotency_key": key, "run_id": run_id, "differs": differs},
        )


class Unauthorized(SchedulerError, PermissionError):
    code = "unauthorized"


class Forbidden(SchedulerError, PermissionError):
    code = "forbidden"


class ServiceUnavailable(SchedulerError, ConnectionError):
    """A backing service (database, Redis, SMTP) cannot be reached; names the setting."""

    code = "service_unavailable"


class BrokerUnavailable(ServiceUnavailable):
    code = "broker_unavailable"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"Redis is unreachable at SCHEDULER_REDIS_URL={redact(url)}: {redact(reason)}",
            details={"setting": "SCHEDULER_REDIS_URL"},
        )


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"the database is unreachable at SCHEDULER_DATABASE_URL={redact(url)}: {redact(reason)}",
            details={"setting": "SCHEDULER_DATABASE_URL"},
        )


class MissingSetting(SchedulerError):
    """A process outside ``scheduler up`` started without a service it needs: no embedded fallback."""

    code = "missing_setting"

    def __init__(
        self, setting: str, process: str, hint: str = "the embedded SQLite and Redis are for `scheduler up` alone"
    ) -> None:
        super().__init__(f"{setting} is not set: {process} needs it ({hint})", details={"setting": setting})


class StaleLeader(SchedulerError):
    """A beat whose lease epoch is no longer current tried to write."""

    code = "stale_leader"


def first_line(exc: BaseException) -> str:
    """The first line of what went wrong (a driver error's own message, not SQLAlchemy's wrapping)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0].strip() if text else "no detail given"
