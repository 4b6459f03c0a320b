"""What waits in the broker's queues, and the dead letters an operator can read, requeue or purge.

dramatiq moves a message that failed past its retries to its queue's dead-letter queue
(RabbitMQ ``<queue>.XQ``, Redis ``<namespace>:<queue>.XQ``) and keeps it there for a week.
Nothing reads it again unless someone looks: these functions are that look, for RabbitMQ,
Redis and the in-memory stub alike. ``queue_depths`` reads counts only, never message
bodies, so that metrics can poll it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import dramatiq
import pika
import pika.exceptions
from django.conf import settings
from django.utils.module_loading import autodiscover_modules
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, q_name, xq_name
from dramatiq.errors import DecodeError

# What a requeued message forgets: it starts over on its queue with all its retries.
_SPENT_OPTIONS = {"retries", "traceback", "requeue_timestamp", "eta", "redis_message_id"}


def queue_depths(*, broker: dramatiq.Broker | None = None) -> dict[str, dict[str, int]]:
    """Per queue: messages ready for a worker, waiting in the delay queue, and dead.

    Counts what sits in the broker; messages a worker already holds are not counted.
    """
    broker = broker or _global_broker()
    queues = sorted({q_name(name) for name in broker.get_declared_queues()})
    if isinstance(broker, RabbitmqBroker):
        counts = _rabbit_counts(broker, [n for q in queues for n in (q, dq_name(q), xq_name(q))])
        return {
            q: {"ready": counts[q], "delayed": counts[dq_name(q)], "dead": counts[xq_name(q)]} for q in queues
        }
    if isinstance(broker, RedisBroker):
        pipe = broker.client.pipeline(transaction=False)
        for q in queues:
            pipe.llen(_key(broker, q))
            pipe.llen(_key(broker, dq_name(q)))
            pipe.zcard(_key(broker, xq_name(q)))
        values = iter(pipe.execute())
        return {q: {"ready": next(values), "delayed": next(values), "dead": next(values)} for q in queues}
    stub = _stub(broker)
    return {
        q: {
            "ready": stub.queues[q].qsize(),
            "delayed": stub.queues[dq_name(q)].qsize(),
            "dead": len(_stub_dead(stub, q)),
        }
        for q in queues
    }


def dead_letters(
    queue: str = "default", limit: int = 20, *, broker: dramatiq.Broker | None = None
) -> list[dict[str, Any]]:
    """Up to ``limit`` dead letters of ``queue``, oldest first, left where they are.

    Each says its actor, arguments, message id, when it was enqueued and when it died, and
    the error dramatiq recorded in it: the traceback of its last retried attempt (the final
    attempt's error is only in the worker's log, under the message id).
    """
    if limit < 1:
        return []
    broker = broker or _global_broker()
    if isinstance(broker, RabbitmqBroker):
        return _rabbit_dead_letters(broker, queue, limit)
    if isinstance(broker, RedisBroker):
        # redis-py types replies for its sync and async clients at once: this one is sync.
        replies = broker.client.zrange(_key(broker, xq_name(queue)), 0, limit - 1, withscores=True)
        ids = cast("list[tuple[bytes, float]]", replies)
        if not ids:
            return []
        bodies = broker.client.hmget(_key(broker, xq_name(queue) + ".msgs"), [i for i, _ in ids])
        return [
            _describe(body, queue=queue, dead_at=_from_millis(score))
            for (_, score), body in zip(ids, bodies, strict=True)
            if body is not None
        ]
    described = []
    for proxy in _stub_dead(_stub(broker), queue)[:limit]:
        entry = _describe(proxy.encode(), queue=queue, dead_at=None)
        exception = getattr(proxy, "_exception", None)
        if exception is not None:
            entry["error"] = f"{type(exception).__name__}: {exception}"
        described.append(entry)
    return described


def requeue_dead(queue: str = "default", *, broker: dramatiq.Broker | None = None) -> int:
    """Send every dead letter of ``queue`` back to it for a fresh try; returns how many.

    Each is enqueued before it leaves the dead-letter queue, so a crash in between repeats
    a message (the actors are idempotent) rather than loses one.
    """
    broker = broker or _global_broker()
    if isinstance(broker, RabbitmqBroker):
        return _rabbit_requeue(broker, queue)
    if isinstance(broker, RedisBroker):
        xq, msgs = _key(broker, xq_name(queue)), _key(broker, xq_name(queue) + ".msgs")
        moved = 0
        dead_now = cast("list[bytes]", broker.client.zrange(xq, 0, -1))  # not those dying meanwhile
        for message_id in dead_now:
            body = cast("bytes | None", broker.client.hget(msgs, message_id))
            if body is not None:
                try:
                    message = _fresh(body)
                except DecodeError:
                    continue  # not ours to run: left for --purge
                broker.enqueue(message)
                moved += 1
            pipe = broker.client.pipeline()
            pipe.zrem(xq, message_id)
            pipe.hdel(msgs, message_id)
            pipe.execute()
        return moved
    stub = _stub(broker)
    dead = [proxy.encode() for proxy in _stub_dead(stub, queue)]
    for body in dead:
        broker.enqueue(_fresh(body))
    _stub_dead_clear(stub, queue)
    return len(dead)


def purge_dead(queue: str = "default", *, broker: dramatiq.Broker | None = None) -> int:
    """Delete every dead letter of ``queue``; returns how many."""
    broker = broker or _global_broker()
    if isinstance(broker, RabbitmqBroker):
        with _rabbit_channel(broker) as channel:
            try:
                return channel.queue_purge(xq_name(queue)).method.message_count
            except pika.exceptions.ChannelClosedByBroker as error:
                if error.reply_code == 404:  # never declared: nothing died there
                    return 0
                raise
    if isinstance(broker, RedisBroker):
        xq = _key(broker, xq_name(queue))
        pipe = broker.client.pipeline()
        pipe.zcard(xq)
        pipe.delete(xq, xq + ".msgs")
        count, _ = pipe.execute()
        return count
    stub = _stub(broker)
    count = len(_stub_dead(stub, queue))
    _stub_dead_clear(stub, queue)
    return count


def _global_broker() -> dramatiq.Broker:
    # The actors declare their queues when their modules are imported, as a worker does.
    autodiscover_modules(*settings.DRAMATIQ_AUTODISCOVER_MODULES)
    return dramatiq.get_broker()


def _describe(body: bytes, *, queue: str, dead_at: datetime | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"queue": queue, "dead_at": dead_at}
    try:
        message = dramatiq.Message.decode(body)
    except DecodeError:
        return {**entry, "message_id": None, "actor": None, "error": "not a dramatiq message"}
    traceback = message.options.get("traceback")
    last_line = (
        next((line for line in reversed(traceback.splitlines()) if line.strip()), None) if traceback else None
    )
    return {
        **entry,
        "message_id": message.message_id,
        "actor": message.actor_name,
        "args": list(message.args),
        "kwargs": dict(message.kwargs),
        "enqueued_at": _from_millis(message.message_timestamp),
        "retries": message.options.get("retries", 0),
        "error": last_line,
        "traceback": traceback,
    }


def _fresh(body: bytes) -> dramatiq.Message:
    message = dramatiq.Message.decode(body)
    return dataclasses.replace(
        message,
        queue_name=q_name(message.queue_name),
        options={k: v for k, v in message.options.items() if k not in _SPENT_OPTIONS},
        message_timestamp=int(time.time() * 1000),  # so that an actor's max_age counts from now
    )


def _from_millis(millis: float) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def _key(broker: RedisBroker, name: str) -> str:
    return f"{broker.namespace}:{name}"


# --- RabbitMQ ---------------------------------------------------------------------------


@contextmanager
def _rabbit_channel(broker: RabbitmqBroker) -> Iterator[Any]:
    """A channel of our own on the thread's connection: RabbitMQ closes a channel on which
    a queue was missing, and the broker's own channel must stay usable for publishing."""
    try:
        channel = broker.connection.channel()
    except pika.exceptions.AMQPConnectionError:
        del broker.connection  # closed while idle (missed heartbeats): one fresh try
        channel = broker.connection.channel()
    try:
        yield channel
    finally:
        if channel.is_open:
            channel.close()  # unacknowledged messages go back to their queue


def _rabbit_counts(broker: RabbitmqBroker, names: list[str]) -> dict[str, int]:
    """Message counts by passive declares, which create nothing."""
    counts: dict[str, int] = {}
    remaining = list(names)
    while remaining:
        with _rabbit_channel(broker) as channel:
            try:
                while remaining:
                    counts[remaining[0]] = channel.queue_declare(
                        remaining[0], passive=True
                    ).method.message_count
                    remaining.pop(0)
            except pika.exceptions.ChannelClosedByBroker as error:
                if error.reply_code != 404:
                    raise
                counts[remaining.pop(0)] = 0  # not declared yet, so empty; the next channel goes on
    return counts


def _rabbit_dead_letters(broker: RabbitmqBroker, queue: str, limit: int) -> list[dict[str, Any]]:
    described = []
    with _rabbit_channel(broker) as channel:
        try:
            for _ in range(limit):
                method, properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
                if method is None:
                    break
                described.append(_describe(body, queue=queue, dead_at=_x_death_time(properties)))
            if described:
                # Back in place before this returns: left to the channel's close, the broker put
                # them back a moment later, and a read right after this one found none.
                channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
                channel.queue_declare(xq_name(queue), passive=True)  # a round trip after the nack
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != 404:
                raise
    return described


def _x_death_time(properties: pika.BasicProperties) -> datetime | None:
    deaths = (properties.headers or {}).get("x-death") or []
    return deaths[0].get("time") if deaths else None


def _rabbit_requeue(broker: RabbitmqBroker, queue: str) -> int:
    moved = 0
    with _rabbit_channel(broker) as channel:
        try:
            dead_now = channel.queue_declare(xq_name(queue), passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == 404:
                return 0
            raise
        for _ in range(dead_now):  # not those that die again meanwhile
            method, _properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
            if method is None:
                break
            try:
                message = _fresh(body)
            except DecodeError:
                continue  # stays unacknowledged, so it goes back when the channel closes
            broker.enqueue(message)  # with confirm_delivery, RabbitMQ holds it before the dead copy goes
            channel.basic_ack(method.delivery_tag)
            moved += 1
    return moved


# --- The in-memory stub -------------------------------------------------------------------


def _stub(broker: dramatiq.Broker) -> StubBroker:
    if not isinstance(broker, StubBroker):
        raise TypeError(f"unsupported broker {type(broker).__name__}")
    return broker


def _stub_dead(broker: StubBroker, queue: str) -> list[Any]:
    # The stub files a message under the queue it was consumed from, the delay queue too.
    return [
        *broker.dead_letters_by_queue.get(queue, []),
        *broker.dead_letters_by_queue.get(dq_name(queue), []),
    ]


def _stub_dead_clear(broker: StubBroker, queue: str) -> None:
    for name in (queue, dq_name(queue)):
        broker.dead_letters_by_queue.pop(name, None)
