"""Usage mediation job and run properties (the wire names are the field names).

Directories are relative to the files root (``SCHEDULER_FILES_ROOT``); a path that is absolute or
climbs out with ``..`` is refused here, when the job is created. The worker checks the resolved
paths again (symbolic links included) before it reads or moves a file.
"""

from __future__ import annotations

import enum
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scheduler.limits import Text

METER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


class FileFormat(enum.StrEnum):
    CSV = "csv"
    """Comma-separated values with a header line naming the record fields (any order, extra columns ignored)."""
    JSONL = "jsonl"
    """One JSON object per line."""


class Meter(BaseModel):
    """A meter records are rated with: quantity x ``price_per_unit``, rounded half up to 6 decimals."""

    model_config = ConfigDict(extra="forbid")

    meter: str = Field(min_length=1, max_length=64, pattern=METER_PATTERN)
    unit: Text = Field(min_length=1, max_length=32)
    price_per_unit: Decimal = Field(ge=0, max_digits=12, decimal_places=6)


def relative_dir(value: str, field: str) -> str:
    """``value`` as a normalized relative POSIX path inside the files root, or ``ValueError``."""
    raw = value.strip()
    if not raw:
        raise ValueError(f"{field} must not be empty")
    if "\x00" in raw or "\\" in raw:
        raise ValueError(f"{field} must be a relative path with '/' separators")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise ValueError(f"{field} must be relative to the files root, not absolute")
    parts = [p for p in PurePosixPath(raw).parts if p != "."]
    if ".." in parts:
        raise ValueError(f"{field} must stay inside the files root ('..' is not allowed)")
    return "/".join(parts) or "."


class MediationProperties(BaseModel):
    """What a usage mediation job is configured with."""

    model_config = ConfigDict(extra="forbid")

    source_dir: str = Field(max_length=300, description="Directory of incoming files, relative to the files root")
    pattern: str = Field(default="*.csv", min_length=1, max_length=100,
                         description="File name glob in source_dir, e.g. *.csv (no directories)")
    format: FileFormat = FileFormat.CSV
    meters: list[Meter] = Field(min_length=1, max_length=1000)
    archive_dir: str | None = Field(
        default=None, max_length=300,
        description="Where applied files are moved, relative to the files root (default <source_dir>/processed)",
    )
    max_files: int = Field(default=100, ge=1, le=10_000,
                           description="At most this many files per run (first names in order)")

    @field_validator("source_dir")
    @classmethod
    def _source_inside_root(cls, value: str) -> str:
        return relative_dir(value, "source_dir")

    @field_validator("archive_dir")
    @classmethod
    def _archive_inside_root(cls, value: str | None) -> str | None:
        return None if value is None else relative_dir(value, "archive_dir")

    @field_validator("pattern")
    @classmethod
    def _plain_glob(cls, value: str) -> str:
        value = value.strip()
        if "/" in value or "\\" in value or "\x00" in value or value in (".", ".."):
            raise ValueError("pattern matches file names in source_dir; it must not contain directories")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [m.meter for m in self.meters]
        if len(set(names)) != len(names):
            raise ValueError("meter names must be unique")
        if self.archive_path == self.source_dir:
            raise ValueError("archive_dir must differ from source_dir (archived files would be read again)")
        return self

    @property
    def archive_path(self) -> str:
        """The archive directory relative to the files root."""
        if self.archive_dir is not None:
            return self.archive_dir
        return "processed" if self.source_dir == "." else f"{self.source_dir}/processed"

    @property
    def prices(self) -> dict[str, Decimal]:
        return {m.meter: m.price_per_unit for m in self.meters}


class MediationRunProperties(BaseModel):
    """Inputs of a manual usage mediation run."""

    model_config = ConfigDict(extra="forbid")

    files: list[Annotated[str, Field(max_length=255)]] | None = Field(
        default=None, min_length=1, max_length=10_000,
        description="Only these file names in source_dir (they must still match the pattern)",
    )

    @field_validator("files")
    @classmethod
    def _names_only(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for name in value:
            if not name or "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
                raise ValueError(f"{name!r} is not a file name (directories are not allowed)")
        return value
