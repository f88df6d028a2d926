"""The Redis pub/sub channel layer (``core.layers``): groups reach every socket listening, in any
process; a socket that falls behind keeps at most ``capacity`` events; a subscription that
breaks is told to every socket listening through it, in one log line."""

import asyncio
import logging
import os

import pytest
from asgiref.sync import async_to_sync
from redis.exceptions import RedisError

from core.layers import RedisPubSubLayer
from tests.faults.harness import Redis

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the layer needs Redis (CI runs it)")


def layer(**config: object) -> RedisPubSubLayer:
    return RedisPubSubLayer(hosts=[os.environ["REDIS_URL"]], **config)


async def next_message(layer: RedisPubSubLayer, channel: str, timeout: float = 5) -> dict:
    return await asyncio.wait_for(layer.receive(channel), timeout=timeout)


async def nothing_for(layer: RedisPubSubLayer, channel: str, seconds: float = 0.3) -> "asyncio.Task[dict]":
    """Asserts nothing arrives on ``channel`` for a while; returns the receive, still waiting (a
    cancelled receive would mean the socket left, and its channel with it)."""
    receive = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(seconds)
    assert not receive.done(), receive.result()
    return receive


def test_a_group_reaches_each_member_and_only_them() -> None:
    server, other_process = layer(), layer()

    async def scenario() -> None:
        first, second, outsider = [await server.new_channel() for _ in range(3)]
        await server.group_add("order.1", first)
        await server.group_add("order.1", second)
        await server.group_add("order.2", outsider)
        await other_process.group_send("order.1", {"type": "market.event", "payload": {"n": 1}})
        assert await next_message(server, first) == {"type": "market.event", "payload": {"n": 1}}
        assert await next_message(server, second) == {"type": "market.event", "payload": {"n": 1}}
        outsider_hears = await nothing_for(server, outsider)

        await server.group_discard("order.1", first)
        await other_process.group_send("order.1", {"type": "market.event", "payload": {"n": 2}})
        assert (await next_message(server, second))["payload"] == {"n": 2}
        (await nothing_for(server, first)).cancel()

        await other_process.send(outsider, {"type": "market.event", "payload": {"to": "outsider"}})
        assert (await asyncio.wait_for(outsider_hears, 5))["payload"] == {"to": "outsider"}
        await server.flush()
        await other_process.flush()

    async_to_sync(scenario)()


def test_names_are_checked_as_channels_requires() -> None:
    async def scenario() -> None:
        with pytest.raises(TypeError):
            await layer().group_send("not a group name!", {"type": "market.event"})

    async_to_sync(scenario)()
    with pytest.raises(ValueError, match="one Redis URL"):
        RedisPubSubLayer(hosts="redis://127.0.0.1:6379/0")  # type: ignore[arg-type]


def test_a_socket_that_falls_behind_keeps_capacity_events_and_says_so_once(caplog) -> None:  # type: ignore[no-untyped-def]
    slow = layer(capacity=3)

    async def scenario() -> list[int]:
        channel = await slow.new_channel()
        await slow.group_add("lease.5", channel)
        for n in range(10):
            await slow.group_send("lease.5", {"type": "market.event", "payload": {"n": n}})
        await asyncio.sleep(0.3)  # all ten arrived (or were dropped) meanwhile
        kept = [(await next_message(slow, channel))["payload"]["n"] for _ in range(3)]
        (await nothing_for(slow, channel)).cancel()
        await slow.flush()
        return kept

    with caplog.at_level(logging.WARNING, logger="core.layers"):
        assert async_to_sync(scenario)() == [0, 1, 2]
    dropped = [r for r in caplog.records if "dropping events" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].exc_info is None


def test_a_broken_subscription_is_told_to_its_sockets_and_a_new_one_is_made(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    redis = Redis(tmp_path)
    private = RedisPubSubLayer(hosts=[redis.url])
    try:

        async def listening() -> tuple[str, str]:
            channels = (await private.new_channel(), await private.new_channel())
            for channel in channels:
                await private.group_add("providers", channel)
            return channels

        async def scenario() -> None:
            channels = await listening()
            waiting = [asyncio.ensure_future(private.receive(c)) for c in channels]
            await asyncio.sleep(0.1)
            await asyncio.get_running_loop().run_in_executor(None, redis.stop)
            for receive in waiting:  # every socket's receive fails, none waits forever
                with pytest.raises(RedisError):
                    await asyncio.wait_for(receive, timeout=5)
            with pytest.raises((RedisError, OSError)):  # while Redis is away, nobody can listen
                await listening()
            await asyncio.get_running_loop().run_in_executor(None, redis.start)
            channel, _ = await listening()  # a socket that reconnects listens again
            await private.group_send("providers", {"type": "market.event", "payload": {"back": True}})
            assert (await next_message(private, channel))["payload"] == {"back": True}
            await private.flush()

        with caplog.at_level(logging.WARNING, logger="core.layers"):
            async_to_sync(scenario)()
    finally:
        redis.stop()
    broke = [r for r in caplog.records if "subscription to Redis broke" in r.getMessage()]
    assert len(broke) == 1 and broke[0].exc_info is None  # one line, no traceback
