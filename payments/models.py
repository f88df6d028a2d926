from django.conf import settings
from django.db import models
from django.db.models import Q


class CardTopUp(models.Model):
    """A client's balance top-up by card: one Stripe PaymentIntent, credited once when it succeeds."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for the card"
        SUCCEEDED = "succeeded", "Credited"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="card_top_ups")
    payment_intent = models.CharField(max_length=255, unique=True)
    amount_cents = models.PositiveBigIntegerField(help_text="What the card is charged, US cents (Stripe's unit).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    credited = models.BigIntegerField(default=0, help_text="Micro-dollars credited to the balance.")
    refunded = models.BigIntegerField(default=0, help_text="Micro-dollars refunded to the card, debited back.")
    dispute_amount = models.BigIntegerField(default=0, help_text="Micro-dollars under an open dispute.")
    disputed = models.BigIntegerField(default=0, help_text="Of those, what the balance still held and is now held.")
    shortfall = models.BigIntegerField(
        default=0, help_text="Refunded or disputed money the balance no longer held: the client owes it."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="card_top_up_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.payment_intent} ({self.status})"


class StripeEvent(models.Model):
    """A Stripe webhook event applied, recorded by id in the transaction that applied it: each is
    applied once, and one whose application failed is not recorded (its next delivery applies it)."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"
