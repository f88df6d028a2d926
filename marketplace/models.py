from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PricingRule(models.TextChoices):
    FIRST_PRICE = "first_price", "First price (the winner is paid its bid)"
    SECOND_PRICE = "second_price", "Second price (the winner is paid the next-lowest eligible bid)"


class Verification(models.TextChoices):
    NONE = "none", "None"
    VERIFIED = "verified", "Verified GPUs only"


class Order(models.Model):
    """A client's workload looking for a provider: open for bids until its deadline."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        AWARDED = "awarded", "Awarded"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"

    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders")
    name = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    status_reason = models.CharField(max_length=200, blank=True)

    # The workload.
    image = models.CharField(max_length=512)
    command = models.JSONField(default=list, blank=True)
    args = models.JSONField(default=list, blank=True)
    env = models.JSONField(default=list, blank=True, help_text="[{name, value, secret}]")
    ports = models.JSONField(default=list, blank=True, help_text="[{port, protocol}]")
    volumes = models.JSONField(
        default=list, blank=True, help_text="Persistent volumes: [{name, mount, size_gib, storage_class}]"
    )

    # What it needs.
    gpu_count = models.PositiveIntegerField()
    gpu_models = models.ManyToManyField("providers.GpuModel", related_name="+")
    min_vram_gib = models.PositiveIntegerField(null=True, blank=True)
    cpu_cores = models.PositiveIntegerField()
    memory_gib = models.PositiveIntegerField()
    storage_gib = models.PositiveIntegerField()
    shm_gib = models.PositiveIntegerField(
        default=0, help_text="Shared memory (/dev/shm) in GiB, out of memory_gib; 0: the runtime's default."
    )
    duration_hours = models.PositiveIntegerField(
        help_text="How long it runs; for an open-ended order, the hours its first deposit pays for."
    )
    open_ended = models.BooleanField(
        default=False, help_text="Runs while funded (as on Akash): no end but its deposit's, topped up."
    )

    # The auction.
    max_price_per_hour = models.BigIntegerField()
    pricing_rule = models.CharField(max_length=16, choices=PricingRule.choices, default=PricingRule.FIRST_PRICE)
    verification = models.CharField(max_length=16, choices=Verification.choices, default=Verification.NONE)
    min_reputation = models.PositiveSmallIntegerField(
        default=0, help_text="Only providers whose reputation (0 to 1000) is at least this may bid."
    )
    placement = models.JSONField(
        default=dict,
        blank=True,
        help_text="Provider attributes a bidder must have: region, and any other of its attributes.",
    )
    bid_window_seconds = models.PositiveIntegerField(default=120)
    created_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True, help_text="When it left the open state.")
    workload_file = models.JSONField(
        default=dict,
        blank=True,
        help_text="The Akash SDL file the order came from (format, version, text with secret values hidden, "
        "what was made of it). Empty: none.",
    )
    authorization = models.JSONField(
        default=dict,
        blank=True,
        help_text="The standing authorization the client signed for the deadline's award (chain.terms): "
        "signer, signature, ceilings and expiry. Empty: none signed.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(max_price_per_hour__gt=0), name="order_max_price_positive"),
            models.CheckConstraint(condition=Q(gpu_count__gte=1) & Q(gpu_count__lte=64), name="order_gpu_count_range"),
            models.CheckConstraint(
                condition=Q(duration_hours__gte=1) & Q(duration_hours__lte=720), name="order_duration_range"
            ),
            models.CheckConstraint(condition=Q(deadline__gt=F("created_at")), name="order_deadline_after_creation"),
        ]
        indexes = [
            models.Index(fields=["status", "deadline"], name="order_status_deadline"),
            models.Index(fields=["client", "-created_at"], name="order_client_created"),
        ]

    def __str__(self) -> str:
        return f"order {self.pk} ({self.status})"


class Bid(models.Model):
    """A provider's price per hour for the whole order."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        WON = "won", "Won"
        LOST = "lost", "Lost"
        WITHDRAWN = "withdrawn", "Withdrawn"
        EXPIRED = "expired", "Expired"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="bids")
    provider = models.ForeignKey("providers.Provider", on_delete=models.CASCADE, related_name="bids")
    gpu_model = models.ForeignKey("providers.GpuModel", on_delete=models.PROTECT, related_name="+")
    price_per_hour = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    status_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["price_per_hour", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "provider"], condition=Q(status="open"), name="bid_one_open_per_provider"
            ),
            models.CheckConstraint(condition=Q(price_per_hour__gt=0), name="bid_price_positive"),
        ]
        indexes = [models.Index(fields=["order", "status", "price_per_hour"], name="bid_order_status_price")]

    def __str__(self) -> str:
        return f"bid {self.pk} on order {self.order_id} ({self.status})"

    @property
    def rank_key(self) -> str:
        """The bid's place in ``Meta.ordering`` as text that sorts the same way (cheapest, then
        first come): pages that insert a live bid among the listed ones compare these."""
        at = (self.created_at - EPOCH) // timedelta(microseconds=1)
        return f"{self.price_per_hour:016d}.{at:017d}.{self.pk:012d}"
