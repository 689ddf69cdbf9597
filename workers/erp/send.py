"""Delivering one batch: its body (JSON or CSV), an HTTP POST with bounded retries, or an atomic file.

HTTP: nothing is sent unless the target passes the installation's allow-lists (host, token name;
:mod:`workers.erp.policy`). Every try of a batch carries the same ``Idempotency-Key``, so a target
that received a batch whose answer was lost (timeout, dropped connection, 5xx) recognises the next
try. Timeouts, lost connections, 408/425/429 and 5xx are retried with exponential backoff; any other
answer is final (a 4xx is recorded on the batch's items with the first 500 characters of the answer,
the token blanked out; never the request's headers). Redirects are not followed, not even to the same
host: the configured URL must be the final one. Uses ``urllib`` from the standard library.

Files: written under a temporary name in the target directory, flushed and fsynced, then renamed
with ``os.replace`` (atomic on one file system), and the directory is fsynced.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from scheduler.jobkit import explain
from workers.erp.policy import TargetPolicy
from workers.erp.properties import ErpFormat, FileTarget, HttpTarget

log = logging.getLogger(__name__)

RESPONSE_LIMIT = 500
"""Characters of a target's answer kept on the items."""
REDACTED = "[redacted]"
MAX_BACKOFF_SECONDS = 60.0
TRANSIENT_STATUSES = frozenset({408, 425, 429})
USER_AGENT = "billing-scheduler-erp/1"


@dataclass(frozen=True, kw_only=True)
class Batch:
    """One batch of records of one run, as sent to the target."""

    run_id: int
    batch_no: int
    dataset: str
    fields: tuple[str, ...]
    records: list[str]
    """Each record as the text of a JSON object of strings (as staged: sent on without decoding it)."""
    format: ErpFormat
    idempotency_key: str

    @property
    def content_type(self) -> str:
        return "application/json" if self.format is ErpFormat.JSON else "text/csv; charset=utf-8"

    @property
    def file_name(self) -> str:
        return f"{self.dataset}-{self.run_id}-{self.batch_no}.{self.format}"

    def body(self) -> bytes:
        if self.format is ErpFormat.JSON:
            head = json.dumps({"run_id": self.run_id, "batch_no": self.batch_no, "dataset": self.dataset},
                              separators=(",", ":"))
            return f'{head[:-1]},"records":[{",".join(self.records)}]}}'.encode()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(self.fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(json.loads(record) for record in self.records)
        return out.getvalue().encode()


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What became of a batch. ``uncertain``: the target may have taken it although no answer said so."""

    delivered: bool
    attempts: int = 0
    error: str | None = None
    http_status: int | None = None
    response: str | None = None
    uncertain: bool = False
    location: str | None = None

    def detail(self) -> dict[str, Any]:
        """The facts worth keeping on each of the batch's items."""
        kept = {"attempts": self.attempts, "http_status": self.http_status, "response": self.response,
                "file": self.location, "error": self.error, "uncertain": self.uncertain or None}
        return {key: value for key, value in kept.items() if value is not None}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected POST would be re-sent as a GET: refuse it, the configured URL must be the final one."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HttpSender:
    """POSTs batches to an HTTP target; ``sleep`` waits between tries (injected in tests)."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self.sleep = sleep
        self.opener = urllib.request.build_opener(_NoRedirect())

    def send(self, target: HttpTarget, batch: Batch, policy: TargetPolicy) -> Outcome:
        problem = policy.url_problem(target.url) or (target.token_env and policy.token_env_problem(target.token_env))
        if problem:
            log.warning("batch %s not sent: %s", batch.idempotency_key, problem)
            return Outcome(delivered=False, error=f"not sent: {problem}")
        headers = {
            "Content-Type": batch.content_type,
            "Idempotency-Key": batch.idempotency_key,
            "X-Erp-Run-Id": str(batch.run_id),
            "X-Erp-Batch-No": str(batch.batch_no),
            "X-Erp-Dataset": batch.dataset,
            "User-Agent": USER_AGENT,
        }
        token: str | None = None
        if target.token_env:
            token = os.environ.get(target.token_env)
            if not token:
                return Outcome(delivered=False, error=f"token env var {target.token_env} is not set")
            headers["Authorization"] = f"Bearer {token}"
        body = batch.body()
        failure = "not sent"
        status: int | None = None
        answer: str | None = None
        for attempt in range(1, target.max_attempts + 1):
            if attempt > 1:
                self.sleep(min(MAX_BACKOFF_SECONDS, target.retry_backoff_seconds * 2 ** (attempt - 2)))
            try:
                status, answer = self._post(target.url, body, headers, target.timeout_seconds)
            except (OSError, http.client.HTTPException) as exc:
                status, answer = None, None
                failure = _transport_failure(target.url, exc)
            else:
                answer = _kept(answer, token)
                if 200 <= status < 300:
                    return Outcome(delivered=True, attempts=attempt, http_status=status)
                if 300 <= status < 400:
                    return Outcome(delivered=False, attempts=attempt, http_status=status, response=answer,
                                   error=f"the target redirected (HTTP {status}); redirects are not followed: "
                                         "configure the final URL")
                if status < 500 and status not in TRANSIENT_STATUSES:
                    return Outcome(delivered=False, attempts=attempt, http_status=status, response=answer,
                                   error=f"refused by the target: HTTP {status}")
                failure = f"HTTP {status}"
            log.warning("batch %s: try %d of %d failed: %s", batch.idempotency_key, attempt, target.max_attempts,
                        failure)
        return Outcome(
            delivered=False, attempts=target.max_attempts, http_status=status, response=answer, uncertain=True,
            error=f"not delivered after {target.max_attempts} tries; last: {failure}",
        )

    def _post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str]:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with self.opener.open(request, timeout=timeout) as response:
                return int(response.status), _read_text(response)
        except urllib.error.HTTPError as exc:
            try:
                return int(exc.code), _read_text(exc)
            finally:
                exc.close()


def _read_text(stream: IO[bytes]) -> str:
    """Enough of an answer to keep: the first bytes, not the whole body (a target may answer anything)."""
    raw = stream.read(RESPONSE_LIMIT * 8)
    return raw.decode("utf-8", errors="replace")


def _kept(answer: str, token: str | None) -> str:
    """What is stored on the items: the token blanked out (a target may echo the request), then truncated."""
    if token:
        answer = answer.replace(token, REDACTED)
    return answer[:RESPONSE_LIMIT]


def _transport_failure(url: str, exc: BaseException) -> str:
    """``Cannot reach the ERP target at erp.example:8443: connection refused`` (host and port only, no secrets)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    why = explain(reason) if isinstance(reason, BaseException) else str(reason)
    return f"Cannot reach the ERP target at {parts.hostname}:{port}: {why}"[:300]


def write_batch(target: FileTarget, files_root: Path, batch: Batch) -> Outcome:
    """Write the batch as ``<dataset>-<run id>-<batch no>.<format>`` in the target directory, atomically."""
    try:
        directory = target.resolve(files_root)
        write_atomically(directory / batch.file_name, batch.body())
    except (OSError, ValueError) as exc:
        return Outcome(delivered=False, attempts=1, error=f"cannot write {batch.file_name}: {explain(exc)}")
    return Outcome(delivered=True, attempts=1, location=f"{target.directory}/{batch.file_name}")


def write_atomically(path: Path, content: bytes) -> None:
    """Readers of ``path`` see the old file or the whole new one, never a part (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); a platform that cannot open directories skips it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
