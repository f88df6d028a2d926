"""What the escrow moved, booked in the ledger: a closed lease's payment and refund, settlements,
top-ups confirmed or refused, compensations. Both escrow backends book through these, so the books
read the same whichever holds the money; nothing here asks which does.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.bulk import update_column
from leases import states
from leases.events import lease_event
from leases.models import Lease, LeaseTopUp
from ledger import services as ledger
from ledger.models import LedgerAccount, LedgerTransaction
from providers.models import Provider
from providers.services import Reservation, capacity_release

logger = logging.getLogger(__name__)


def reservation_for(lease: Lease) -> Reservation:
    return Reservation(
        provider_id=lease.provider_id,
        gpu_model_id=lease.gpu_model_id,
        gpu_count=lease.gpu_count,
        cpu_cores=lease.cpu_cores,
        memory_gib=lease.memory_gib,
        storage_gib=lease.storage_gib,
    )


def compensate_from_earnings(*, lease: Lease, amount: int, key: str, memo: str) -> int:
    """With the ledger as the escrow: give the client back ``amount`` of what the lease paid, taken
    from the provider's earnings and the platform's fee in the share the payments went (each no
    further than its balance). Returns what was given back."""
    fee = ledger.platform_fee(amount, lease.platform_fee_bps)
    shares = [
        (ledger.user_account(user=lease.provider.user_id, kind=LedgerAccount.Kind.PROVIDER_EARNINGS), amount - fee)
    ]
    if fee:
        shares.append((ledger.platform_fees_account(), fee))
    legs = []
    for account, share in shares:
        account.refresh_from_db(fields=["balance"])
        if min(share, account.balance) > 0:
            legs.append((account, -min(share, account.balance)))
    given = -sum(leg for _, leg in legs)
    if given:
        client = ledger.user_account(user=lease.client_id, kind=LedgerAccount.Kind.CLIENT_BALANCE)
        ledger.post(
            key=key,
            kind=LedgerTransaction.Kind.COMPENSATION,
            legs=[*legs, (client, given)],
            lease_id=lease.pk,
            memo=f"Lease {lease.pk}: {memo}",
        )
    return given


def compensate_from_stake(*, lease: Lease, amount: int, chain_id: int, key: str, memo: str) -> None:
    """With the escrow on chain: book ``amount`` of the provider's stake, which the verifier slashed
    to the client's free balance in the escrow (or the custody account's, for a client without a
    wallet), as money entering the client's balance."""
    ledger.post(
        key=key,
        kind=LedgerTransaction.Kind.COMPENSATION,
        legs=[
            (ledger.external_account(name=f"stake:{chain_id}"), -amount),
            (ledger.user_account(user=lease.client_id, kind=LedgerAccount.Kind.CLIENT_BALANCE), amount),
        ],
        lease_id=lease.pk,
        memo=f"Lease {lease.pk}: {memo}",
    )


def refund_to_client(*, lease: Lease, amount: int, key: str, memo: str) -> None:
    """Move ``amount`` from the lease's escrow account back to its client's balance."""
    ledger.post(
        key=key,
        kind=LedgerTransaction.Kind.LEASE_REFUND,
        legs=[
            (ledger.escrow_account(lease_id=lease.pk), -amount),
            (ledger.user_account(user=lease.client_id, kind=LedgerAccount.Kind.CLIENT_BALANCE), amount),
        ],
        lease_id=lease.pk,
        memo=f"Lease {lease.pk}: {memo}",
    )


def post_close(*, lease: Lease, paid: int, refunded: int, now: datetime, tx_hash: str = "") -> Lease:
    """Book a closed lease: pay the provider, refund the client, release the capacity.

    The caller holds the lease's lock. ``paid`` is what closing pays on top of the settlements made
    while the lease ran (``settled_amount``); with the escrow on chain, ``paid`` and ``refunded``
    are what the chain moved.
    """
    if lease.settled_amount + paid + refunded != lease.deposit:
        raise ValueError(
            f"lease {lease.pk}: settled {lease.settled_amount} + paid {paid} + refunded {refunded} "
            f"is not the deposit {lease.deposit}"
        )
    # Lock order everywhere: lease/order, then provider rows, then ledger accounts by id.
    capacity_release(reservation=reservation_for(lease))
    earnings = ledger.user_account(user=lease.provider.user_id, kind=LedgerAccount.Kind.PROVIDER_EARNINGS)
    ledger.post(
        key=f"lease:{lease.pk}:payout",
        kind=LedgerTransaction.Kind.LEASE_PAYOUT,
        legs=ledger.payout_legs(
            escrow=ledger.escrow_account(lease_id=lease.pk),
            earnings=earnings,
            amount=paid,
            fee_bps=lease.platform_fee_bps,
        ),
        lease_id=lease.pk,
        memo=f"Payment for lease {lease.pk}",
    )
    refund_to_client(lease=lease, amount=refunded, key=f"lease:{lease.pk}:refund", memo="the unused deposit")
    lease.closed_at = now
    lease.paid_to_provider = lease.settled_amount + paid
    lease.platform_fee += ledger.platform_fee(paid, lease.platform_fee_bps)
    lease.refunded_to_client = refunded
    lease.close_tx_hash = tx_hash
    return states.lease_transition(
        lease,
        Lease.Status.CLOSED,
        fields=[
            "closed_at",
            "closed_by",
            "close_reason",
            "paid_to_provider",
            "platform_fee",
            "refunded_to_client",
            "close_tx_hash",
        ],
    )


def top_up_confirm(*, top_up: LeaseTopUp, lease: Lease, now: datetime | None = None, tx_hash: str = "") -> None:
    """The escrow holds the top-up: extend the lease, and resume it if it was waiting for one.
    The caller holds the lease's lock."""
    now = now or timezone.now()
    top_up.status = LeaseTopUp.Status.CONFIRMED
    top_up.confirmed_at = now
    top_up.tx_hash = tx_hash
    top_up.save(update_fields=["status", "confirmed_at", "tx_hash"])
    lease.deposit += top_up.amount
    lease.ends_at = max(lease.ends_at, now) + timedelta(seconds=top_up.amount * 3600 // lease.price_per_hour)
    if lease.ends_at - now > timedelta(seconds=settings.LOW_FUNDS_WARNING_SECONDS):
        lease.low_funds_warned_at = None  # warned again when the new deposit runs low
    if top_up.source == LeaseTopUp.Source.AUTO:
        lease.auto_topped_up += top_up.amount
    fields = ["deposit", "ends_at", "low_funds_warned_at", "auto_topped_up"]
    if lease.status != Lease.Status.INSUFFICIENT_FUNDS:
        lease.save(update_fields=fields)
        lease_event(lease, "lease.topped_up")
        return
    lease.resumed_at = now
    lease.suspended_at = lease.grace_ends_at = None
    lease.status_reason = "topped up: the provider restarts the workload"
    states.lease_transition(
        lease,
        Lease.Status.DEPLOYING,
        fields=[*fields, "resumed_at", "suspended_at", "grace_ends_at", "status_reason"],
        events_before=["lease.topped_up"],
    )


def top_up_reserve(*, top_up: LeaseTopUp, lease: Lease, memo: str) -> None:
    """Move the top-up's amount from the client's balance into the lease's escrow account (once per
    top-up). The caller holds the lease's lock."""
    ledger.post(
        key=f"lease:{lease.pk}:top-up:{top_up.pk}",
        kind=LedgerTransaction.Kind.LEASE_TOP_UP,
        legs=[
            (ledger.user_account(user=lease.client_id, kind=LedgerAccount.Kind.CLIENT_BALANCE), -top_up.amount),
            (ledger.escrow_account(lease_id=lease.pk), top_up.amount),
        ],
        lease_id=lease.pk,
        memo=memo,
    )


def top_up_from_wallet(*, lease: Lease, amount: int, tx_hash: str) -> LeaseTopUp:
    """The client topped its lease up in the escrow contract itself: book the move from its balance
    to the lease and confirm it at once. The caller holds the lease's lock."""
    top_up = LeaseTopUp.objects.create(
        lease=lease, amount=amount, source=LeaseTopUp.Source.WALLET, status=LeaseTopUp.Status.CONFIRMED
    )
    top_up_reserve(top_up=top_up, lease=lease, memo=f"Top-up of lease {lease.pk} from the client's wallet, {tx_hash}")
    top_up_confirm(top_up=top_up, lease=lease, tx_hash=tx_hash)
    return top_up


def top_up_fail(*, top_up_id: int, reason: str) -> LeaseTopUp:
    """The escrow refused a pending top-up: its amount goes back to the client's balance."""
    with transaction.atomic():
        lease_id = LeaseTopUp.objects.values_list("lease_id", flat=True).get(pk=top_up_id)
        lease = Lease.objects.select_for_update().get(pk=lease_id)  # lock order: the lease first
        top_up = LeaseTopUp.objects.select_for_update().get(pk=top_up_id)
        if top_up.status != LeaseTopUp.Status.PENDING:
            return top_up
        refund_to_client(
            lease=lease,
            amount=top_up.amount,
            key=f"lease:{lease.pk}:top-up:{top_up.pk}:returned",
            memo="top-up refused",
        )
        top_up.status = LeaseTopUp.Status.FAILED
        top_up.failure_reason = reason[:200]
        top_up.save(update_fields=["status", "failure_reason"])
    logger.warning("top-up %s of lease %s failed: %s", top_up.pk, top_up.lease_id, reason)
    return top_up


def settlements_book(payouts: list[tuple[int, int, str, str]]) -> int:
    """Book settlements, ``(lease id, amount, key, memo)`` each, at most one per lease: escrow →
    provider earnings less the lease's platform fee, once per key, all in one transaction with
    bulk writes. Returns how many were booked now."""
    if len({lease_id for lease_id, *_ in payouts}) != len(payouts):
        raise ValueError("one settlement per lease in a booking")
    wanted = {lease_id: (amount, key, memo) for lease_id, amount, key, memo in payouts if amount > 0}
    if not wanted:
        return 0
    with transaction.atomic():
        # lock order everywhere: leases, then ledger accounts by id (post_many)
        leases = list(
            Lease.objects.select_for_update()
            .filter(pk__in=list(wanted))
            .order_by("pk")
            .only("settled_amount", "platform_fee_bps", "platform_fee")
        )
        escrows = {a.lease_id: a for a in LedgerAccount.objects.filter(lease_id__in=[lease.pk for lease in leases])}
        owners = dict(Provider.objects.filter(leases__in=leases).values_list("leases__pk", "user_id"))
        earnings = {
            user_id: ledger.user_account(user=user_id, kind=LedgerAccount.Kind.PROVIDER_EARNINGS)
            for user_id in set(owners.values())
        }
        platform = ledger.platform_fees_account() if any(lease.platform_fee_bps for lease in leases) else None
        posted = ledger.post_many(
            [
                ledger.Posting(
                    key=wanted[lease.pk][1],
                    kind=LedgerTransaction.Kind.LEASE_PAYOUT,
                    legs=ledger.payout_legs(
                        escrow=escrows[lease.pk],
                        earnings=earnings[owners[lease.pk]],
                        amount=wanted[lease.pk][0],
                        fee_bps=lease.platform_fee_bps,
                        platform=platform,
                    ),
                    lease_id=lease.pk,
                    memo=wanted[lease.pk][2],
                )
                for lease in leases
            ]
        )
        booked = [lease for lease in leases if wanted[lease.pk][1] in posted]
        update_column(
            Lease, "settled_amount", {lease.pk: lease.settled_amount + wanted[lease.pk][0] for lease in booked}
        )
        charged = [lease for lease in booked if lease.platform_fee_bps]
        if charged:
            update_column(
                Lease,
                "platform_fee",
                {
                    lease.pk: lease.platform_fee + ledger.platform_fee(wanted[lease.pk][0], lease.platform_fee_bps)
                    for lease in charged
                },
            )
    return len(booked)


def settlement_mirror(*, lease_id: int, amount: int, key: str, memo: str) -> bool:
    """Book one settlement (see ``settlements_book``); True if it is new."""
    return settlements_book([(lease_id, amount, key, memo)]) == 1
