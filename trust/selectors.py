"""Reads for proof-of-GPU checks."""

from django.db.models import QuerySet

from providers.models import Provider
from trust.models import GpuCheck


def checks_finished(*, provider: Provider) -> QuerySet[GpuCheck]:
    """The provider's finished checks, newest first."""
    return GpuCheck.objects.filter(
        provider=provider, status__in=[GpuCheck.Status.PASSED, GpuCheck.Status.FAILED, GpuCheck.Status.EXPIRED]
    ).order_by("-finished_at", "-id")
