"""A lease's life as its client and the marketplace see it: opened when an order is awarded,
closed by its client, its provider or the marketplace (the escrow pays what was earned and refunds
the rest), closed for cause when its provider's GPUs fail a check."""

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import Conflict, NotFound
from core.models import User
from leases import states
from leases.escrow import escrow
from leases.models import Lease
from leases.selectors import has_pending_top_up, lease_owed
from ledger import services as ledger
from ledger.models import LedgerAccount, LedgerTransaction

logger = logging.getLogger(__name__)


def lease_open(
    *,
    order: Any,
    bid: Any,
    price_per_hour: int,
    now: datetime | None = None,
    signed_terms: dict[str, Any] | None = None,
) -> Lease:
    """Create the lease for an awarded order and move its deposit into escrow.

    Runs inside the award transaction, which has already reserved the provider's capacity.
    Raises PaymentRequired (402) when the client's balance does not cover the deposit; the caller's
    transaction then rolls back and the order stays open. ``signed_terms``: what the client signed
    for the escrow (``leases.escrow.signing``), kept with the lease to open it on.
    """
    now = now or timezone.now()
    deposit = price_per_hour * order.duration_hours
    lease = Lease(
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
        # on chain, the fee the escrow fixes when it opens the lease replaces this once funded
        platform_fee_bps=settings.PLATFORM_FEE_BPS,
        started_at=now,
        ends_at=now + timedelta(hours=order.duration_hours),
        signed_terms=signed_terms or {},
    )
    states.lease_transition(lease, escrow().opening_status)
    held = ledger.escrow_account_open(lease_id=lease.pk)
    client_balance = ledger.user_account(user=order.client_id, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    ledger.post(
        key=f"lease:{lease.pk}:fund",
        kind=LedgerTransaction.Kind.LEASE_FUND,
        legs=[(client_balance, -deposit), (held, deposit)],
        lease_id=lease.pk,
        memo=f"Deposit for lease {lease.pk} (order {order.pk})",
    )
    escrow().fund(lease)
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
    return lease_close_by(lease_id=lease.pk, closed_by=closed_by, reason=reason or default_reason)


def lease_close_by(
    *,
    lease_id: int,
    closed_by: str,
    reason: str,
    now: datetime | None = None,
    nothing_earned: bool = False,
    tail: bool = True,
) -> Lease:
    """Close the lease as ``closed_by`` says, with no check of who asks (``lease_close`` checks a
    user; the sweeps, the agent's reports and failed checks call this for the system): the escrow
    pays what was earned (nothing with ``nothing_earned``; without the unreported tail with
    ``tail=False``) and refunds the rest."""
    with transaction.atomic():
        lease = Lease.objects.select_for_update().get(pk=lease_id)
        if lease.status == Lease.Status.CLOSED:
            raise Conflict(f"Lease {lease.pk} is already closed.", code="lease_closed")
        if lease.status == Lease.Status.CLOSING:
            raise Conflict(f"Lease {lease.pk} is already closing.", code="lease_closing")
        if lease.status == Lease.Status.FUNDING:
            raise Conflict(
                f"Lease {lease.pk} is waiting for the escrow to take its deposit; close it once funded.",
                code="lease_funding",
            )
        if has_pending_top_up(lease):
            raise Conflict(
                f"Lease {lease.pk} is being topped up on chain; close it once the top-up is confirmed.",
                code="lease_topping_up",
            )
        now = now or timezone.now()
        # what closing pays on top of the settlements already made (never taken back: a lease that
        # fails after running keeps what its reported usage was settled for)
        earned = 0 if nothing_earned else max(0, lease_owed(lease=lease, until=now, tail=tail) - lease.settled_amount)
        lease.closed_by = closed_by
        lease.close_reason = reason[:200]
        return escrow().close(lease, earned=earned, now=now)


def lease_close_for_cause(*, lease_id: int, reason: str, now: datetime | None = None) -> Lease:
    """Close a lease the marketplace stops (its provider's GPUs failed a check): nothing more is
    paid to the provider, the whole unsettled deposit goes back to the client."""
    return lease_close_by(
        lease_id=lease_id, closed_by=Lease.ClosedBy.SYSTEM, reason=reason, now=now, nothing_earned=True
    )
