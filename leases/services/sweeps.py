"""What the marketplace does to leases on its own, on a schedule: warn clients whose deposit runs
low, suspend leases whose paid time ran out, close those whose grace period ended or whose provider
went silent."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import Conflict
from leases import states
from leases.models import Lease, LeaseTopUp
from leases.selectors import has_pending_top_up, lease_owed
from leases.services.lifecycle import lease_close_by
from leases.services.top_ups import lease_auto_top_up
from notifications.services import notify

logger = logging.getLogger(__name__)


def leases_warn_low_funds(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Warn the clients of active leases whose deposit runs out within ``LOW_FUNDS_WARNING_SECONDS``
    (in the app, by email, and to ``balance.low`` webhooks), once per lease."""
    now = now or timezone.now()
    horizon = now + timedelta(seconds=settings.LOW_FUNDS_WARNING_SECONDS)
    due = Lease.objects.filter(
        status__in=states.RUNNABLE,
        ends_at__lte=horizon,
        ends_at__gt=now,
        low_funds_warned_at__isnull=True,
    ).values_list("pk", flat=True)[:limit]
    warned = 0
    for lease_id in list(due):
        with transaction.atomic():
            lease = Lease.objects.select_for_update().select_related("client").get(pk=lease_id)
            if lease.low_funds_warned_at is not None or has_pending_top_up(lease):
                continue
            if lease_auto_top_up(lease, now=now):
                continue  # extended (or on its way, on chain): nothing to warn about
            minutes = max(1, int((lease.ends_at - now).total_seconds()) // 60)
            notify(
                user=lease.client,
                kind="balance.low",
                title=f"Lease {lease.pk} runs out of funds in {minutes} minutes",
                body=(
                    f"The deposit of lease {lease.pk} covers it until {lease.ends_at:%Y-%m-%d %H:%M} UTC, "
                    f"{minutes} minutes from now. Top it up to keep it running. When it runs out its workload "
                    f"is stopped but kept for {settings.LEASE_GRACE_SECONDS // 60} minutes for a top-up; then "
                    "the lease closes."
                ),
                data={
                    "object": "lease",
                    "id": lease.pk,
                    "ends_at": lease.ends_at.isoformat(),
                    "seconds_left": int((lease.ends_at - now).total_seconds()),
                    "remaining_deposit": lease.deposit - lease_owed(lease=lease, until=now),
                },
            )
            lease.low_funds_warned_at = now
            lease.save(update_fields=["low_funds_warned_at"])
            warned += 1
    return warned


def leases_suspend_exhausted(*, now: datetime | None = None, limit: int = 500) -> int:
    """Leases whose paid time ran out go ``insufficient_funds``: accrual stops, the provider's agent
    stops the workload but keeps it, and the client has ``LEASE_GRACE_SECONDS`` to top up (tried
    first automatically, when the client allowed it)."""
    now = now or timezone.now()
    due = list(
        Lease.objects.filter(status__in=states.RUNNABLE, ends_at__lte=now)
        .exclude(top_ups__status=LeaseTopUp.Status.PENDING)
        .order_by("ends_at")
        .values_list("pk", flat=True)[:limit]
    )
    suspended = 0
    for lease_id in due:
        with transaction.atomic():
            lease = Lease.objects.select_for_update().select_related("client", "provider").get(pk=lease_id)
            if lease.status not in states.RUNNABLE or lease.ends_at > now or has_pending_top_up(lease):
                continue
            if lease_auto_top_up(lease, now=now):
                continue
            grace_ends = now + timedelta(seconds=settings.LEASE_GRACE_SECONDS)
            lease.suspended_at = lease.ends_at
            lease.grace_ends_at = grace_ends
            lease.status_reason = (
                f"its paid time ran out: the workload is stopped and kept until {grace_ends:%Y-%m-%d %H:%M} UTC; "
                "top up to resume it"
            )
            states.lease_transition(
                lease, Lease.Status.INSUFFICIENT_FUNDS, fields=["suspended_at", "grace_ends_at", "status_reason"]
            )
            notify(
                user=lease.client,
                kind="lease.insufficient_funds",
                title=f"Lease {lease.pk} ran out of funds: its workload is stopped",
                body=(
                    f"The deposit of lease {lease.pk} is used up. Its workload is stopped but kept until "
                    f"{grace_ends:%Y-%m-%d %H:%M} UTC: top the lease up before then to resume it where it "
                    "stopped. After that the lease closes and the workload is removed."
                ),
                data={"object": "lease", "id": lease.pk, "grace_ends_at": grace_ends.isoformat()},
                webhook=False,  # the lease.insufficient_funds event went out above
            )
            suspended += 1
    return suspended


def leases_close_finished(*, now: datetime | None = None, limit: int = 500) -> int:
    """The lease sweep: suspend leases whose paid time ran out, and close those whose grace period
    ended without a top-up. Returns how many were closed."""
    now = now or timezone.now()
    leases_suspend_exhausted(now=now, limit=limit)
    due = list(
        Lease.objects.filter(status=Lease.Status.INSUFFICIENT_FUNDS, grace_ends_at__lte=now)
        .exclude(top_ups__status=LeaseTopUp.Status.PENDING)
        .order_by("grace_ends_at")
        .values_list("pk", flat=True)[:limit]
    )
    closed = _close_by_the_system(
        due, reason="its funds ran out and it was not topped up within the grace period", now=now
    )
    if closed:
        logger.info("closed %d leases after their grace period", closed)
    return closed


def _close_by_the_system(lease_ids: list[int], *, reason: str, now: datetime, tail: bool = True) -> int:
    """Close each lease for the marketplace's sweep; returns how many it closed."""
    closed = 0
    for lease_id in lease_ids:
        try:
            lease_close_by(lease_id=lease_id, closed_by=Lease.ClosedBy.SYSTEM, reason=reason, now=now, tail=tail)
            closed += 1
        except Conflict:
            continue  # closed meanwhile by its client or provider, or a top-up is on its way
    return closed


def leases_close_abandoned(*, now: datetime | None = None, limit: int = 500) -> int:
    """Close the leases of providers that went silent: no heartbeat for
    ``LEASE_ABANDONED_AFTER_SECONDS``. The provider is paid for the usage its agent reported and
    signed, nothing for the silent time after it (no tail); the client gets the rest back and is
    told why. An agent that comes back later finds the lease closed, sends its final report and
    tears the workload down. Returns how many were closed."""
    now = now or timezone.now()
    silent_since = now - timedelta(seconds=settings.LEASE_ABANDONED_AFTER_SECONDS)
    due = list(
        Lease.objects.filter(status__in=states.ABANDONABLE)
        .filter(Q(provider__last_heartbeat_at__lt=silent_since) | Q(provider__last_heartbeat_at__isnull=True))
        .exclude(top_ups__status=LeaseTopUp.Status.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    closed = _close_by_the_system(
        due, reason="the provider went offline: its agent has not been heard from", now=now, tail=False
    )
    if closed:
        logger.warning("closed %d leases whose provider went offline", closed)
    return closed
