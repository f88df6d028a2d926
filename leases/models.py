import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Lease(models.Model):
    """An awarded order: who runs what, at which price, and the money held for it.

    ``order`` is one-to-one: the database itself refuses a second lease for the same order.
    """

    class Status(models.TextChoices):
        FUNDING = "funding", "Funding (waiting for the escrow on chain)"
        FUNDED = "funded", "Funded"
        DEPLOYING = "deploying", "Deploying"
        RUNNING = "running", "Running"
        INSUFFICIENT_FUNDS = "insufficient_funds", "Insufficient funds"
        FAILED = "failed", "Failed"
        CLOSING = "closing", "Closing (waiting for the escrow on chain)"
        CLOSED = "closed", "Closed"

    class ClosedBy(models.TextChoices):
        CLIENT = "client", "Client"
        PROVIDER = "provider", "Provider"
        SYSTEM = "system", "System"

    class FailureCause(models.TextChoices):
        WORKLOAD = "workload", "The workload (its image or command)"
        PROVIDER = "provider", "The provider (its host, runtime or network)"

    order = models.OneToOneField("marketplace.Order", on_delete=models.PROTECT, related_name="lease")
    bid = models.OneToOneField("marketplace.Bid", on_delete=models.PROTECT, related_name="lease")
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="leases")
    provider = models.ForeignKey("providers.Provider", on_delete=models.PROTECT, related_name="leases")
    gpu_model = models.ForeignKey("providers.GpuModel", on_delete=models.PROTECT, related_name="+")
    gpu_count = models.PositiveIntegerField()
    cpu_cores = models.PositiveIntegerField()
    memory_gib = models.PositiveIntegerField()
    storage_gib = models.PositiveIntegerField()

    price_per_hour = models.BigIntegerField(help_text="What the client pays, micro-dollars per hour.")
    bid_price_per_hour = models.BigIntegerField(help_text="The winning bid (lower under second price).")
    duration_hours = models.PositiveIntegerField()
    deposit = models.BigIntegerField(help_text="price_per_hour * duration_hours, held in escrow.")

    status = models.CharField(max_length=24, choices=Status.choices, default=Status.FUNDED, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(help_text="When accrual starts.")
    ends_at = models.DateTimeField(help_text="started_at + duration: the deposit is spent by then.")
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=16, choices=ClosedBy.choices, blank=True)
    close_reason = models.CharField(max_length=200, blank=True)
    failure_cause = models.CharField(
        max_length=16,
        choices=FailureCause.choices,
        blank=True,
        help_text="Whose fault a failed deployment was, as the provider's agent reported it.",
    )
    settled_amount = models.BigIntegerField(
        default=0, help_text="Paid to the provider by settlements while it runs (on chain: confirmed)."
    )
    low_funds_warned_at = models.DateTimeField(null=True, blank=True, help_text="When the client was told it runs out.")
    suspended_at = models.DateTimeField(
        null=True, blank=True, help_text="While insufficient_funds: when its paid time ran out (accrual stops)."
    )
    grace_ends_at = models.DateTimeField(
        null=True, blank=True, help_text="While insufficient_funds: closed then unless topped up."
    )
    resumed_at = models.DateTimeField(null=True, blank=True, help_text="When a top-up last resumed it.")
    auto_top_up_limit = models.BigIntegerField(
        default=0, help_text="The most the marketplace may add from the client's balance on its own, in all."
    )
    auto_topped_up = models.BigIntegerField(default=0, help_text="What automatic top-ups added so far.")
    paid_to_provider = models.BigIntegerField(default=0)
    platform_fee_bps = models.PositiveSmallIntegerField(
        default=0, help_text="The platform's share of what the provider is paid, fixed when the lease opened."
    )
    platform_fee = models.BigIntegerField(
        default=0, help_text="Of what the provider was paid (settled and at close), the platform's share."
    )
    refunded_to_client = models.BigIntegerField(default=0)
    endpoints = models.JSONField(default=list, blank=True, help_text='Where to reach the workload: ["host:port"].')
    status_reason = models.CharField(max_length=500, blank=True, help_text="The provider's word on the state.")
    # With the escrow on chain: the transactions that opened and closed the lease there.
    open_tx_hash = models.CharField(max_length=66, blank=True)
    escrow_payer = models.CharField(
        max_length=42,
        blank=True,
        help_text="The address the escrow contract took the deposit from: the client's wallet, or the "
        "marketplace's custody account for a client without one.",
    )
    escrow_payee = models.CharField(max_length=42, blank=True, help_text="The provider's address in the contract.")
    held_in_custody = models.BooleanField(
        default=False, help_text="The custody account paid the deposit: the client has no wallet."
    )
    signed_terms = models.JSONField(
        default=dict,
        blank=True,
        help_text="The terms the client signed for the escrow contract (chain.terms): its acceptance or "
        "the order's standing authorization, with the signer and the signature. Empty: nothing to sign "
        "(the ledger escrow), or the marketplace signs as the custodian or for a demo wallet.",
    )
    close_tx_hash = models.CharField(max_length=66, blank=True)
    close_requested_amount = models.BigIntegerField(
        null=True, blank=True, help_text="What the marketplace asked the escrow to pay at close."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(price_per_hour__gt=0), name="lease_price_positive"),
            models.CheckConstraint(condition=Q(deposit__gte=0), name="lease_deposit_nonnegative"),
            models.CheckConstraint(
                condition=Q(status="closed") | Q(closed_at__isnull=True), name="lease_closed_at_only_when_closed"
            ),
            models.CheckConstraint(
                condition=Q(auto_top_up_limit__gte=0) & Q(auto_topped_up__gte=0), name="lease_auto_top_up_nonnegative"
            ),
            models.CheckConstraint(
                condition=Q(paid_to_provider__gte=0)
                & Q(refunded_to_client__gte=0)
                & Q(paid_to_provider__lte=models.F("deposit")),
                name="lease_payout_within_deposit",
            ),
            models.CheckConstraint(
                condition=Q(platform_fee_bps__lte=2000) & Q(platform_fee__gte=0), name="lease_platform_fee_in_range"
            ),
        ]
        indexes = [models.Index(fields=["status", "ends_at"], name="lease_status_ends")]

    def __str__(self) -> str:
        return f"lease {self.pk} ({self.status})"

    @property
    def status_label(self) -> str:
        """The state as pages name it: a lease closed because its deployment failed reads "Failed"."""
        if self.status == self.Status.CLOSED and self.failure_cause:
            return "Failed"
        return self.get_status_display()

    @property
    def status_tone(self) -> str:
        """The badge's colour for ``status_label``: good, bad, or plain."""
        if self.status == self.Status.RUNNING:
            return "good"
        if self.status in (self.Status.INSUFFICIENT_FUNDS, self.Status.FAILED) or self.failure_cause:
            return "bad"
        return ""


class LeaseTopUp(models.Model):
    """Money a client adds to a running lease's deposit, from its balance.

    With the escrow on chain a top-up is ``pending`` until the contract confirms it; at most one is
    pending per lease (the database refuses a second), and a lease does not close meanwhile.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (waiting for the escrow on chain)"
        CONFIRMED = "confirmed", "Confirmed"
        FAILED = "failed", "Failed (returned to the balance)"

    class Source(models.TextChoices):
        CLIENT = "client", "The client"
        AUTO = "auto", "Automatic top-up"
        WALLET = "wallet", "The client, in the escrow contract"

    lease = models.ForeignKey(Lease, on_delete=models.PROTECT, related_name="top_ups")
    amount = models.BigIntegerField()
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.CLIENT)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.CharField(max_length=200, blank=True)
    tx_hash = models.CharField(max_length=66, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="lease_top_up_positive"),
            models.UniqueConstraint(fields=["lease"], condition=Q(status="pending"), name="lease_top_up_one_pending"),
        ]

    def __str__(self) -> str:
        return f"top-up {self.pk} of lease {self.lease_id} ({self.status})"


class LeaseLog(models.Model):
    """The latest tail of a lease's workload log, as its provider's agent last sent it (only the
    newest is kept: the agent sends the whole tail each time it changes)."""

    lease = models.OneToOneField(Lease, on_delete=models.CASCADE, primary_key=True, related_name="log")
    text = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"log of lease {self.lease_id}"


class UsageReport(models.Model):
    """What a lease used in one period, as its provider's agent signed it (EIP-712).

    Periods of a lease never overlap and only move forward; settlement reads them.
    """

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="usage_reports")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    gpu_seconds = models.PositiveBigIntegerField()
    run_seconds = models.PositiveBigIntegerField(help_text="Seconds the workload actually ran in the period.")
    restarts = models.PositiveIntegerField(default=0)
    gpu_utilization_pct = models.FloatField(
        null=True, blank=True, help_text="The lease's GPUs' utilisation when the period ended (NVML), as reported."
    )
    gpu_memory_mib = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="GPU memory the lease used when the period ended (NVML), as reported."
    )
    signer = models.CharField(max_length=42, help_text="The address that signed: one the provider linked.")
    signature = models.CharField(max_length=132)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["lease_id", "period_start"]
        constraints = [
            models.UniqueConstraint(fields=["lease", "period_start"], name="usage_report_period_unique"),
            models.CheckConstraint(condition=Q(period_end__gt=models.F("period_start")), name="usage_period_positive"),
        ]

    def __str__(self) -> str:
        return f"lease {self.lease_id} {self.period_start:%Y-%m-%dT%H:%M:%S}+{self.gpu_seconds} GPU-s"


class ShellSession(models.Model):
    """A shell the lease's client opened into its workload from the browser: who, when and for how
    long (never what was typed or shown). ``token`` names the session on the relay."""

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="shell_sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["lease", "ended_at"], name="shell_session_open")]

    def __str__(self) -> str:
        return f"shell {self.pk} into lease {self.lease_id}"

    @property
    def seconds(self) -> int | None:
        """How long it lasted, once it ended."""
        return None if self.ended_at is None else max(0, int((self.ended_at - self.started_at).total_seconds()))
