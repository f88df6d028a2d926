from django.conf import settings
from django.db import models
from django.db.models import Q


class GpuCheck(models.Model):
    """One proof-of-GPU challenge to a provider, for its GPUs of one model.

    Issued (the seed kept here), then started by the agent (which is when the seed leaves and the
    clock starts), committed (the Merkle root; the rows to open are drawn then), and finished:
    passed, failed, or expired unstarted.
    """

    class Reason(models.TextChoices):
        LISTING = "listing", "First listing of the model"
        LEASE = "lease", "Spot check during a lease"
        ADMIN = "admin", "Requested by an administrator"

    class Status(models.TextChoices):
        ISSUED = "issued", "Issued"
        STARTED = "started", "Started"
        COMMITTED = "committed", "Committed"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    class Failure(models.TextChoices):
        TOO_SLOW = "too_slow", "The commitment came after the model's time envelope"
        ROW_MISMATCH = "row_mismatch", "An opened row is not the seed's result"
        PATH_MISMATCH = "path_mismatch", "An opened leaf is not under the committed root"
        NOT_OPENED = "not_opened", "The rows were not opened in time"

    class Envelope(models.TextChoices):
        """Where the model's expected speed, which sized the check and its time limit, came from."""

        OPERATOR = "operator", "Set by the marketplace's operator"
        CALIBRATED = "calibrated", "Measured on a real card of the model"
        DATASHEET = "datasheet", "Estimated from the model's datasheet"

    provider = models.ForeignKey("providers.Provider", on_delete=models.CASCADE, related_name="gpu_checks")
    gpu_model = models.ForeignKey("providers.GpuModel", on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    lease = models.ForeignKey("leases.Lease", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cards = models.PositiveSmallIntegerField(
        default=1, help_text="GPUs that answer together, each its share of the rows (a lease's: all of them)."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ISSUED)
    failure = models.CharField(max_length=16, choices=Failure.choices, blank=True)
    detail = models.CharField(max_length=200, blank=True)
    seed = models.BinaryField(max_length=16)
    params = models.JSONField()
    expected_seconds = models.FloatField()
    deadline_seconds = models.FloatField()  # the envelope: from start to commitment
    envelope = models.CharField(
        max_length=16,
        choices=Envelope.choices,
        default=Envelope.DATASHEET,
        help_text="Where the expected speed that sized the check and its time limit came from.",
    )
    rows = models.JSONField(default=list, blank=True)  # drawn at commitment
    root = models.BinaryField(max_length=32, null=True, blank=True)
    elapsed_seconds = models.FloatField(null=True, blank=True)
    rows_per_second = models.FloatField(null=True, blank=True)  # measured
    issued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    consequences_at = models.DateTimeField(
        null=True, blank=True, help_text="Failed: when the leases on the failed GPUs were all closed."
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            # at most one unfinished check per provider and model
            models.UniqueConstraint(
                fields=["provider", "gpu_model"],
                condition=Q(status__in=["issued", "started", "committed"]),
                name="gpu_check_one_open_per_model",
            ),
        ]
        indexes = [models.Index(fields=["status", "issued_at"], name="gpu_check_status_issued")]

    def __str__(self) -> str:
        return f"check {self.pk} of {self.provider_id}'s {self.gpu_model_id} ({self.status})"


class Compensation(models.Model):
    """What a client gets when its provider's GPUs fail a check while its lease runs on them: back
    everything the lease paid since the last check of those GPUs passed (``refund``) and, with the
    escrow on chain, a share of the provider's slashed stake (``penalty``). ``paid`` is what reached
    the client's balance: less than owed only when the provider's earnings (ledger escrow) or stake
    (on chain) fell short."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PAID = "paid", "Paid"

    gpu_check = models.ForeignKey(GpuCheck, on_delete=models.PROTECT, related_name="compensations")
    lease = models.OneToOneField("leases.Lease", on_delete=models.PROTECT, related_name="compensation")
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    since = models.DateTimeField(help_text="The last passed check of the GPUs, or the lease's start if later.")
    refund = models.BigIntegerField(help_text="What the lease paid for its time since then.")
    penalty = models.BigIntegerField(default=0, help_text="The client's share of the stake slashed beyond refunds.")
    payable = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="What will be paid, fixed before paying: the refund (or what covers of it) and the penalty.",
    )
    paid = models.BigIntegerField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    beneficiary = models.CharField(max_length=42, blank=True, help_text="On chain: the address slashed to.")
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(refund__gte=0)
                & Q(penalty__gte=0)
                & Q(paid__gte=0)
                & (Q(payable__isnull=True) | Q(payable__gte=0)),
                name="compensation_nonnegative",
            ),
        ]

    def __str__(self) -> str:
        return f"compensation {self.pk} for lease {self.lease_id} ({self.status})"


class Attestation(models.Model):
    """A hardware attestation of the provider's GPUs of one model: the marketplace issues a nonce,
    the provider's agent returns NVIDIA's attestation token for it, and the marketplace verifies
    the token (``trust.attestation``). Attested GPUs are marked so until ``valid_until``."""

    class Status(models.TextChoices):
        ISSUED = "issued", "Issued"
        ATTESTED = "attested", "Attested"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"

    provider = models.ForeignKey("providers.Provider", on_delete=models.CASCADE, related_name="attestations")
    gpu_model = models.ForeignKey("providers.GpuModel", on_delete=models.PROTECT, related_name="+")
    nonce = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ISSUED)
    failure = models.CharField(max_length=32, blank=True, help_text="Rejected: which rule the token broke.")
    detail = models.CharField(max_length=300, blank=True)
    gpus = models.JSONField(default=list, blank=True, help_text="Attested: each GPU's identity and versions.")
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField(help_text="The token must arrive before this.")
    finished_at = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True, help_text="Attested: the GPUs count as attested until.")

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "gpu_model"], condition=Q(status="issued"), name="attestation_one_open_per_model"
            ),
        ]

    def __str__(self) -> str:
        return f"attestation {self.pk} of {self.provider_id}'s {self.gpu_model_id} ({self.status})"
