"""Webhooks for integrators: endpoints, events, signed deliveries with retries.

``webhook_publish`` is what the rest of the marketplace calls: it records one delivery per
matching endpoint in the caller's transaction, and the deliveries leave once it commits (Celery).
A delivery is POSTed as JSON with ``GPUMarket-Signature`` (see ``notifications.signing``); a 2xx
answer is success, anything else is retried with backoff (1 min, 5 min, 30 min, 2 h, 6 h, 12 h,
24 h), then given up. The delivery log is in the API.
"""

import fnmatch
import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from core import queueing
from core.errors import Conflict, NotFound, ValidationFailed
from core.models import User
from notifications import signing, tasks
from notifications.models import Notification, WebhookDelivery, WebhookEndpoint, new_secret
from notifications.targets import TargetRefused, check_url

logger = logging.getLogger(__name__)

EVENT_TYPES = (
    "order.created",
    "order.awarded",
    "order.cancelled",
    "order.expired",
    "lease.funded",
    "lease.running",
    "lease.topped_up",
    "lease.insufficient_funds",
    "lease.resumed",
    "lease.closed",
    "lease.compensated",
    "balance.low",
)
PING = "webhook.ping"
MAX_ENDPOINTS = 10
RETRY_DELAYS = (60, 300, 1800, 7200, 21600, 43200, 86400)
USER_AGENT = "GPUMarket-Webhooks/1"


def _events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events or len(events) > 20:
        raise ValidationFailed("Subscribe to 1 to 20 events.", fields={"events": ["A list of event types."]})
    known = []
    for event in events:
        if not isinstance(event, str) or not any(fnmatch.fnmatchcase(t, event) for t in EVENT_TYPES):
            raise ValidationFailed(
                f"Unknown event {event!r}.",
                fields={"events": [f"Event types: {', '.join(EVENT_TYPES)}; or a pattern such as lease.*."]},
            )
        known.append(event)
    return sorted(set(known))


def _url(url: Any) -> str:
    if not isinstance(url, str) or len(url) > 500:
        raise ValidationFailed("Invalid URL.", fields={"url": ["At most 500 characters."]})
    try:
        check_url(url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE_TARGETS)
    except TargetRefused as exc:
        raise ValidationFailed(str(exc), code="webhook_target_refused", fields={"url": [str(exc)]}) from exc
    return url


def webhook_endpoint_create(*, user: User, url: str, events: list[str], description: str = "") -> WebhookEndpoint:
    url, events = _url(url), _events(events)
    with transaction.atomic():
        User.objects.select_for_update().get(pk=user.pk)  # count and insert as one step
        if WebhookEndpoint.objects.filter(user=user).count() >= MAX_ENDPOINTS:
            raise Conflict(f"At most {MAX_ENDPOINTS} webhook endpoints per account.", code="too_many_endpoints")
        return WebhookEndpoint.objects.create(user=user, url=url, events=events, description=description[:200])


def webhook_endpoint_get(*, user: User, endpoint_id: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(user=user, pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


def webhook_endpoint_update(*, user: User, endpoint_id: int, **changes: Any) -> WebhookEndpoint:
    endpoint = webhook_endpoint_get(user=user, endpoint_id=endpoint_id)
    if "url" in changes:
        endpoint.url = _url(changes["url"])
    if "events" in changes:
        endpoint.events = _events(changes["events"])
    if "description" in changes:
        endpoint.description = str(changes["description"])[:200]
    if "is_active" in changes:
        endpoint.is_active = bool(changes["is_active"])
    endpoint.save()
    return endpoint


def webhook_endpoint_delete(*, user: User, endpoint_id: int) -> None:
    webhook_endpoint_get(user=user, endpoint_id=endpoint_id).delete()


def webhook_secret_roll(*, user: User, endpoint_id: int) -> WebhookEndpoint:
    endpoint = webhook_endpoint_get(user=user, endpoint_id=endpoint_id)
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret"])
    return endpoint


def _enqueue(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:  # the broker down: the retry sweeper sends it
        queueing.send(tasks.deliver_webhook, delivery_id)


def _envelope(event_id: str, event_type: str, data: dict, now: datetime) -> dict:
    return {"id": event_id, "type": event_type, "created": int(now.timestamp()), "data": data}


def webhook_publish(*, user_ids: list[int], event_type: str, data: dict) -> int:
    """Record ``event_type`` for the subscribed endpoints of ``user_ids``; they are sent after commit."""
    endpoints = [
        e
        for e in WebhookEndpoint.objects.filter(user_id__in=set(user_ids), is_active=True)
        if any(fnmatch.fnmatchcase(event_type, pattern) for pattern in e.events)
    ]
    return len(_deliveries(endpoints, event_type, data))


def _deliveries(endpoints: list[WebhookEndpoint], event_type: str, data: dict) -> list[WebhookDelivery]:
    """One event for these endpoints: recorded now, sent once the transaction commits."""
    if not endpoints:
        return []
    now = timezone.now()
    event_id = f"evt_{uuid.uuid4().hex}"
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint,
            event_id=event_id,
            event_type=event_type,
            payload=_envelope(event_id, event_type, data, now),
            next_attempt_at=now,
        )
        for endpoint in endpoints
    )
    ids = [d.pk for d in deliveries]
    transaction.on_commit(lambda: _enqueue(ids))
    return deliveries


def webhook_ping(*, user: User, endpoint_id: int) -> WebhookDelivery:
    """Send a ``webhook.ping`` event to one endpoint, to check the receiver."""
    endpoint = webhook_endpoint_get(user=user, endpoint_id=endpoint_id)
    [delivery] = _deliveries([endpoint], PING, {"endpoint": endpoint.pk})
    return delivery


def webhook_deliver(*, delivery_id: int, now: datetime | None = None) -> WebhookDelivery | None:
    """Send one delivery if it is due; record the outcome and when to try again."""
    now = now or timezone.now()
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .select_related("endpoint")
            .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if delivery is None:
            return None  # sent, given up, not due, or another worker has it
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(seconds=timeout + 30)  # claimed while it is in flight
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    status_code, error = None, ""
    try:
        if not endpoint.is_active:
            raise TargetRefused("the endpoint is disabled")
        check_url(endpoint.url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE_TARGETS)
        response = requests.post(
            endpoint.url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                signing.HEADER: signing.sign(body, endpoint.secret, int(now.timestamp())),
                "GPUMarket-Event-Id": delivery.event_id,
                "GPUMarket-Event-Type": delivery.event_type,
            },
            timeout=timeout,
            allow_redirects=False,
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except TargetRefused as exc:
        error = f"refused: {exc}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"
    return _record(delivery_id=delivery.pk, status_code=status_code, error=error, now=now)


def _record(*, delivery_id: int, status_code: int | None, error: str, now: datetime) -> WebhookDelivery:
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        delivery.last_status_code, delivery.last_error = status_code, error[:300]
        if not error:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
                WebhookDelivery.Status.SUCCEEDED,
                now,
                None,
            )
        elif delivery.attempts >= min(settings.WEBHOOK_MAX_ATTEMPTS, len(RETRY_DELAYS) + 1):
            delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
        else:
            delivery.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS[delivery.attempts - 1])
        delivery.save(update_fields=["last_status_code", "last_error", "status", "delivered_at", "next_attempt_at"])
    return delivery


def webhooks_send_due(*, now: datetime | None = None, limit: int = 200) -> int:
    """Send every pending delivery whose time has come (retries, and any the broker lost)."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(1 for delivery_id in due if webhook_deliver(delivery_id=delivery_id, now=now) is not None)


# --- in-app notifications and email -------------------------------------------------------------
def notify(*, user: User, kind: str, title: str, body: str, data: dict, webhook: bool = True) -> Notification:
    """Tell a user: in the app, by email (after commit, when the user has an address), and to the
    webhooks subscribed to ``kind`` (unless the caller publishes the event itself)."""
    notification = Notification.objects.create(user=user, kind=kind, title=title[:200], body=body, data=data)
    if user.email:
        transaction.on_commit(lambda: _email(user.email, title, body))
    if webhook and kind in EVENT_TYPES:
        webhook_publish(user_ids=[user.pk], event_type=kind, data=data)
    return notification


def _email(address: str, title: str, body: str) -> None:
    try:
        send_mail(title, body, settings.DEFAULT_FROM_EMAIL, [address])
    except Exception:  # mail is best effort: the notification is in the app either way
        logger.warning("could not email %s", address, exc_info=True)


def notification_read(*, user: User, notification_id: int) -> Notification:
    notification = Notification.objects.filter(user=user, pk=notification_id).first()
    if notification is None:
        raise NotFound("No such notification.")
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    return notification
