"""On embedded defaults the channel layer lives in the web process: a worker's live events reach it
through the signed relay endpoint (what ``make run`` sets up for its Celery worker)."""

import asyncio

import pytest
import requests
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.core import signing

from core import realtime

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_workers_event_reaches_the_web_processs_sockets(live_server, settings) -> None:  # type: ignore[no-untyped-def]
    settings.REALTIME_RELAY_ACCEPT = True
    settings.REALTIME_RELAY_URL = f"{live_server.url}/internal/realtime/"  # as the worker has it

    async def listen_while_published() -> dict:  # a socket of the web process, listening
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add("lease.77", channel)
        await sync_to_async(realtime.publish)("lease.77", {"type": "lease.changed", "lease": 77})
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    message = async_to_sync(listen_while_published)()
    assert message == {"type": "market.event", "payload": {"type": "lease.changed", "lease": 77}}


def test_the_relay_takes_only_fresh_events_signed_with_our_key(live_server, settings) -> None:  # type: ignore[no-untyped-def]
    url = f"{live_server.url}/internal/realtime/"
    event = {"group": "lease.1", "payload": {"type": "lease.changed"}}
    settings.REALTIME_RELAY_ACCEPT = False  # a deployment with a shared channel layer has no relay
    off = requests.post(url, data=signing.dumps(event, salt=realtime.RELAY_SALT), timeout=5)
    assert off.status_code == 404 and off.json()["error"]["code"] == "not_found"

    settings.REALTIME_RELAY_ACCEPT = True
    good = signing.dumps(event, salt=realtime.RELAY_SALT)
    assert requests.post(url, data=good, timeout=5).status_code == 200
    for body in (
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),  # tampered
        signing.dumps(event, salt="another purpose"),
        signing.dumps(event, salt=realtime.RELAY_SALT, key="not our secret key"),
        signing.dumps({"group": 7, "payload": {}}, salt=realtime.RELAY_SALT),
        "",
    ):
        refused = requests.post(url, data=body, timeout=5)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "bad_signature", body
    assert requests.get(url, timeout=5).status_code == 405
