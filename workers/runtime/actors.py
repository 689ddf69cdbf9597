"""The ``dramatiq`` CLI's entry module: ``python -m dramatiq workers.runtime.actors --queues dunning``.

Importing it builds :class:`~scheduler.settings.Settings` from the ``SCHEDULER_*`` environment,
sets the Redis broker and declares the actors (see :mod:`workers.runtime.steps`). Nothing else imports
this module; databases are opened in each worker process on its first message.
"""

from __future__ import annotations

import dramatiq

from scheduler.dispatch import Dispatcher, make_broker, redis_url
from scheduler.jobtypes import load_registry
from scheduler.logs import configure_logging
from scheduler.settings import Settings
from workers.runtime import metrics
from workers.runtime.env import WorkerEnv, build_env
from workers.runtime.steps import LazyEnv, declare_actors

settings = Settings()
configure_logging(settings, process="worker")
registry = load_registry(settings)
url = redis_url(settings)
broker = make_broker(url)
for extra in metrics.middleware(settings):
    broker.add_middleware(extra)
dramatiq.set_broker(broker)


def _build_env() -> WorkerEnv:
    return build_env(settings, dispatcher=Dispatcher(broker, url), registry=registry)


actors = declare_actors(broker, registry, LazyEnv(_build_env))
