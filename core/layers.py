"""The shared channel layer: Redis publish/subscribe.

What goes through the layer here are pushes: a bid for an open order page, a lease's new state,
a new order for the providers' agents. A page or an agent that misses one loses nothing but
latency (pages refresh, agents poll), so delivery at most once is what they need, and Redis
pub/sub gives it for one ``PUBLISH`` an event. channels_redis's default layer keeps each socket's
messages in a sorted set instead: a group send took four round trips and a Lua script, and every
message received four more, which made the channel layer the busiest part of a bid's path.

Each event loop (the server's, the publisher thread's) keeps one subscription connection: a
group's sockets in this process share the group's Redis channel, and a message is queued for
each of them. Beyond channels_redis.pubsub this layer bounds each socket's queue (``capacity``,
the rest dropped and said once a minute), and tells every socket listening through a
subscription that broke: their ``receive`` raises, ``core.channels.LiveConsumer`` closes them with
1012 and clients reconnect, rather than missing events in silence.

One Redis server (``hosts``, a list of one URL, like channels_redis's). Messages are JSON.
"""

import asyncio
import json
import logging
import types
import uuid
from contextlib import suppress
from typing import Any

from channels.layers import BaseChannelLayer
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from core.logs import SparseWarnings

logger = logging.getLogger(__name__)


class RedisPubSubLayer(BaseChannelLayer):
    extensions = ["groups", "flush"]

    def __init__(self, hosts: list[str], prefix: str = "gpumarket", capacity: int = 100, **kwargs: Any) -> None:
        super().__init__(capacity=capacity, **kwargs)
        if isinstance(hosts, str) or len(hosts) != 1:
            raise ValueError("hosts: a list of one Redis URL")
        self.url = hosts[0]
        self.prefix = prefix
        self._links: dict[asyncio.AbstractEventLoop, _Link] = {}
        self.warnings = SparseWarnings(logger)  # an outage or a slow socket: a line a minute

    # names on the Redis side
    def _group_key(self, group: str) -> str:
        return f"{self.prefix}:group:{group}"

    def _channel_key(self, channel: str) -> str:
        return f"{self.prefix}:channel:{channel}"

    def _link(self) -> "_Link":
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None:
            link = self._links[loop] = _Link(self)
            _close_with(loop, self)
        return link

    # the channel layer's interface
    async def new_channel(self, prefix: str = "specific.") -> str:
        channel = f"{prefix}{uuid.uuid4().hex}"
        await self._link().open(channel)
        return channel

    async def send(self, channel: str, message: dict) -> None:
        self.require_valid_channel_name(channel)
        await self._link().publish(self._channel_key(channel), message)

    async def receive(self, channel: str) -> dict:
        self.require_valid_channel_name(channel)
        return await self._link().receive(channel)

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._link().join(self._group_key(group), channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._link().leave(self._group_key(group), channel)

    async def group_send(self, group: str, message: dict) -> None:
        self.require_valid_group_name(group)
        await self._link().publish(self._group_key(group), message)

    async def flush(self) -> None:
        link = self._links.pop(asyncio.get_running_loop(), None)
        if link is not None:
            await link.close()


class _Link:
    """One event loop's side of the layer: a client to publish, one subscription, and a queue
    for each channel of this loop."""

    def __init__(self, layer: RedisPubSubLayer) -> None:
        self.layer = layer
        # a pooled connection gone stale (Redis restarted) is retried once; the subscription's
        # is never retried: a reconnect would hide the events lost meanwhile
        self.redis = aioredis.Redis.from_url(layer.url, retry=Retry(NoBackoff(), 1))
        self.listener = aioredis.Redis.from_url(layer.url, retry=Retry(NoBackoff(), 0))
        self.queues: dict[str, asyncio.Queue] = {}
        self.members: dict[str, set[str]] = {}  # a Redis channel: the channels it feeds here
        self.pubsub: Any = None
        self.reader: asyncio.Task | None = None
        self.lock = asyncio.Lock()  # subscriptions change one at a time

    async def publish(self, key: str, message: dict) -> None:
        await self.redis.publish(key, json.dumps(message, separators=(",", ":")))

    async def open(self, channel: str) -> None:
        self.queues.setdefault(channel, asyncio.Queue(self.layer.capacity))
        await self.join(self.layer._channel_key(channel), channel)

    async def receive(self, channel: str) -> dict:
        if channel not in self.queues:
            await self.open(channel)
        queue = self.queues[channel]
        try:
            item = await queue.get()
        except asyncio.CancelledError:  # the consumer is leaving: so is its channel
            await self._drop(channel)
            raise
        if isinstance(item, BaseException):
            self.queues.pop(channel, None)
            raise item
        return json.loads(item)

    async def join(self, key: str, channel: str) -> None:
        async with self.lock:
            members = self.members.setdefault(key, set())
            members.add(channel)
            if len(members) > 1:
                return
            try:
                if self.pubsub is None:
                    self.pubsub = self.listener.pubsub()
                await self.pubsub.subscribe(key)
            except BaseException:
                members.discard(channel)
                if not members:
                    del self.members[key]
                raise
            if self.reader is None or self.reader.done():
                self.reader = asyncio.ensure_future(self._read(self.pubsub))

    async def leave(self, key: str, channel: str) -> None:
        async with self.lock:
            members = self.members.get(key)
            if members is None or channel not in members:
                return
            members.discard(channel)
            if members or self.pubsub is None:
                return
            del self.members[key]
            with suppress(RedisError, OSError):  # a broken subscription is the reader's to report
                await self.pubsub.unsubscribe(key)

    async def _drop(self, channel: str) -> None:
        self.queues.pop(channel, None)
        for key in [k for k, members in self.members.items() if channel in members]:
            await self.leave(key, channel)

    async def _read(self, pubsub: Any) -> None:
        try:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is not None and message["type"] == "message":
                    self._deliver(message["channel"].decode(), message["data"])
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            self.layer.warnings.warning(
                "lost", "live updates: the subscription to Redis broke (%s); closing its sockets", exc
            )
            await self._fail(pubsub, exc)

    def _deliver(self, key: str, data: bytes) -> None:
        for channel in self.members.get(key, ()):
            queue = self.queues.get(channel)
            if queue is None:
                continue
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                self.layer.warnings.warning(
                    "full", "live updates: a socket is %d events behind; dropping events", queue.maxsize
                )

    async def _fail(self, pubsub: Any, exc: BaseException) -> None:
        """Every channel listening through this subscription hears of its end, once."""
        if self.pubsub is not pubsub:
            return
        error = exc if isinstance(exc, RedisError) else RedisConnectionError(str(exc))
        listening = {channel for members in self.members.values() for channel in members}
        self.pubsub, self.members = None, {}
        for channel in listening:
            queue = self.queues.get(channel)
            if queue is None:
                continue
            while not queue.empty():  # what it had not read yet may be missing events in between
                queue.get_nowait()
            queue.put_nowait(error)
        with suppress(Exception):
            await pubsub.aclose()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self.reader
        if self.pubsub is not None:
            with suppress(Exception):
                await self.pubsub.aclose()
        for client in (self.redis, self.listener):
            with suppress(Exception):
                await client.aclose(close_connection_pool=True)
        self.queues, self.members, self.pubsub, self.reader = {}, {}, None, None


def _close_with(loop: asyncio.AbstractEventLoop, layer: RedisPubSubLayer) -> None:
    """Close a loop's connections with the loop (``async_to_sync`` makes loops and closes them)."""
    original = loop.close

    def close(self: asyncio.AbstractEventLoop) -> None:
        link = layer._links.pop(loop, None)
        if link is not None and not self.is_running():
            with suppress(Exception):
                self.run_until_complete(link.close())
        self.close = original  # type: ignore[method-assign]  # the loop's own close, put back
        original()

    loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]  # this loop's close only
