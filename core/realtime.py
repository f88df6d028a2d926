"""Domain events to WebSocket groups: services call ``publish`` and the message leaves once the
transaction commits. A channel layer that is down never fails the write: consumers fall back to
polling, so a lost push only costs latency."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def _send(group: str, payload: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "market.event", "payload": payload})
    except Exception:  # the push is best effort; the agent's polling fills any gap
        logger.warning("push to %s failed", group, exc_info=True)


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
