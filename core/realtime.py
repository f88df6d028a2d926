"""Domain events to WebSocket groups: services call ``publish`` and the message leaves once the
transaction commits. A channel layer that is down never fails the write: consumers fall back to
polling, so a lost push only costs latency.

On embedded defaults the channel layer lives in the web process's memory, where a worker's events
could not reach it: there the worker sets ``REALTIME_RELAY_URL`` and hands each event, signed with
the secret key, to the web process (``relay_accept``), which sends it on."""

import logging

import requests
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core import signing
from django.db import transaction

logger = logging.getLogger(__name__)
RELAY_SALT = "core.realtime.relay"
RELAY_MAX_AGE = 60  # seconds a relayed event stays valid
RELAY_TIMEOUT = 2.0


def _send(group: str, payload: dict) -> None:
    if settings.REALTIME_RELAY_URL:
        _relay(group, payload)
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "market.event", "payload": payload})
    except Exception:  # the push is best effort; the agent's polling fills any gap
        logger.warning("push to %s failed", group, exc_info=True)


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
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(event["group"], {"type": "market.event", "payload": event["payload"]})
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
