"""Sending run steps: a batch's messages are what Dramatiq's own enqueue writes, and Dramatiq's consumer takes them."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import dramatiq
import redis
from dramatiq.middleware import Middleware

from scheduler.dispatch import Dispatcher, Phase, RunStep, encoded_steps, make_broker, step_actor_name


def test_a_batch_message_is_byte_for_byte_what_dramatiq_encodes() -> None:
    steps = [RunStep(run_id=7, phase=Phase.PLAN), RunStep(run_id=2_000_000_001, phase=Phase.APPLY, chunk_no=-1)]

    encoded = encoded_steps("dunning", steps)

    assert len(encoded) == 2
    for (redis_id, data), step in zip(encoded.items(), steps, strict=True):
        message = dramatiq.Message.decode(data)
        assert data == message.encode()  # Dramatiq's encoding of the same message: the same bytes
        assert message == dramatiq.Message(
            queue_name="dunning", actor_name=step_actor_name("dunning"), args=(step.run_id, step.phase, step.chunk_no),
            kwargs={}, options={"redis_message_id": redis_id}, message_id=redis_id,
            message_timestamp=message.message_timestamp)
        assert UUID(redis_id).version == 4


class _Recorder(Middleware):
    def __init__(self) -> None:
        self.enqueued: list[Any] = []

    def after_enqueue(self, broker: Any, message: dramatiq.Message[Any], delay: int | None) -> None:
        self.enqueued.append(message.args)


def test_a_batch_is_taken_by_dramatiqs_consumer_and_seen_by_enqueue_hooks(redis_url: str,
                                                                         redis_client: redis.Redis) -> None:
    # Given a broker whose middleware watches enqueues
    recorder = _Recorder()
    broker = make_broker(redis_url, middleware=[recorder])
    steps = [("alpha", RunStep(run_id=n, phase=Phase.PLAN)) for n in (1, 2, 3)] + [
        ("beta", RunStep(run_id=4, phase=Phase.APPLY, chunk_no=2))]

    # When a batch is sent
    Dispatcher(broker, redis_url).send_steps(steps)

    # Then Dramatiq's own consumer takes every message, in order, and the hooks saw each one
    for queue, expected in (("alpha", [(1, "plan", 0), (2, "plan", 0), (3, "plan", 0)]), ("beta", [(4, "apply", 2)])):
        broker.declare_queue(queue)
        consumer = broker.consume(queue, prefetch=10, timeout=1000)
        taken = [next(consumer) for _ in expected]
        assert [tuple(m.args) for m in taken] == expected
        assert all(m.actor_name == step_actor_name(queue) for m in taken)
        consumer.close()
    assert sorted(recorder.enqueued) == sorted((s.run_id, s.phase, s.chunk_no) for _, s in steps)
    broker.close()
