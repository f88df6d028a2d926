"""Adding to a lease's deposit: by its client, or automatically from its balance within the limit
the client set; a top-up of a lease waiting in its grace period resumes it."""

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.errors import Conflict, DomainError, NotFound, ValidationFailed
from core.models import User
from leases import states
from leases.books import top_up_reserve
from leases.escrow import escrow
from leases.models import Lease, LeaseTopUp
from leases.selectors import has_pending_top_up
from ledger import services as ledger
from ledger.models import LedgerAccount

logger = logging.getLogger(__name__)


def lease_top_up(
    *, user: User, lease_id: int, amount: Any, source: str = LeaseTopUp.Source.CLIENT, now: datetime | None = None
) -> LeaseTopUp:
    """Add ``amount`` from the client's balance to its lease's deposit.

    The lease runs ``amount * 3600 // price_per_hour`` seconds longer; a lease waiting in its grace
    period (``insufficient_funds``) resumes. With the ledger as escrow this happens at once; with
    the escrow on chain the amount is reserved from the balance and the top-up stays ``pending``
    until the contract confirms it (or refuses it, and the amount goes back).
    """
    now = now or timezone.now()
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed("The amount is whole micro-dollars.", fields={"amount": ["An integer."]})
    if amount <= 0 or amount > ledger.MAX_DEPOSIT:
        raise ValidationFailed(
            f"A top-up is between 1 and {ledger.MAX_DEPOSIT} micro-dollars.",
            code="invalid_amount",
            fields={"amount": [f"Between 1 and {ledger.MAX_DEPOSIT}."]},
        )
    with transaction.atomic():
        lease = Lease.objects.select_for_update().select_related("provider").filter(pk=lease_id, client=user).first()
        if lease is None:
            raise NotFound("No such lease.")
        if lease.status not in states.TOP_UP:
            raise Conflict(f"Lease {lease.pk} is {lease.status}: it cannot be topped up.", code="lease_not_active")
        if has_pending_top_up(lease):
            raise Conflict(f"Lease {lease.pk} has a top-up waiting for the escrow.", code="top_up_pending")
        top_up = LeaseTopUp.objects.create(lease=lease, amount=amount, source=source)
        top_up_reserve(top_up=top_up, lease=lease, memo=f"Top-up of lease {lease.pk}")
        escrow().top_up(top_up, lease, now=now)
    return top_up


def lease_auto_top_up_set(*, user: User, lease_id: int, limit: Any) -> Lease:
    """Let the marketplace top the lease up from the client's balance, up to ``limit`` in all."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= ledger.MAX_DEPOSIT:
        raise ValidationFailed(
            "The limit is whole micro-dollars, 0 (off) or more.",
            code="invalid_amount",
            fields={"auto_top_up_limit": [f"Between 0 and {ledger.MAX_DEPOSIT}."]},
        )
    with transaction.atomic():
        lease = Lease.objects.select_for_update().filter(pk=lease_id, client=user).first()
        if lease is None:
            raise NotFound("No such lease.")
        if lease.status not in states.AUTO_TOP_UP:
            raise Conflict(f"Lease {lease.pk} is {lease.status}.", code="lease_not_active")
        lease.auto_top_up_limit = limit
        lease.save(update_fields=["auto_top_up_limit"])
    return lease


def lease_auto_top_up(lease: Lease, *, now: datetime) -> bool:
    """Top the lease up from its client's balance when it allowed that: by the deposit of its
    ordered duration, within what is left of its limit and its balance. True when it did. The
    caller holds the lease's lock and has seen no top-up pending."""
    allowed = min(lease.auto_top_up_limit - lease.auto_topped_up, lease.price_per_hour * lease.duration_hours)
    if allowed <= 0:
        return False
    balance = ledger.user_account(user=lease.client_id, kind=LedgerAccount.Kind.CLIENT_BALANCE).balance
    amount = min(allowed, balance)
    if amount <= 0:
        return False
    try:
        lease_top_up(user=lease.client, lease_id=lease.pk, amount=amount, source=LeaseTopUp.Source.AUTO, now=now)
    except DomainError as exc:  # the balance moved meanwhile: warn or suspend as without it
        logger.info("auto top-up of lease %s not made: %s", lease.pk, exc)
        return False
    return True
