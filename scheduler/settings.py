"""One typed ``Settings`` object, built only in entry points and passed down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from scheduler.errors import MissingSetting
from scheduler.redact import Redactor, redact


class Settings(BaseSettings):
    """Every ``SCHEDULER_*`` setting with its default; see the README for what each one does."""

    model_config = SettingsConfigDict(env_prefix="SCHEDULER_", extra="ignore")

    data_dir: Path = Path(".scheduler")
    database_url: str | None = None
    redis_url: str | None = None
    files_root: Path | None = None
    billing_database_url: str | None = None
    smtp_url: str | None = None
    mail_from: str = "scheduler@localhost"
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    metrics_host: str = "127.0.0.1"
    beat_metrics_port: int = 9192
    worker_metrics_port: int = 9191
    beat_lease_seconds: float = 8.0
    beat_max_sleep_seconds: float = 1.0
    run_heartbeat_timeout: float = 30.0
    outbox_resend_after: float = 30.0
    chunk_size: int = 20_000
    worker_processes: int = 1
    worker_threads: int = 2
    extra_job_types: list[str] = []
    log_service: str | None = None
    api_shutdown_seconds: float = 20.0
    api_workers: int | None = None
    api_key_cache_seconds: float = 1.0
    worker_shutdown_seconds: float = 600.0
    db_pool_size: int | None = None
    db_max_overflow: int | None = None
    redis_ssl_ca_certs: Path | None = None
    redis_ssl_certfile: Path | None = None
    redis_ssl_keyfile: Path | None = None
    redis_sentinels: str | None = None
    redis_sentinel_service: str = "mymaster"
    redis_sentinel_password: str | None = None
    session_idle_seconds: float = 7200.0
    """A page session unused this long has ended (the page refreshes it while it is open)."""
    session_max_seconds: float = 43200.0
    """A page session ends this long after login, used or not."""
    trust_forwarded_proto: bool = False
    """Take ``X-Forwarded-Proto: https`` as HTTPS (Secure cookies, HSTS): only behind a proxy that sets it."""
    erp_allowed_hosts: Annotated[list[str], NoDecode] = []
    """Hosts (``host``, ``host:port``, ``host:*``, ``*.domain``) ERP HTTP targets may send to; empty: none."""
    erp_secret_names: Annotated[list[str], NoDecode] = []
    """Environment variables ERP targets may name as ``token_env``, besides ``SCHEDULER_ERP_SECRET_*``."""
    refused_requests_retention_days: float = 30.0
    """How long a refused ``request_run`` message stays listed in ``GET /api/v1/refused-requests``."""
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    """ISO 4217 code of amounts a job type records without a currency (how the page and exports show them)."""

    @field_validator("erp_allowed_hosts", "erp_secret_names", mode="before")
    @classmethod
    def _name_list(cls, value: Any) -> Any:
        """A JSON list, or names separated by commas or spaces (``a.example.com, b.example.com:8443``)."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p for p in text.replace(",", " ").split() if p]
        return value

    # Input limits (README "Limits"; scheduler.limits has the fixed ones): a larger request body is 413,
    # larger properties (serialized JSON) or a CSV export of more runs 422.
    max_request_bytes: int = 1024 * 1024
    max_properties_bytes: int = 64 * 1024
    max_export_rows: int = 100_000

    def require(self, *names: str, process: str) -> None:
        """Refuse to go on without these settings (e.g. ``database_url``, ``redis_url``): outside
        ``scheduler up`` nothing falls back to the embedded SQLite or Redis."""
        for name in names:
            if not getattr(self, name):
                raise MissingSetting(f"SCHEDULER_{name.upper()}", process)

    def redactor(self) -> Redactor:
        """What masks this configuration's passwords wherever they might be printed (see scheduler.redact)."""
        urls = Redactor.of_urls(self.database_url, self.billing_database_url, self.redis_url, self.smtp_url)
        return Redactor([*urls.secrets, self.redis_sentinel_password or ""])

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, redact(value) if isinstance(value, str) else value

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'scheduler.db').resolve()}"

    @property
    def resolved_billing_database_url(self) -> str:
        """The billing database URL, defaulting to the scheduler's own database."""
        return self.billing_database_url or self.resolved_database_url

    @property
    def resolved_files_root(self) -> Path:
        return self.files_root or self.data_dir / "files"
