"""The baseline of the run path: Dramatiq alone, a no-op actor on the same broker and pool shape.

``python -m dramatiq bench_raw_actor --queues bench_raw`` with ``BENCH_REDIS_URL`` set and ``tests/bench`` on
``PYTHONPATH``. Each message only counts itself (one ``INCR``), so the benchmark sees when all were handled.
"""

from __future__ import annotations

import os

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, TimeLimit

QUEUE = "bench_raw"
COUNTER = "bench_raw:done"

if "BENCH_REDIS_URL" in os.environ:  # in the pool; the benchmark itself only reads the names above
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    broker = RedisBroker(client=client, middleware=[AgeLimit(), TimeLimit(), Callbacks(), Pipelines(),
                                                    Retries(max_retries=0)])
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name=QUEUE, max_retries=0)
    def noop(n: int) -> None:
        """Does nothing but count itself."""
        client.incr(COUNTER)
