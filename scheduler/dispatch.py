"""The broker (a Redis server), queue names, and sending run steps.

A run step is one Dramatiq message on its job type's queue: ``(run_id, phase, chunk_no)`` for the
actor named by :func:`step_actor_name`. The database is the truth; a message only says "look at
this run now", so a lost or duplicated message is repaired or ignored by the guarded updates.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, Middleware, Pipelines, Retries, TimeLimit

from scheduler.errors import BrokerUnavailable
from scheduler.metrics import BROKER_UP
from scheduler.redis_client import redis_client
from scheduler.settings import Settings

SCHEDULER_QUEUE = "scheduler"
REQUEST_RUN_ACTOR = "request_run"
WAKE_CHANNEL = "scheduler:beat:wake"


class Phase:
    """The phases of a run step message."""

    PLAN = "plan"
    EVALUATE = "evaluate"
    APPLY = "apply"


def step_actor_name(queue: str) -> str:
    return f"run_step__{queue}"


@dataclass(frozen=True, kw_only=True)
class RunStep:
    run_id: int
    phase: str
    chunk_no: int = 0


def encoded_steps(queue: str, steps: Sequence[RunStep]) -> dict[str, bytes]:
    """The steps of one queue as Dramatiq encodes their messages, by Redis id, written straight from a template.

    Byte for byte what :meth:`dramatiq.Message.encode` gives for the step's message (the fields in Dramatiq's
    order, its separators), without a :class:`dramatiq.Message`, its field dictionary and a ``uuid4`` system
    call per step: a tick or a batch sends thousands. The ids are random version-4 UUIDs drawn in one call;
    a new message's own id is its Redis id too (the broker gives a message another one when it enqueues it
    again, e.g. a retry).
    """
    name = json.dumps(queue)
    head = f'{{"queue_name":{name},"actor_name":{json.dumps(step_actor_name(queue))},"args":['
    timestamp = int(time.time() * 1000)
    randomness = os.urandom(16 * len(steps))
    encoded: dict[str, bytes] = {}
    for n, step in enumerate(steps):
        message_id = str(UUID(bytes=randomness[16 * n : 16 * n + 16], version=4))
        encoded[message_id] = (
            f'{head}{step.run_id},{json.dumps(step.phase)},{step.chunk_no}],"kwargs":{{}},'
            f'"options":{{"redis_message_id":"{message_id}"}},"message_id":"{message_id}",'
            f'"message_timestamp":{timestamp}}}'
        ).encode()
    return encoded


def redis_url(settings: Settings, *, process: str = "this process") -> str:
    """The configured Redis URL; without one, :class:`MissingSetting` (only ``scheduler up`` embeds a Redis)."""
    settings.require("redis_url", process=process)
    assert settings.redis_url is not None
    return settings.redis_url


def make_broker(url: str, *, middleware: list[Any] | None = None, settings: Settings | None = None) -> RedisBroker:
    """A Redis broker with Dramatiq's usual middleware, minus retries of failed steps.

    Failed steps are not retried by Dramatiq: the executor records the failure on the run, and beat
    re-sends steps whose runs went stale. Its client comes from :func:`~scheduler.redis_client.redis_client`
    (TLS and Sentinel settings applied); ``settings`` defaults to none of those.
    """
    default = [
        AgeLimit(), TimeLimit(time_limit=6 * 3600 * 1000), Callbacks(), Pipelines(), Retries(max_retries=0),
    ]
    client = redis_client(settings or Settings.model_construct(redis_url=url), url)
    return RedisBroker(client=client, middleware=middleware if middleware is not None else default)  # type: ignore[no-untyped-call]


def make_dispatcher(settings: Settings, *, process: str = "this process") -> Dispatcher:
    """The dispatcher of a process on the configured Redis, with TLS and Sentinel applied."""
    url = redis_url(settings, process=process)
    return Dispatcher(make_broker(url, settings=settings), url)


class Dispatcher:
    """Sends run steps and beat wake-ups; translates Redis errors to :class:`BrokerUnavailable`."""

    def __init__(self, broker: RedisBroker, url: str) -> None:
        self.broker = broker
        self.url = url

    def send_step(self, queue: str, step: RunStep) -> None:
        self.send_steps([(queue, step)])

    def send_steps(self, steps: Sequence[tuple[str, RunStep]]) -> None:
        """Send each ``(queue, step)`` in one Redis round trip.

        The steps are written as :meth:`RedisBroker.enqueue` writes each message (the message under its own
        Redis id in the queue's ``.msgs`` hash, the id pushed on the queue, the broker's enqueue middleware
        hooks), as one ``MULTI`` of two commands per queue instead of a script call per message, the
        messages encoded by :func:`encoded_steps`; workers cannot tell the difference.
        """
        if not steps:
            return
        try:
            self._enqueue(steps)
        except redis.RedisError as exc:
            BROKER_UP.set(0)
            raise BrokerUnavailable(self.url, str(exc)) from exc
        BROKER_UP.set(1)

    def _enqueue(self, steps: Sequence[tuple[str, RunStep]]) -> None:
        broker = self.broker
        by_queue: dict[str, list[RunStep]] = {}
        for queue, step in steps:
            by_queue.setdefault(queue, []).append(step)
        encoded = {queue: encoded_steps(queue, queue_steps) for queue, queue_steps in by_queue.items()}
        # Dramatiq's own middleware does nothing when a new message is enqueued; any that does gets its hooks.
        hooked = [m for m in broker.middleware if type(m).before_enqueue is not Middleware.before_enqueue
                  or type(m).after_enqueue is not Middleware.after_enqueue]
        messages = [dramatiq.Message.decode(data) for by_id in encoded.values() for data in by_id.values()] \
            if hooked else []
        for message in messages:
            broker.emit_before("enqueue", message, None)
        with broker.client.pipeline(transaction=True) as pipe:
            for queue, by_id in encoded.items():
                key = f"{broker.namespace}:{queue}"
                pipe.hset(f"{key}.msgs", mapping=by_id)  # type: ignore[arg-type]
                pipe.rpush(key, *by_id)
            pipe.execute()
        for message in messages:
            broker.emit_after("enqueue", message, None)

    def wake_beat(self) -> None:
        """Tell beat a job was created or resumed; best effort (beat polls anyway)."""
        try:
            self.broker.client.publish(WAKE_CHANNEL, b"1")
        except redis.RedisError:
            pass
