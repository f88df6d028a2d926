from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class GpuModel(models.Model):
    """A catalog entry. Rows are kept in step with ``protocol.catalog`` after every migrate."""

    id = models.SlugField(primary_key=True, max_length=40)
    name = models.CharField(max_length=80)
    vendor = models.CharField(max_length=40)
    architecture = models.CharField(max_length=40)
    vram_gib = models.PositiveIntegerField()
    memory_type = models.CharField(max_length=20)
    interface = models.CharField(max_length=20)
    memory_bandwidth_gbps = models.PositiveIntegerField()
    int8_tops = models.DecimalField(max_digits=8, decimal_places=1)
    bf16_tflops = models.DecimalField(max_digits=8, decimal_places=1)

    class Meta:
        ordering = ["-vram_gib", "-int8_tops", "id"]

    def __str__(self) -> str:
        return self.name


class Provider(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DISABLED = "disabled", "Disabled"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider")
    name = models.CharField(max_length=100)
    region = models.CharField(max_length=64, db_index=True)
    attributes = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # 0..1000; 500 for a newcomer. The trust issue computes it from verification and history.
    reputation = models.PositiveSmallIntegerField(default=500)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)

    # Host resources as last reported, and what awarded leases hold.
    cpu_cores_total = models.PositiveIntegerField(default=0)
    cpu_cores_free = models.PositiveIntegerField(default=0)
    memory_gib_total = models.PositiveIntegerField(default=0)
    memory_gib_free = models.PositiveIntegerField(default=0)
    storage_gib_total = models.PositiveIntegerField(default=0)
    storage_gib_free = models.PositiveIntegerField(default=0)
    cpu_cores_reserved = models.PositiveIntegerField(default=0)
    memory_gib_reserved = models.PositiveIntegerField(default=0)
    storage_gib_reserved = models.PositiveIntegerField(default=0)
    # The last report by node: [{"name", "gpus": [{"model": catalog id, "total", "free"}], "cpu_cores":
    # {"total", "free"}, "memory_gib": …, "storage_gib": …}]; empty when the agent reports no nodes.
    nodes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(reputation__lte=1000), name="provider_reputation_range"),
        ]

    def __str__(self) -> str:
        return self.name


class ProviderGpu(models.Model):
    """A provider's GPUs of one catalog model: reported counts plus what leases reserve.

    Available to a new lease = min(reported free, total - reserved): the report knows about
    GPUs used outside the marketplace, the reservation knows about leases awarded since the
    last heartbeat.
    """

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="gpus")
    gpu_model = models.ForeignKey(GpuModel, on_delete=models.PROTECT, related_name="+")
    total = models.PositiveIntegerField()
    free = models.PositiveIntegerField()
    reserved = models.PositiveIntegerField(default=0)
    # An indicative price the provider asks, per GPU-hour, in micro-dollars (optional).
    price_per_gpu_hour = models.BigIntegerField(null=True, blank=True)
    verified = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True, blank=True)
    # int8 tera-operations per second that the last passed proof-of-GPU check measured
    verified_int8_tops = models.FloatField(null=True, blank=True)
    # hardware attestation (NVIDIA confidential computing) holds for every GPU of the line until then
    attested_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider_id", "gpu_model_id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "gpu_model"], name="provider_gpu_unique_model"),
            models.CheckConstraint(condition=Q(free__lte=F("total")), name="provider_gpu_free_le_total"),
            models.CheckConstraint(
                condition=Q(price_per_gpu_hour__isnull=True) | Q(price_per_gpu_hour__gt=0),
                name="provider_gpu_price_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.total}x {self.gpu_model_id}"

    @property
    def attested(self) -> bool:
        """Hardware attestation holds now."""
        return self.attested_until is not None and self.attested_until > timezone.now()

    @property
    def available(self) -> int:
        return max(0, min(self.free, self.total - self.reserved))


class UptimeDay(models.Model):
    """How long a provider's agent was heard from on one day (UTC): the time between heartbeats
    that came less than ``PROVIDER_OFFLINE_AFTER_SECONDS`` apart. Reputation reads it."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="uptime_days")
    day = models.DateField()
    online_seconds = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["provider_id", "day"]
        constraints = [models.UniqueConstraint(fields=["provider", "day"], name="uptime_day_unique")]

    def __str__(self) -> str:
        return f"{self.provider_id} {self.day}: {self.online_seconds} s online"
