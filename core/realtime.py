"""Domain events to WebSocket groups: services call ``publish`` and the message leaves once the
transaction commits. A channel layer that is down never fails the write: consumers fall back to
polling, so a lost push only costs latency.

A shared layer (Redis) is sent to from one event loop per process, in a thread of its own: the
write that published does not wait for the push, the loop keeps its connections open between
events, and events leave in the order they were published. The in-memory layer is sent to from
the caller's side, on the server's own loop, where its consumers listen.

On embedded defaults the channel layer lives in the web process's memory, where a worker's events
could not reach it: there the worker sets ``REALTIME_RELAY_URL`` and hands each event, signed with
the secret key, to the web process (``relay_accept``), which sends it on."""

import asyncio
import logging
import os
import threading

import requests
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core import signing
from django.db import transaction
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)
RELAY_SALT = "core.realtime.relay"
RELAY_MAX_AGE = 60  # seconds a relayed event stays valid
RELAY_TIMEOUT = 2.0
SEND_TIMEOUT = 2.0  # seconds one push may take before it is given up
BACKLOG = 10_000  # events waiting for a slow layer, beyond which new ones are dropped


def _send(group: str, payload: dict) -> None:
    if settings.REALTIME_RELAY_URL:
        _relay(group, payload)
    else:
        _to_layer(group, payload)


EVENT = "market.event"  # the channel layer message a domain event travels in (consumers' market_event)


def _message(payload: dict) -> dict:
    return {"type": EVENT, "payload": payload}


def _to_layer(group: str, payload: dict) -> None:
    """Hand the event to this process's channel layer: a shared one through the publisher's loop,
    the in-memory one on the server's own loop."""
    layer = get_channel_layer()
    if layer is None:
        return
    if not isinstance(layer, InMemoryChannelLayer):
        _publisher.submit(layer, group, payload)
        return
    try:
        async_to_sync(layer.group_send)(group, _message(payload))
    except Exception:  # the push is best effort; pages' polling fills any gap
        logger.warning("push to %s failed", group, exc_info=True)


class _Publisher:
    """This process's sender to a shared channel layer: an event loop in a daemon thread, started
    on first use (and again in a forked child, which inherits no threads), draining a queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None

    def submit(self, layer: object, group: str, payload: dict) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._start()
            loop, queue = self._loop, self._queue
        assert loop is not None and queue is not None
        loop.call_soon_threadsafe(self._enqueue, queue, (layer, group, payload))

    def _start(self) -> None:
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._queue = asyncio.Queue()
        threading.Thread(
            target=self._loop.run_until_complete,
            args=(self._drain(self._queue),),
            name="realtime-publisher",
            daemon=True,
        ).start()

    @staticmethod
    def _enqueue(queue: asyncio.Queue, item: tuple) -> None:
        if queue.qsize() >= BACKLOG:
            logger.warning("push to %s dropped: %d events wait for the channel layer", item[1], BACKLOG)
            return
        queue.put_nowait(item)

    @staticmethod
    async def _drain(queue: asyncio.Queue) -> None:
        while True:
            layer, group, payload = await queue.get()
            try:
                await asyncio.wait_for(layer.group_send(group, _message(payload)), SEND_TIMEOUT)
            except (RedisError, OSError, TimeoutError) as exc:  # the layer is down: said, not a bug
                logger.warning("push to %s failed: the channel layer does not answer (%s)", group, exc)
            except Exception:  # best effort, as above
                logger.warning("push to %s failed", group, exc_info=True)


_publisher = _Publisher()


def _relay(group: str, payload: dict) -> None:
    body = signing.dumps({"group": group, "payload": payload}, salt=RELAY_SALT, compress=True)
    try:
        response = requests.post(
            settings.REALTIME_RELAY_URL, data=body, headers={"Content-Type": "text/plain"}, timeout=RELAY_TIMEOUT
        )
        response.raise_for_status()
    except requests.RequestException:  # best effort, as the channel layer itself
        logger.warning("relaying the push to %s failed", group, exc_info=True)


def relay_accept(body: str) -> bool:
    """Send on an event a worker relayed; False when it is not signed with our key, or too old."""
    try:
        event = signing.loads(body, salt=RELAY_SALT, max_age=RELAY_MAX_AGE)
    except signing.BadSignature:
        return False
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("group"), str)
        or not isinstance(event.get("payload"), dict)
    ):
        return False
    _to_layer(event["group"], event["payload"])
    return True


def publish(group: str, payload: dict) -> None:
    """Send ``payload`` to the sockets in ``group`` after the current transaction commits."""
    transaction.on_commit(lambda: _send(group, payload))


def provider_group(provider_id: int) -> str:
    return f"provider.{provider_id}"


def order_group(order_id: int) -> str:
    """The web pages watching an order (its client's, and providers' that bid)."""
    return f"order.{order_id}"


def lease_group(lease_id: int) -> str:
    """The web pages watching a lease (its client's and its provider's)."""
    return f"lease.{lease_id}"


PROVIDERS_GROUP = "providers"
SHELL_RELAY = "shell.relay"  # the channel layer message a client's shell travels in, to and from its agent
