"""Reads for proof-of-GPU checks."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from providers.models import Provider
from trust.models import GpuCheck


def checks_of(*, provider: Provider) -> QuerySet[GpuCheck]:
    """All the provider's checks, newest first, for its page."""
    return GpuCheck.objects.filter(provider=provider).select_related("gpu_model").order_by("-id")


def checks_finished(*, provider: Provider) -> QuerySet[GpuCheck]:
    """The provider's finished checks, newest first."""
    return GpuCheck.objects.filter(
        provider=provider, status__in=[GpuCheck.Status.PASSED, GpuCheck.Status.FAILED, GpuCheck.Status.EXPIRED]
    ).order_by("-finished_at", "-id")


def suspended_until(*, provider: Provider) -> datetime | None:
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
    return until if until > timezone.now() else None
