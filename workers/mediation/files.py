"""The job's directories under the files root: listing input files and moving applied ones aside.

Every path is resolved (symbolic links included) and must stay inside the files root; the job's
properties were already refused at creation if they were absolute or used ``..``.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from scheduler.jobkit import explain
from scheduler.settings import Settings
from workers.mediation.properties import MediationProperties
from workers.mediation.reader import file_checksum
from workers.mediation.records import SourceError


@dataclass(frozen=True, kw_only=True)
class Dirs:
    """The resolved files root, source and archive directories of a job."""

    root: Path
    source: Path
    archive: Path

    def relative(self, path: Path) -> str:
        """``path`` relative to the files root, as shown to users and stored."""
        return path.relative_to(self.root).as_posix()


def resolve_dirs(settings: Settings, props: MediationProperties) -> Dirs:
    root = settings.resolved_files_root.resolve()
    return Dirs(
        root=root,
        source=_inside(root, root / props.source_dir, "source_dir"),
        archive=_inside(root, root / props.archive_path, "archive_dir"),
    )


def _inside(root: Path, path: Path, what: str) -> Path:
    resolved = path.resolve()
    if resolved != root and not resolved.is_relative_to(root):
        # The resolved path is not shown: it is outside the root, a place of the server the user has no business with.
        raise SourceError(f"{what} resolves outside the files root (a symbolic link leads out of it)")
    return resolved


def list_files(dirs: Dirs, pattern: str) -> list[str]:
    """Names of the regular files in the source directory matching ``pattern``, in name order."""
    if not dirs.source.is_dir():
        raise SourceError(f"source directory {dirs.relative(dirs.source)!r} does not exist under the files root")
    names = []
    with os.scandir(dirs.source) as entries:
        for entry in entries:
            # Dot files are uploads in progress by convention; directories (the archive) are not input.
            if entry.name.startswith(".") or not fnmatch.fnmatchcase(entry.name, pattern):
                continue
            if entry.is_file():
                names.append(entry.name)
    return sorted(names)


def source_file(dirs: Dirs, name: str) -> Path | None:
    """The input file ``name`` (resolved), ``None`` if it is gone; refuses a link that leads out of the root."""
    path = dirs.source / name
    if not path.exists():
        return None
    return _inside(dirs.root, path, f"file {name!r}")


@dataclass(frozen=True, kw_only=True)
class Archived:
    """Where a file went (relative to the root), or why it stayed."""

    archived_as: str | None = None
    problem: str | None = None


def archive(dirs: Dirs, name: str, checksum: str) -> Archived:
    """Move an applied file into the archive directory (atomic rename); safe to repeat.

    A name already taken in the archive gets the checksum's first 12 digits before its suffix. A file
    whose content changed since it was read is left in place: it is a different file now.
    """
    plain = dirs.archive / name
    stem, dot, suffix = name.partition(".")
    marked = dirs.archive / f"{stem}.{checksum[:12]}{dot}{suffix}"
    src = dirs.source / name
    if not src.exists():
        for candidate in (plain, marked):
            if candidate.is_file() and file_checksum(candidate) == checksum:
                return Archived(archived_as=dirs.relative(candidate))
        return Archived(problem="the file is no longer in the source directory")
    try:
        if file_checksum(_inside(dirs.root, src, f"file {name!r}")) != checksum:
            return Archived(problem="the file changed after it was read; left in place")
        dirs.archive.mkdir(parents=True, exist_ok=True)
        target = plain if not plain.exists() else marked
        _move(src, target)
    except (OSError, SourceError) as exc:
        return Archived(problem=f"could not move the file to the archive: {explain(exc)}")
    return Archived(archived_as=dirs.relative(target))


def _move(src: Path, target: Path) -> None:
    try:
        os.replace(src, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # Another file system: copy under a temporary name, rename into place, then remove the source.
        partial = target.with_name(f".{target.name}.partial")
        shutil.copy2(src, partial)
        os.replace(partial, target)
        src.unlink()
