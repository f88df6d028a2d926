from rest_framework import serializers

from core.api.fields import StrictCharField, StrictModelSerializer
from payments.models import CardTopUp


class TopUpCreateSerializer(serializers.Serializer):
    amount_cents = serializers.IntegerField(min_value=1, max_value=10**9, help_text="US cents to charge the card.")


class CardTopUpSerializer(StrictModelSerializer):
    class Meta:
        model = CardTopUp
        fields = [
            "id",
            "payment_intent",
            "amount_cents",
            "status",
            "credited",
            "refunded",
            "dispute_amount",
            "disputed",
            "shortfall",
            "created_at",
            "updated_at",
        ]


class TopUpCreatedSerializer(CardTopUpSerializer):
    client_secret = StrictCharField(help_text="For Stripe.js's Payment Element on the page.")
    publishable_key = StrictCharField()

    class Meta(CardTopUpSerializer.Meta):
        fields = [*CardTopUpSerializer.Meta.fields, "client_secret", "publishable_key"]


class DemoCreditCreateSerializer(serializers.Serializer):
    amount_cents = serializers.IntegerField(min_value=1, max_value=10**9, help_text="US cents to add, no card charged.")


class DemoCreditSerializer(serializers.Serializer):
    credited_cents = serializers.IntegerField(required=False, help_text="What this request added.")
    left_cents = serializers.IntegerField(help_text="Demo credit this account may still add.")
