"""Writes for leases: open (funded from the client's balance), close (pay and refund).

With ``ESCROW_BACKEND=ledger`` the database ledger is the escrow and both happen at once. With
``ESCROW_BACKEND=chain`` the escrow contract holds the deposit: award reserves the deposit in
the ledger and leaves the lease ``funding`` until the chain confirms (``leases.escrow``); close
leaves it ``closing`` and the ledger posts what the chain paid and refunded.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Task
from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from chain.models import Wallet
from core import queueing, realtime
from core.bulk import update_column
from core.errors import Conflict, DomainError, NotAllowed, NotFound, ValidationFailed
from core.models import User
from leases import ledger, selectors, states, tasks
from leases.events import lease_changed, lease_event
from leases.models import Lease, LeaseLog, LeaseTopUp, LedgerAccount, LedgerTransaction, UsageReport
from leases.selectors import lease_owed
from notifications.services import notify
from providers.agent import usage
from providers.models import Provider
from providers.services import Reservation, capacity_release

logger = logging.getLogger(__name__)


def escrow_on_chain() -> bool:
    return settings.ESCROW_BACKEND == "chain"


def _enqueue(task: Task, object_id: int) -> None:
    """Queue a chain task (called after commit); if the broker is down, the chain sync retries it."""
    queueing.send(task, object_id)


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
    )
    states.lease_transition(lease, Lease.Status.FUNDING if escrow_on_chain() else Lease.Status.FUNDED)
    escrow = ledger.escrow_account_open(lease=lease)
    client_balance = ledger.user_account(user=order.client_id, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    ledger.post(
        key=f"lease:{lease.pk}:fund",
        kind=LedgerTransaction.Kind.LEASE_FUND,
        legs=[(client_balance, -deposit), (escrow, deposit)],
        lease=lease,
        memo=f"Deposit for lease {lease.pk} (order {order.pk})",
    )
    if lease.status == Lease.Status.FUNDING:
        transaction.on_commit(lambda: _enqueue(tasks.fund_lease_on_chain, lease.pk))
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


def _close(
    *,
    lease_id: int,
    closed_by: str,
    reason: str,
    now: datetime | None = None,
    nothing_earned: bool = False,
    tail: bool = True,
) -> Lease:
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
        if _has_pending_top_up(lease):
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
        if escrow_on_chain():
            lease.close_requested_amount = earned
            states.lease_transition(
                lease, Lease.Status.CLOSING, fields=["closed_by", "close_reason", "close_requested_amount"]
            )
            transaction.on_commit(lambda: _enqueue(tasks.close_lease_on_chain, lease.pk))
            return lease
        return post_close(lease=lease, paid=earned, refunded=lease.deposit - lease.settled_amount - earned, now=now)


def lease_close_for_cause(*, lease_id: int, reason: str, now: datetime | None = None) -> Lease:
    """Close a lease the marketplace stops (its provider's GPUs failed a check): nothing more is
    paid to the provider, the whole unsettled deposit goes back to the client."""
    return _close(lease_id=lease_id, closed_by=Lease.ClosedBy.SYSTEM, reason=reason, now=now, nothing_earned=True)


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
            lease=lease,
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
        lease=lease,
        memo=f"Lease {lease.pk}: {memo}",
    )


def refund_to_client(*, lease: Lease, amount: int, key: str, memo: str) -> None:
    """Move ``amount`` from the lease's escrow account back to its client's balance."""
    ledger.post(
        key=key,
        kind=LedgerTransaction.Kind.LEASE_REFUND,
        legs=[
            (LedgerAccount.objects.get(lease=lease), -amount),
            (ledger.user_account(user=lease.client_id, kind=LedgerAccount.Kind.CLIENT_BALANCE), amount),
        ],
        lease=lease,
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
            escrow=LedgerAccount.objects.get(lease=lease),
            earnings=earnings,
            amount=paid,
            fee_bps=lease.platform_fee_bps,
        ),
        lease=lease,
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


# --- top-ups, running out, the grace period -------------------------------------------------------
def _has_pending_top_up(lease: Lease) -> bool:
    return LeaseTopUp.objects.filter(lease=lease, status=LeaseTopUp.Status.PENDING).exists()


def lease_top_up(
    *, user: User, lease_id: int, amount: Any, source: str = LeaseTopUp.Source.CLIENT, now: datetime | None = None
) -> LeaseTopUp:
    """Add ``amount`` from the client's balance to its lease's deposit.

    The lease runs ``amount * 3600 // price_per_hour`` seconds longer; a lease waiting in its grace
    period (``insufficient_funds``) resumes. With the ledger as escrow this happens at once; with
    the escrow on chain the amount is reserved from the balance and the top-up stays ``pending``
    until the contract confirms it (or refuses it, and the amount goes back).
    """
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
        if _has_pending_top_up(lease):
            raise Conflict(f"Lease {lease.pk} has a top-up waiting for the escrow.", code="top_up_pending")
        top_up = LeaseTopUp.objects.create(lease=lease, amount=amount, source=source)
        ledger.post(
            key=f"lease:{lease.pk}:top-up:{top_up.pk}",
            kind=LedgerTransaction.Kind.LEASE_TOP_UP,
            legs=[
                (ledger.user_account(user=lease.client_id, kind=LedgerAccount.Kind.CLIENT_BALANCE), -amount),
                (LedgerAccount.objects.get(lease=lease), amount),
            ],
            lease=lease,
            memo=f"Top-up of lease {lease.pk}",
        )
        if escrow_on_chain():
            transaction.on_commit(lambda: _enqueue(tasks.top_up_lease_on_chain, top_up.pk))
        else:
            top_up_confirm(top_up=top_up, lease=lease, now=now)
    return top_up


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


def _auto_top_up(lease: Lease, *, now: datetime) -> bool:
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
            if lease.status not in states.RUNNABLE or lease.ends_at > now or _has_pending_top_up(lease):
                continue
            if _auto_top_up(lease, now=now):
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
            _close(lease_id=lease_id, closed_by=Lease.ClosedBy.SYSTEM, reason=reason, now=now, tail=tail)
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


# --- What the provider's agent reports ---------------------------------------------------------


def lease_for_provider(*, user: User, lease_id: int) -> Lease:
    lease = (
        Lease.objects.select_related("order", "gpu_model", "provider").filter(pk=lease_id, provider__user=user).first()
    )
    if lease is None:
        raise NotFound("No such lease.")
    return lease


MAX_LOG_BYTES = 64_000


def lease_logs_put(*, user: User, lease_id: int, text: str) -> LeaseLog:
    """The provider's agent replaces the lease's log tail (at most ``MAX_LOG_BYTES``) until the lease
    closes; the lease page hears of it."""
    if not isinstance(text, str):
        raise ValidationFailed("Invalid log.", fields={"text": ["The log tail, as text."]})
    text = text.replace("\x00", "")
    if len(text.encode()) > MAX_LOG_BYTES:
        raise ValidationFailed(
            "The log tail is too long.", code="logs_too_large", fields={"text": [f"At most {MAX_LOG_BYTES} bytes."]}
        )
    lease = lease_for_provider(user=user, lease_id=lease_id)
    if lease.status == Lease.Status.CLOSED:
        raise Conflict("The lease is closed.", code="lease_closed")
    log, _ = LeaseLog.objects.update_or_create(lease=lease, defaults={"text": text})
    realtime.publish(realtime.lease_group(lease.pk), {"type": "lease.logs", "lease": lease.pk})
    return log


def lease_manifest(*, user: User, lease_id: int) -> Lease:
    """The lease its provider should run: only while there is something to run."""
    lease = lease_for_provider(user=user, lease_id=lease_id)
    if lease.status not in states.RUNNABLE:
        raise Conflict(f"The lease is {lease.status}: there is nothing to run.", code="lease_not_deployable")
    return lease


def lease_report_status(
    *, user: User, lease_id: int, status: str, endpoints: list[str] | None = None, reason: str = ""
) -> Lease:
    """The provider's agent moves a lease: deploying, running (with endpoints), or failed.

    A failed lease is closed at once and earns nothing more: its client gets back all of the deposit
    that settlements of reported usage did not already pay.
    """
    lease = lease_for_provider(user=user, lease_id=lease_id)
    allowed_from = states.PROVIDER_REPORTS.get(status)
    if allowed_from is None:
        raise Conflict(f"A provider cannot set a lease to {status}.", code="illegal_transition")
    with transaction.atomic():
        lease = Lease.objects.select_for_update().get(pk=lease.pk)
        if lease.status not in allowed_from:
            raise Conflict(f"The lease is {lease.status}; it cannot become {status}.", code="illegal_transition")
        if status == Lease.Status.FAILED:
            lease.status_reason = reason[:500]
            lease.save(update_fields=["status_reason"])
            return _close(
                lease_id=lease.pk,
                closed_by=Lease.ClosedBy.PROVIDER,
                reason=f"the deployment failed: {reason}",
                nothing_earned=True,
            )
        lease.status_reason = reason[:500]
        if endpoints is not None:
            lease.endpoints = endpoints
        if status == lease.status:  # the same state again: new endpoints or a new word on it
            lease.save(update_fields=["status_reason", "endpoints"])
            lease_changed(lease)
        else:
            states.lease_transition(lease, status, fields=["status_reason", "endpoints"])
    return lease


USAGE_BATCH_MAX = 500  # reports in one request


@dataclass(frozen=True)
class UsageOutcome:
    """What became of one report of a batch: stored now, stored before (a resend), or refused."""

    lease_id: int
    period_start: int
    report: UsageReport | None = None
    created: bool = False
    error: DomainError | None = None


def usage_report_accept(
    *,
    user: User,
    lease_id: int,
    period_start: int,
    period_end: int,
    gpu_seconds: int,
    run_seconds: int,
    restarts: int,
    signature: str,
    now: datetime | None = None,
) -> tuple[UsageReport, bool]:
    """Store one signed usage report (see ``usage_reports_accept``); returns (report, created), or
    raises why it was refused."""
    [outcome] = usage_reports_accept(
        user=user,
        reports=[
            {
                "lease": lease_id,
                "period_start": period_start,
                "period_end": period_end,
                "gpu_seconds": gpu_seconds,
                "run_seconds": run_seconds,
                "restarts": restarts,
                "signature": signature,
            }
        ],
        now=now,
    )
    if outcome.error is not None:
        raise outcome.error
    assert outcome.report is not None
    return outcome.report, outcome.created


def _usage_checked(report: dict, lease: Lease | None, wallets: set[str]) -> tuple[str, DomainError | None]:
    """The checks of one report that need no lock: the lease is the provider's, the numbers fit
    the period, the signature recovers to an address the provider linked. Returns (signer, error)."""
    if lease is None:
        return "", NotFound("No such lease.")
    length = report["period_end"] - report["period_start"]
    if length <= 0:
        return "", ValidationFailed(
            "The period must end after it starts.", fields={"period_end": ["After period_start."]}
        )
    if report["gpu_seconds"] > lease.gpu_count * length:
        return "", ValidationFailed(
            f"{report['gpu_seconds']} GPU-seconds do not fit {lease.gpu_count} GPUs for {length} s.",
            code="usage_exceeds_period",
            fields={"gpu_seconds": [f"At most {lease.gpu_count * length}."]},
        )
    if report["run_seconds"] > length:
        return "", ValidationFailed(
            "The workload cannot run longer than the period.",
            code="usage_exceeds_period",
            fields={"run_seconds": [f"At most {length}."]},
        )
    signed = usage.UsageReport(
        lease=lease.pk,
        period_start=report["period_start"],
        period_end=report["period_end"],
        gpu_seconds=report["gpu_seconds"],
        run_seconds=report["run_seconds"],
        restarts=report["restarts"],
    )
    try:
        signer = usage.signer_of(signed, chain_id=settings.USAGE_SIGNING_CHAIN_ID, signature=report["signature"])
    except ValueError as exc:
        return "", ValidationFailed(
            "Not a valid signature.", code="invalid_signature", fields={"signature": [str(exc)[:200]]}
        )
    if signer not in wallets:
        return "", NotAllowed(
            f"The report is signed by {signer}, which is not linked to your account: link the agent's "
            "signing address as a wallet.",
            code="unknown_signer",
        )
    return signer, None


def usage_reports_accept(*, user: User, reports: list[dict], now: datetime | None = None) -> list[UsageOutcome]:
    """Store signed usage reports from a provider's agent, many leases at once; one outcome per
    report, in the order given.

    A report is refused (its outcome carries the error; the others are stored) unless: its lease
    is the provider's; the signature recovers to an address the provider linked; GPU-seconds fit
    ``GPUs x period`` and running time fits the period; the period lies inside the lease, ends
    no later than now (with ``USAGE_CLOCK_SKEW_SECONDS``) and starts at or after the end of the
    lease's last report (periods only move forward, never overlap). A report sent again (an agent
    retrying after a lost answer) is recognised by its lease, start and signature and returns the
    stored one. Signatures are checked before any lock; one transaction then locks the leases,
    reads each one's last period and inserts the accepted reports in bulk.
    """
    now = now or timezone.now()
    lease_ids = {int(r["lease"]) for r in reports}
    leases = {
        lease.pk: lease for lease in Lease.objects.filter(pk__in=lease_ids, provider__user=user).only("pk", "gpu_count")
    }
    wallets = set(Wallet.objects.filter(user_id=user.pk).values_list("address", flat=True))
    outcomes: list[UsageOutcome | None] = [None] * len(reports)
    checked: list[tuple[int, dict, str]] = []  # (position, report, signer) of those that passed
    for position, report in enumerate(reports):
        signer, error = _usage_checked(report, leases.get(int(report["lease"])), wallets)
        if error is not None:
            outcomes[position] = UsageOutcome(int(report["lease"]), report["period_start"], error=error)
        else:
            checked.append((position, report, signer))
    if checked:
        _usage_store(checked, outcomes, now=now)
    return [outcome for outcome in outcomes if outcome is not None]


def _usage_store(checked: list[tuple[int, dict, str]], outcomes: list, *, now: datetime) -> None:
    """Under the leases' locks: the checks that depend on what is stored, then one bulk insert."""
    latest = now + timedelta(seconds=settings.USAGE_CLOCK_SKEW_SECONDS)
    ids = sorted({int(report["lease"]) for _, report, _ in checked})
    starts = {datetime.fromtimestamp(report["period_start"], tz=UTC) for _, report, _ in checked}
    with transaction.atomic():
        last_end = Subquery(
            UsageReport.objects.filter(lease=OuterRef("pk")).order_by("-period_start").values("period_end")[:1]
        )
        leases = {
            lease.pk: lease
            for lease in Lease.objects.select_for_update(of=("self",))
            .filter(pk__in=ids)
            .order_by("pk")
            .only("pk", "status", "started_at", "closed_at")
            .annotate(last_end=last_end)
        }
        stored = {
            (r.lease_id, r.period_start): r
            for r in UsageReport.objects.filter(lease_id__in=ids, period_start__in=starts)
        }
        new: list[UsageReport] = []
        positions: list[int] = []
        # each lease's reports in period order, so an agent's backlog is taken in one go
        for position, report, signer in sorted(checked, key=lambda c: (int(c[1]["lease"]), c[1]["period_start"])):
            lease = leases[int(report["lease"])]
            start = datetime.fromtimestamp(report["period_start"], tz=UTC)
            end = datetime.fromtimestamp(report["period_end"], tz=UTC)
            error = _usage_refusal(
                lease, start=start, end=end, latest=latest, signature=report["signature"], stored=stored
            )
            if isinstance(error, UsageReport):  # the same report again
                outcomes[position] = UsageOutcome(lease.pk, report["period_start"], report=error)
                continue
            if error is not None:
                outcomes[position] = UsageOutcome(lease.pk, report["period_start"], error=error)
                continue
            row = UsageReport(
                lease=lease,
                period_start=start,
                period_end=end,
                gpu_seconds=report["gpu_seconds"],
                run_seconds=report["run_seconds"],
                restarts=report["restarts"],
                signer=signer,
                signature=report["signature"],
                received_at=now,
            )
            stored[(lease.pk, start)] = row
            lease.last_end = end
            new.append(row)
            positions.append(position)
        UsageReport.objects.bulk_create(new)
    for position, row in zip(positions, new, strict=True):
        outcomes[position] = UsageOutcome(row.lease_id, int(row.period_start.timestamp()), report=row, created=True)


def _usage_refusal(
    lease: Lease,
    *,
    start: datetime,
    end: datetime,
    latest: datetime,
    signature: str,
    stored: dict[tuple[int, datetime], UsageReport],
) -> DomainError | UsageReport | None:
    """Why a report cannot be stored now (None: it can), or the stored report it repeats."""
    replay = stored.get((lease.pk, start))
    if replay is not None and replay.signature == signature:
        return replay
    if lease.status not in states.USAGE:
        return Conflict(f"The lease is {lease.status}: it has no usage to report.", code="lease_not_running")
    if start < lease.started_at.replace(microsecond=0):
        return ValidationFailed("The period starts before the lease.", code="usage_outside_lease")
    if lease.closed_at is not None:
        latest = min(latest, lease.closed_at + timedelta(seconds=1))
    if end > latest:
        return ValidationFailed("The period ends after the lease closed or in the future.", code="usage_outside_lease")
    if lease.last_end is not None and start < lease.last_end:
        return Conflict(
            f"The period overlaps the last report, which ended at {int(lease.last_end.timestamp())}.",
            code="usage_overlap",
        )
    return None


# --- settlement -----------------------------------------------------------------------------
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
                    lease=lease,
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

    With the ledger as escrow the leases are booked in batches, idempotent per (lease, amount owed).
    With the escrow on chain the amounts go out in batched ``settle`` calls; the ledger books what
    the chain's ``Settled`` events say, once per event, so a retried or lost transaction never
    pays twice (the chain also caps each lease at its rate since its last settlement). Before the
    amounts are worked out, settlements the chain made that the books miss (a worker killed after
    sending, a node gone before it answered) are booked, so the same usage is never sent again.
    Returns how many leases were paid.
    """
    now = now or timezone.now()
    if escrow_on_chain():
        from leases.escrow import chain_settlements_catch_up

        if not chain_settlements_catch_up():
            return 0
    due = settlements_due(now=now, limit=limit)
    if not due:
        return 0
    size = batch_size or settings.SETTLEMENT_BATCH_SIZE
    if not escrow_on_chain():
        paid, ids = 0, sorted(due)
        for start in range(0, len(ids), size):
            with transaction.atomic():
                batch = ids[start : start + size]
                # under the lock: closed meanwhile (closing paid it) or already settled are left out
                settled = dict(
                    Lease.objects.select_for_update()
                    .filter(pk__in=batch, status__in=states.SETTLING)
                    .order_by("pk")
                    .values_list("pk", "settled_amount")
                )
                paid += settlements_book(
                    [
                        (
                            lease_id,
                            due[lease_id][0] - settled[lease_id],
                            f"lease:{lease_id}:settle:{due[lease_id][0]}",
                            f"Settlement of lease {lease_id} up to {ledger.format_usd(due[lease_id][0])}",
                        )
                        for lease_id in batch
                        if lease_id in settled
                    ]
                )
        return paid
    from leases.escrow import leases_settle_on_chain  # the chain side lives with the other chain code

    return leases_settle_on_chain(due={i: owed - settled for i, (owed, settled) in due.items()}, batch_size=size)


# --- funds running out --------------------------------------------------------------------------
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
            if lease.low_funds_warned_at is not None or _has_pending_top_up(lease):
                continue
            if _auto_top_up(lease, now=now):
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
