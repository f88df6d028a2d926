"""With a shared channel layer (Redis) each process pushes its events from one event loop of its
own: in the order they were published, and without making the write wait or fail when Redis is
slow or gone."""

import asyncio
import os
import socket
import time

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

from core import realtime
from core.layers import RedisPubSubLayer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the publisher serves the Redis channel layer"),
]


def test_events_leave_in_the_order_they_were_published() -> None:
    layer = RedisPubSubLayer(hosts=[os.environ["REDIS_URL"]], capacity=500)

    async def listen_while_published() -> list[dict]:
        channel = await layer.new_channel()
        await layer.group_add("order.4242", channel)
        for n in range(200):
            realtime._publisher.submit(layer, "order.4242", {"type": "bid.changed", "n": n})
        return [(await asyncio.wait_for(layer.receive(channel), timeout=5))["payload"] for _ in range(200)]

    assert [event["n"] for event in async_to_sync(listen_while_published)()] == list(range(200))


def test_a_channel_layer_that_hangs_neither_fails_nor_slows_the_write(settings, caplog) -> None:  # type: ignore[no-untyped-def]
    from channels.layers import channel_layers

    hung = socket.create_server(("127.0.0.1", 0))  # takes connections, never answers
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "core.layers.RedisPubSubLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{hung.getsockname()[1]}"]},
        }
    }
    channel_layers.backends.clear()
    try:
        began = time.perf_counter()
        with transaction.atomic():
            realtime.publish("lease.1", {"type": "lease.changed", "lease": 1})
        assert time.perf_counter() - began < 0.5  # the push is handed over, not waited for
        deadline = time.monotonic() + realtime.SEND_TIMEOUT + 3
        while "push to lease.1 failed" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "push to lease.1 failed" in caplog.text  # given up after SEND_TIMEOUT, and said so
    finally:
        channel_layers.backends.clear()
        hung.close()
