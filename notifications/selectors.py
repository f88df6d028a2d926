"""Reads for webhooks."""

from django.db.models import QuerySet

from core.models import User
from notifications.models import Notification, WebhookDelivery, WebhookEndpoint


def endpoints_for(*, user: User) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(user=user)


def deliveries_for(*, user: User, endpoint_id: int) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(endpoint__user=user, endpoint_id=endpoint_id).order_by("-id")


def notifications_for(*, user: User, unread: bool = False) -> QuerySet[Notification]:
    rows = Notification.objects.filter(user=user)
    return rows.filter(read_at__isnull=True) if unread else rows
