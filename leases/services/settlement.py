"""The settlement tick: providers are paid what running leases earned by their reported usage,
through the escrow (``leases.escrow``), in batches."""

import logging
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from leases import selectors, states
from leases.escrow import escrow
from leases.models import Lease

logger = logging.getLogger(__name__)


def settlements_due(*, now: datetime, limit: int) -> dict[int, tuple[int, int]]:
    """Lease id → (what its provider has earned in all, what was settled so far), for running
    leases that owe something.

    Only reported usage counts here (not the tail since the last report, which the next report may
    show as downtime): a settlement never pays what a later report could take back.
    """
    due: dict[int, tuple[int, int]] = {}
    leases = selectors.with_usage(Lease.objects.filter(status__in=states.SETTLING)).order_by("pk")[:limit]
    for lease in leases:
        owed = selectors.lease_owed(lease=lease, until=now, tail=False)
        if owed > lease.settled_amount:
            due[lease.pk] = (owed, lease.settled_amount)
    return due


def leases_settle(*, now: datetime | None = None, batch_size: int | None = None, limit: int = 10_000) -> int:
    """The settlement tick: pay providers what running leases earned since the last tick.

    First the escrow books the settlements it made that the books miss (on chain: a worker killed
    after sending, a node gone before it answered), so the same usage is never sent again; then
    the amounts due go to the escrow in batches: in the ledger, booked at once, idempotent per
    (lease, amount owed); on chain, in batched ``settle`` calls, booked as the chain's ``Settled``
    events say, once per event (the chain also caps each lease at its rate since its last
    settlement). Returns how many leases were paid.
    """
    now = now or timezone.now()
    if not escrow().settlements_catch_up():
        return 0
    due = settlements_due(now=now, limit=limit)
    if not due:
        return 0
    return escrow().settle(due, batch_size=batch_size or settings.SETTLEMENT_BATCH_SIZE)
