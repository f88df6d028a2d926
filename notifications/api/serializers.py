from rest_framework import serializers

from core.api.fields import StrictCharField, StrictModelSerializer
from notifications.models import Notification, WebhookDelivery, WebhookEndpoint


class WebhookEndpointSerializer(StrictModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "events", "is_active", "created_at"]
        read_only_fields = ["id", "created_at"]


class WebhookEndpointSecretSerializer(WebhookEndpointSerializer):
    """With the signing secret: on creation, and when the secret is rolled."""

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookEndpointWriteSerializer(serializers.Serializer):
    url = StrictCharField(max_length=500)
    events = serializers.ListField(child=StrictCharField(max_length=60), min_length=1, max_length=20)
    description = StrictCharField(max_length=200, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class WebhookDeliverySerializer(StrictModelSerializer):
    endpoint = serializers.IntegerField(source="endpoint_id", read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event_id",
            "event_type",
            "payload",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
        ]


class NotificationSerializer(StrictModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "kind", "title", "body", "data", "created_at", "read_at"]
