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

    provider = models.ForeignKey("providers.Provider", on_delete=models.CASCADE, related_name="gpu_checks")
    gpu_model = models.ForeignKey("providers.GpuModel", on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    lease = models.ForeignKey("leases.Lease", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ISSUED)
    failure = models.CharField(max_length=16, choices=Failure.choices, blank=True)
    detail = models.CharField(max_length=200, blank=True)
    seed = models.BinaryField(max_length=16)
    params = models.JSONField()
    expected_seconds = models.FloatField()
    deadline_seconds = models.FloatField()  # the envelope: from start to commitment
    rows = models.JSONField(default=list, blank=True)  # drawn at commitment
    root = models.BinaryField(max_length=32, null=True, blank=True)
    elapsed_seconds = models.FloatField(null=True, blank=True)
    rows_per_second = models.FloatField(null=True, blank=True)  # measured
    issued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

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
