"""Reads for proof-of-GPU checks."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from leases.models import Lease, UsageReport
from providers.models import Provider, UptimeDay
from trust.models import Attestation, GpuCheck
from trust.reputation import Record


def checks_of(*, provider: Provider) -> QuerySet[GpuCheck]:
    """All the provider's checks, newest first, for its page."""
    return GpuCheck.objects.filter(provider=provider).select_related("gpu_model").order_by("-id")


def attestations_of(*, provider: Provider) -> QuerySet[Attestation]:
    """The provider's hardware attestations, newest first."""
    return Attestation.objects.filter(provider=provider).select_related("gpu_model").order_by("-id")


def checks_finished(*, provider: Provider) -> QuerySet[GpuCheck]:
    """The provider's finished checks, newest first."""
    return GpuCheck.objects.filter(
        provider=provider, status__in=[GpuCheck.Status.PASSED, GpuCheck.Status.FAILED, GpuCheck.Status.EXPIRED]
    ).order_by("-finished_at", "-id")


def suspended_until(*, provider: Provider, now: datetime | None = None) -> datetime | None:
    """Until when a failed check keeps the provider from verified orders (None: it does not)."""
    failed = (
        GpuCheck.objects.filter(provider=provider, status=GpuCheck.Status.FAILED)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    if failed is None:
        return None
    until = failed + timedelta(seconds=settings.PROOF_SUSPENSION_SECONDS)
    return until if until > (now or timezone.now()) else None


RECORD_WINDOW = timedelta(days=90)  # checks and leases
UPTIME_WINDOW = timedelta(days=30)


def reputation_records(*, provider_ids: list[int] | None = None, now: datetime | None = None) -> dict[int, Record]:
    """Each provider's record for its reputation (all providers unless ``provider_ids`` names
    some), in four grouped queries."""
    now = now or timezone.now()
    scope = {} if provider_ids is None else {"provider_id__in": provider_ids}
    checks = {
        row["provider_id"]: row
        for row in GpuCheck.objects.filter(finished_at__gte=now - RECORD_WINDOW, **scope)
        .values("provider_id")
        .annotate(
            passed=Count("pk", filter=Q(status=GpuCheck.Status.PASSED)),
            failed=Count("pk", filter=Q(status=GpuCheck.Status.FAILED)),
        )
    }
    online = dict(
        UptimeDay.objects.filter(day__gte=(now - UPTIME_WINDOW).date(), **scope)
        .values("provider_id")
        .annotate(total=Sum("online_seconds"))
        .values_list("provider_id", "total")
    )
    # A deployment that failed by the client's workload (an image that cannot be pulled, a command
    # that exits at once) counts neither way, unless the same image with the same command and
    # arguments ran on another provider: then the workload was fine, and the failure is this one's.
    ran_elsewhere = Exists(
        UsageReport.objects.filter(
            run_seconds__gt=0,
            lease__order__image=OuterRef("order__image"),
            lease__order__command=OuterRef("order__command"),
            lease__order__args=OuterRef("order__args"),
        ).exclude(lease__provider=OuterRef("provider"))
    )
    workloads_fault = Q(failure_cause=Lease.FailureCause.WORKLOAD, compensation__isnull=True, ran_elsewhere=False)
    # a lease the provider broke off: closed by it before its paid time ran out, or by a failed check
    broken = (Q(compensation__isnull=False) | Q(closed_by=Lease.ClosedBy.PROVIDER, closed_at__lt=F("ends_at"))) & ~Q(
        workloads_fault
    )
    leases = {
        row["provider_id"]: row
        for row in Lease.objects.filter(status=Lease.Status.CLOSED, closed_at__gte=now - RECORD_WINDOW, **scope)
        .alias(ran_elsewhere=ran_elsewhere)
        .values("provider_id")
        .annotate(closed=Count("pk", filter=~Q(workloads_fault)), failed=Count("pk", filter=broken))
    }
    providers = Provider.objects.all() if provider_ids is None else Provider.objects.filter(pk__in=provider_ids)
    records = {}
    for provider_id, created_at in providers.values_list("pk", "created_at"):
        check: Mapping[str, Any] = checks.get(provider_id, {})
        lease: Mapping[str, Any] = leases.get(provider_id, {})
        records[provider_id] = Record(
            checks_passed=check.get("passed", 0),
            checks_failed=check.get("failed", 0),
            online_seconds=online.get(provider_id) or 0,
            window_seconds=int(min(UPTIME_WINDOW, now - created_at).total_seconds()),
            leases_completed=lease.get("closed", 0) - lease.get("failed", 0),
            leases_failed=lease.get("failed", 0),
        )
    return records
