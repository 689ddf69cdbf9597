"""ERP transfer job and run properties (the wire names are the field names) and the target's identity.

Secrets are never stored: an HTTP target names the environment variable that holds its token.
Validated with the installation's settings (``context={"settings": ...}``, as at job creation), an
HTTP target must also pass the allow-lists of :mod:`workers.erp.policy`. A file target is a
directory relative to the files root; paths that could leave the root are refused.
"""

from __future__ import annotations

import enum
import hashlib
import posixpath
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from scheduler.limits import MAX_DB_INT, SupportedDate, Text
from scheduler.settings import Settings
from workers.erp.policy import SECRET_PREFIX, TargetPolicy


class ErpDataset(enum.StrEnum):
    INVOICES = "invoices"
    """Invoices and late fees, by issue date."""
    PAYMENTS = "payments"
    """Payments, by the day they were received."""
    GL_JOURNAL = "gl_journal"
    """General-ledger journal lines posted by the GL collector, by entry date."""


class ErpFormat(enum.StrEnum):
    JSON = "json"
    """One JSON document per batch: ``{"run_id", "batch_no", "dataset", "records": [...]}``."""
    CSV = "csv"
    """One CSV document per batch: a header row, then one row per record."""


ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


class HttpTarget(BaseModel):
    """POST each batch to ``url``, with ``Authorization: Bearer $<token_env>`` when a token is named."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["http"] = "http"
    url: Text = Field(min_length=1, max_length=2000, description="http(s) URL that receives the batches")
    token_env: str | None = Field(
        default=None, max_length=128,
        description=f"Name of the environment variable holding the bearer token (the name, never the token): "
        f"{SECRET_PREFIX}… or one listed in SCHEDULER_ERP_SECRET_NAMES",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=300, description="Per request")
    max_attempts: int = Field(default=4, ge=1, le=10, description="Tries per batch on timeouts, 5xx, lost connections")
    retry_backoff_seconds: float = Field(
        default=1.0, ge=0, le=60, description="First wait between tries; doubles each time"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; name the token's environment variable in token_env")
        if (policy := _policy(info)) is not None and (problem := policy.url_problem(value.strip())):
            raise ValueError(problem)
        return value.strip()

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == "":
            return None
        if not ENV_NAME.match(value):
            raise ValueError(
                f"must be the NAME of an environment variable (upper case, digits, _; e.g. {SECRET_PREFIX}ERP), "
                "not the token"
            )
        if (policy := _policy(info)) is not None and (problem := policy.token_env_problem(value)):
            raise ValueError(problem)
        return value


def _policy(info: ValidationInfo) -> TargetPolicy | None:
    """The allow-lists when validating with the installation's settings (job creation), else ``None``."""
    settings = (info.context or {}).get("settings") if isinstance(info.context, dict) else None
    return TargetPolicy.of(settings) if isinstance(settings, Settings) else None


class FileTarget(BaseModel):
    """Write each batch as a file in ``directory`` (relative to the files root)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["file"] = "file"
    directory: Text = Field(min_length=1, max_length=500, description="Directory under the files root")

    @field_validator("directory")
    @classmethod
    def _relative(cls, value: str) -> str:
        cleaned = value.strip().replace("\\", "/")
        if cleaned.startswith("/") or re.match(r"^[A-Za-z]:", cleaned):
            raise ValueError("must be relative to the files root, not an absolute path")
        normalized = posixpath.normpath(cleaned)
        if normalized == ".." or normalized.startswith("../"):
            raise ValueError("must stay inside the files root (no '..' leading out of it)")
        if normalized == ".":
            raise ValueError("must name a directory under the files root, not the root itself")
        return normalized

    def resolve(self, files_root: Path) -> Path:
        """The absolute directory, refusing one that leaves the root (e.g. through a symbolic link)."""
        root = files_root.resolve()
        path = (root / PurePosixPath(self.directory)).resolve()
        if not path.is_relative_to(root):
            raise TargetOutsideRoot(self.directory, root)
        return path


class TargetOutsideRoot(ValueError):
    """A file target whose directory resolves outside the files root."""

    def __init__(self, directory: str, root: Path) -> None:
        super().__init__(f"target directory {directory!r} resolves outside the files root (a symbolic link leads "
                         "out of it)")


Target = Annotated[HttpTarget | FileTarget, Field(discriminator="kind")]


class ErpProperties(BaseModel):
    """What an ERP transfer job is configured with."""

    model_config = ConfigDict(extra="forbid")

    dataset: ErpDataset
    target: Target
    format: ErpFormat = ErpFormat.JSON
    batch_size: int = Field(default=500, ge=1, le=5000, description="Records per batch (one chunk per batch)")
    auto_send: bool = Field(
        default=True, description="Send as soon as the batches are staged; off: every run waits at PREVIEW for submit"
    )
    inception_date: SupportedDate | None = Field(
        default=None, description="First day scheduled runs transfer (empty: from the earliest record)"
    )
    lookback_days: int = Field(
        default=7, ge=0, le=366,
        description="Days before the end of the last completed scheduled range that the next one reads again, "
        "so records entered late with an earlier date are still sent (never twice)",
    )


class ErpRunProperties(BaseModel):
    """Inputs of a manual run; with none, the run takes the rolling range like a scheduled run."""

    model_config = ConfigDict(extra="forbid")

    bill_cycle_run_id: int | None = Field(
        default=None, ge=1, le=MAX_DB_INT,
        description="Only one bill cycle run's records: its invoices, the payments against them; gl_journal: the "
        "lines the GL collector run of this id posted",
    )
    date_from: SupportedDate | None = Field(default=None, description="First day, inclusive")
    date_to: SupportedDate | None = Field(default=None, description="Last day, inclusive")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_from must not be after date_to")
        return self

    @property
    def explicit(self) -> bool:
        return self.bill_cycle_run_id is not None or self.date_from is not None or self.date_to is not None


def target_key(target: HttpTarget | FileTarget) -> str:
    """A stable identity of the target: SHA-256 of its normalized URL or directory."""
    if isinstance(target, HttpTarget):
        parts = urlsplit(target.url)
        host = (parts.hostname or "").lower()
        default_port = {"http": 80, "https": 443}[parts.scheme]
        netloc = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
        identity = "http " + urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    else:
        identity = "file " + target.directory.rstrip("/")
    return hashlib.sha256(identity.encode()).hexdigest()


def describe_target(target: HttpTarget | FileTarget) -> dict[str, str]:
    """The target as shown in a summary: where to, never a secret."""
    if isinstance(target, HttpTarget):
        described = {"kind": "http", "url": target.url}
        if target.token_env:
            described["token_env"] = target.token_env
        return described
    return {"kind": "file", "directory": target.directory}
