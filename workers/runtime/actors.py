"""The ``dramatiq`` CLI's entry module: ``python -m dramatiq workers.runtime.actors --queues dunning``.

Importing it builds :class:`~scheduler.settings.Settings` from the ``SCHEDULER_*`` environment,
sets the Redis broker and declares the actors (see :mod:`workers.runtime.steps`). Nothing else imports
this module; databases are opened in each worker process on its first message.
"""

from __future__ import annotations

import os
import sys

import dramatiq

from scheduler.dispatch import Dispatcher, make_broker
from scheduler.errors import MissingSetting
from scheduler.jobtypes import load_registry
from scheduler.logs import configure_logging
from scheduler.metrics import start_at_zero
from scheduler.metrics_dir import MULTIPROC_ENV
from scheduler.settings import Settings
from workers.runtime import metrics
from workers.runtime.env import WorkerEnv, build_env
from workers.runtime.steps import LazyEnv, declare_actors

settings = Settings()
configure_logging(settings, service="worker")
try:
    settings.require("database_url", "redis_url", process="a worker")
except MissingSetting as exc:
    sys.stderr.write(f"error: {exc.message}\n")
    raise SystemExit(2) from exc
registry = load_registry(settings)
start_at_zero(registry.names(), items=True)
url = str(settings.redis_url)
broker = make_broker(url, settings=settings)
for extra in metrics.middleware(settings, os.environ.get(MULTIPROC_ENV)):
    broker.add_middleware(extra)
broker.add_middleware(metrics.StatusLag({registry.get(name).queue: name for name in registry.names()}))
dramatiq.set_broker(broker)


def _build_env() -> WorkerEnv:
    return build_env(settings, dispatcher=Dispatcher(broker, url), registry=registry)


actors = declare_actors(broker, registry, LazyEnv(_build_env))
