"""Writes for leases: open (funded from the client's balance), close (pay and refund)."""

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.errors import Conflict, NotFound
from core.models import User
from leases import ledger
from leases.accrual import accrued_amount, elapsed_seconds
from leases.models import Lease, LedgerAccount, LedgerTransaction
from providers.services import Reservation, capacity_release

logger = logging.getLogger(__name__)

ACTIVE_STATUSES = (
    Lease.Status.FUNDED,
    Lease.Status.DEPLOYING,
    Lease.Status.RUNNING,
    Lease.Status.INSUFFICIENT_FUNDS,
    Lease.Status.FAILED,
)


def reservation_for(lease: Lease) -> Reservation:
    return Reservation(
        provider_id=lease.provider_id,
        gpu_model_id=lease.gpu_model_id,
        gpu_count=lease.gpu_count,
        cpu_cores=lease.cpu_cores,
        memory_gib=lease.memory_gib,
        storage_gib=lease.storage_gib,
    )


def lease_open(*, order: Any, bid: Any, price_per_hour: int, now: datetime | None = None) -> Lease:
    """Create the lease for an awarded order and move its deposit into escrow.

    Runs inside the award transaction, which has already reserved the provider's capacity.
    Raises PaymentRequired (402) when the client's balance does not cover the deposit; the caller's
    transaction then rolls back and the order stays open.
    """
    now = now or timezone.now()
    deposit = price_per_hour * order.duration_hours
    lease = Lease.objects.create(
        order=order,
        bid=bid,
        client_id=order.client_id,
        provider_id=bid.provider_id,
        gpu_model_id=bid.gpu_model_id,
        gpu_count=order.gpu_count,
        cpu_cores=order.cpu_cores,
        memory_gib=order.memory_gib,
        storage_gib=order.storage_gib,
        price_per_hour=price_per_hour,
        bid_price_per_hour=bid.price_per_hour,
        duration_hours=order.duration_hours,
        deposit=deposit,
        started_at=now,
        ends_at=now + timedelta(hours=order.duration_hours),
    )
    escrow = ledger.escrow_account_open(lease=lease)
    client_balance = ledger.user_account(user=order.client_id, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    ledger.post(
        key=f"lease:{lease.pk}:fund",
        kind=LedgerTransaction.Kind.LEASE_FUND,
        legs=[(client_balance, -deposit), (escrow, deposit)],
        lease=lease,
        memo=f"Deposit for lease {lease.pk} (order {order.pk})",
    )
    return lease


def _lease_for_actor(*, user: User, lease_id: int, roles: set[str]) -> tuple[Lease, str]:
    lease = Lease.objects.select_related("provider").filter(pk=lease_id).first()
    if lease is not None:
        if "client" in roles and lease.client_id == user.pk:
            return lease, Lease.ClosedBy.CLIENT
        if "provider" in roles and lease.provider.user_id == user.pk:
            return lease, Lease.ClosedBy.PROVIDER
    raise NotFound("No such lease.")


def lease_close(*, user: User, lease_id: int, roles: set[str], reason: str = "") -> Lease:
    """Close a lease as its client or its provider: pay what was earned, refund the rest."""
    lease, closed_by = _lease_for_actor(user=user, lease_id=lease_id, roles=roles)
    default_reason = "closed by the client" if closed_by == Lease.ClosedBy.CLIENT else "closed by the provider"
    return _close(lease_id=lease.pk, closed_by=closed_by, reason=reason or default_reason)


def _close(*, lease_id: int, closed_by: str, reason: str, now: datetime | None = None) -> Lease:
    with transaction.atomic():
        lease = Lease.objects.select_for_update().get(pk=lease_id)
        if lease.status == Lease.Status.CLOSED:
            raise Conflict(f"Lease {lease.pk} is already closed.", code="lease_closed")
        # Lock order everywhere: lease/order, then provider rows, then ledger accounts by id.
        capacity_release(reservation=reservation_for(lease))
        now = now or timezone.now()
        earned = accrued_amount(
            price_per_hour=lease.price_per_hour,
            seconds=elapsed_seconds(started_at=lease.started_at, until=now, duration_hours=lease.duration_hours),
            deposit=lease.deposit,
        )
        refund = lease.deposit - earned
        escrow = LedgerAccount.objects.get(lease=lease)
        ledger.post(
            key=f"lease:{lease.pk}:payout",
            kind=LedgerTransaction.Kind.LEASE_PAYOUT,
            legs=[
                (escrow, -earned),
                (ledger.user_account(user=lease.provider.user_id, kind=LedgerAccount.Kind.PROVIDER_EARNINGS), earned),
            ],
            lease=lease,
            memo=f"Payment for lease {lease.pk}",
        )
        ledger.post(
            key=f"lease:{lease.pk}:refund",
            kind=LedgerTransaction.Kind.LEASE_REFUND,
            legs=[
                (escrow, -refund),
                (ledger.user_account(user=lease.client_id, kind=LedgerAccount.Kind.CLIENT_BALANCE), refund),
            ],
            lease=lease,
            memo=f"Refund of the unused deposit of lease {lease.pk}",
        )
        lease.status = Lease.Status.CLOSED
        lease.closed_at = now
        lease.closed_by = closed_by
        lease.close_reason = reason[:200]
        lease.paid_to_provider = earned
        lease.refunded_to_client = refund
        lease.save(
            update_fields=["status", "closed_at", "closed_by", "close_reason", "paid_to_provider", "refunded_to_client"]
        )
    return lease


def leases_close_finished(*, now: datetime | None = None, limit: int = 500) -> int:
    """Close leases whose duration has elapsed (their deposit is fully earned)."""
    now = now or timezone.now()
    due = list(
        Lease.objects.filter(status__in=ACTIVE_STATUSES, ends_at__lte=now)
        .order_by("ends_at")
        .values_list("pk", flat=True)[:limit]
    )
    closed = 0
    for lease_id in due:
        try:
            _close(lease_id=lease_id, closed_by=Lease.ClosedBy.SYSTEM, reason="the lease's duration ended", now=now)
            closed += 1
        except Conflict:
            continue  # closed meanwhile by its client or provider
    if closed:
        logger.info("closed %d finished leases", closed)
    return closed
