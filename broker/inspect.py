"""What the broker holds: when the Redis behind Celery started, and which task
messages it still has. The sweep needs both to tell a job whose message Redis
lost (restarted without its data) from one merely waiting in a long backlog.

This knows Celery's Redis transport (kombu): each queue is a Redis list named
after it, plus one list per priority step (``name\\x06\\x163`` …); a message a
worker has taken but not yet acknowledged (running, or held for a retry's
countdown) sits in the ``unacked`` hash until the ack. Messages are JSON with
the task id in ``headers.id`` (Celery's message protocol 2)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel

# Lists are read in pages: a backlog of many thousand messages is never one reply.
_PAGE = 1000


def broker_started_at(client: redis.Redis) -> datetime:
    """When this Redis process started, on our clock (Redis counts whole seconds)."""
    uptime = int(client.info("server")["uptime_in_seconds"])
    return datetime.now(UTC) - timedelta(seconds=uptime)


def queue_keys(queue_names: Iterable[str]) -> list[str]:
    """The Redis lists that hold these queues' messages, every priority step included."""
    return [name if step == 0 else f"{name}{Channel.sep}{step}" for name in queue_names for step in PRIORITY_STEPS]


def pending_task_ids(client: redis.Redis, queue_names: Iterable[str]) -> set[str]:
    """Task ids of the messages still waiting in these queues or delivered but
    not yet acknowledged (any queue).

    Lists are read before the hash: a message a worker takes meanwhile moves
    from a list into the hash and is still seen. (One that moves back — a
    worker's warm shutdown restoring its unacked messages — can be missed; the
    sweep then publishes a spare copy, which the worker skips by its task id.)"""
    ids: set[str] = set()
    for key in queue_keys(queue_names):
        ids.update(filter(None, map(_task_id, _list_items(client, key))))
    for _tag, raw in client.hscan_iter(Channel.unacked_key, count=_PAGE):
        # The hash holds [message, exchange, routing key].
        try:
            task_id = _task_id(json.loads(raw)[0])
        except (ValueError, IndexError, TypeError):
            continue
        if task_id:
            ids.add(task_id)
    return ids


def _list_items(client: redis.Redis, key: str) -> Iterator[bytes | str]:
    # Producers push at the head and workers pop at the tail: neither moves
    # an unread message below the page being read, so paging skips none.
    start = 0
    while page := client.lrange(key, start, start + _PAGE - 1):
        yield from page
        start += len(page)


def _task_id(message: bytes | str | dict) -> str | None:
    try:
        body = json.loads(message) if isinstance(message, bytes | str) else message
        return str(body["headers"]["id"])
    except (ValueError, KeyError, TypeError):
        return None  # not a Celery protocol-2 task message: nothing to match
