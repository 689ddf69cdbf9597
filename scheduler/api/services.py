"""What the routes use: settings, engine, sessions, job types, dispatcher and clock, built lazily."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from scheduler.api.key_cache import KeyCache
from scheduler.clock import Clock, SystemClock
from scheduler.db import make_engine, make_session_factory, pool_options
from scheduler.dispatch import Dispatcher, make_dispatcher
from scheduler.errors import SchedulerError
from scheduler.health import Readiness, broker, database, database_probe, redis_probe
from scheduler.jobtypes import JobTypeRegistry, load_registry
from scheduler.runs import send_apply, send_created, send_run
from scheduler.settings import Settings

log = logging.getLogger(__name__)


class Services:
    """What the routes use, built lazily and at most once (handlers run on several threads)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None,
        registry: JobTypeRegistry | None,
        dispatcher: Dispatcher | None,
        clock: Clock | None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._engine = engine
        self._owns_engine = engine is None
        self._registry = registry
        self._dispatcher = dispatcher
        self._factory: sessionmaker[Session] | None = None
        self._lock = threading.Lock()
        self._readiness: Readiness | None = None
        self._redis_probe: Callable[[], None] | None = None
        self.key_cache = KeyCache(settings.api_key_cache_seconds)

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = make_engine(self.settings.resolved_database_url, **pool_options(self.settings))
            return self._engine

    @property
    def session_factory(self) -> sessionmaker[Session]:
        engine = self.engine
        with self._lock:
            if self._factory is None:
                self._factory = make_session_factory(engine)
            return self._factory

    @property
    def registry(self) -> JobTypeRegistry:
        with self._lock:
            if self._registry is None:
                self._registry = load_registry(self.settings)
            return self._registry

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher; raises :class:`BrokerUnavailable` when an embedded Redis cannot start."""
        with self._lock:
            if self._dispatcher is None:
                self._dispatcher = make_dispatcher(self.settings)
            return self._dispatcher

    @property
    def readiness(self) -> Readiness:
        """``/readyz``: fresh connections with short timeouts to the database and Redis."""
        with self._lock:
            if self._readiness is None:
                url = (self._engine.url.render_as_string(hide_password=False) if self._engine is not None
                       else self.settings.resolved_database_url)
                self._readiness = Readiness(
                    [database(database_probe(url)), broker(self.probe_redis)],
                    self.settings.redactor(),
                )
            return self._readiness

    def probe_redis(self) -> None:
        """Ping Redis with short timeouts (setting ``scheduler_broker_up``); raises when it does not answer."""
        if self._redis_probe is None:
            self._redis_probe = redis_probe(self.dispatcher.url, self.settings)
        self._redis_probe()

    def database_url(self) -> str:
        """The database URL without its password, for error messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def wake_beat(self) -> None:
        """Best effort: beat polls anyway."""
        try:
            self.dispatcher.wake_beat()
        except SchedulerError as exc:
            log.warning("could not wake beat: %s", exc.message)

    def _available_dispatcher(self, run_id: int) -> Dispatcher | None:
        try:
            return self.dispatcher
        except SchedulerError as exc:
            log.warning("broker unavailable, run %s waits for beat to re-send: %s", run_id, exc.message)
            return None

    def send_run(self, run_id: int) -> None:
        """Send a committed run; with Redis down it stays CREATED and beat's outbox sends it later."""
        if (dispatcher := self._available_dispatcher(run_id)) is not None:
            send_run(factory=self.session_factory, dispatcher=dispatcher, registry=self.registry, run_id=run_id,
                     clock=self.clock)

    def send_created(self, runs: list[tuple[int, str]]) -> bool:
        """Send runs ``(run_id, job_type)`` committed as sent, in one Redis round trip; ``False`` when not sent
        (their stamp taken back: the outbox sends them)."""
        if not runs:
            return False
        return send_created(factory=self.session_factory, dispatcher=self._available_dispatcher(runs[0][0]),
                            registry=self.registry, runs=runs)

    def send_apply(self, run_id: int) -> None:
        """Send a submitted run's apply steps; with Redis down beat reclaims the run later."""
        if (dispatcher := self._available_dispatcher(run_id)) is not None:
            send_apply(factory=self.session_factory, dispatcher=dispatcher, registry=self.registry, run_id=run_id)

    def close(self) -> None:
        if self._owns_engine and self._engine is not None:
            self._engine.dispose()
