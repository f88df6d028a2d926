"""What a lease's change tells the world: the pages showing it, its provider's agent, and the
webhooks its client and provider subscribed to. Webhook deliveries are written in the caller's
transaction (so they exist exactly when the change does) and sent after it commits; pushes leave
after commit too (``core.realtime``)."""

from core import realtime
from leases.models import Lease
from notifications.services import webhook_publish

# events the provider's agent acts on, pushed to it over its socket
AGENT_EVENTS = frozenset({"lease.funded", "lease.closed", "lease.insufficient_funds", "lease.resumed"})


def lease_changed(lease: Lease) -> None:
    """Pages showing the lease refresh (after the transaction commits)."""
    realtime.publish(realtime.lease_group(lease.pk), {"type": "lease.changed", "lease": lease.pk})


def lease_event(lease: Lease, event: str) -> None:
    """A lease changed: the provider's agent hears it over its socket (when it has to act), and the
    webhooks of the client and the provider that subscribed receive it."""
    lease_changed(lease)
    if event in AGENT_EVENTS:
        realtime.publish(realtime.provider_group(lease.provider_id), {"type": event, "lease": lease.pk})
    webhook_publish(
        user_ids=[lease.client_id, lease.provider.user_id],
        event_type=event,
        data={
            "object": "lease",
            "id": lease.pk,
            "order": lease.order_id,
            "status": lease.status,
            "status_reason": lease.status_reason,
            "price_per_hour": lease.price_per_hour,
            "deposit": lease.deposit,
            "endpoints": lease.endpoints,
            "paid_to_provider": lease.paid_to_provider,
            "refunded_to_client": lease.refunded_to_client,
            "close_reason": lease.close_reason,
        },
    )
