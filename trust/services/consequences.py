"""What a failed check costs its provider: every lease on the failed GPUs closes, and each client
is owed what its lease paid since those GPUs last passed (``consequences_apply``); the
compensations are paid afterwards, from earnings or by slashing the stake (``compensations_pay``).

Closing a lease never waits for the money: the lease closes first (nothing more paid, the unsettled
deposit refunded), its compensation is fixed then, and paid afterwards (on chain, by slashing).
"""

import logging
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core import queueing
from core.errors import Conflict
from core.money import format_usd
from leases import states as lease_states
from leases.escrow import escrow
from leases.models import Lease
from leases.selectors import lease_owed
from leases.services import lease_close_for_cause
from notifications.services import notify
from trust import tasks
from trust.models import Compensation, GpuCheck
from trust.services.reputation import reputations_update

logger = logging.getLogger(__name__)
PAY_LOCK_SECONDS = 600  # longer than slashing for every lease of a check may take


def consequences_apply(*, check_id: int, now: datetime | None = None) -> int:
    """A failed check closes every lease on the failed GPUs (the provider's GPUs of the checked
    model) and owes each client everything the lease paid since those GPUs last passed a check.
    Returns how many leases it closed now. A lease that cannot close yet (its deposit or a top-up is
    on its way to the escrow) is closed by a later sweep."""
    now = now or timezone.now()
    check = GpuCheck.objects.select_related("provider").get(pk=check_id)
    if check.status != GpuCheck.Status.FAILED or check.consequences_at is not None:
        return 0
    passed_at = (
        GpuCheck.objects.filter(
            provider_id=check.provider_id, gpu_model_id=check.gpu_model_id, status=GpuCheck.Status.PASSED
        )
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    closed, waiting = 0, False
    leases = Lease.objects.filter(
        provider_id=check.provider_id, gpu_model_id=check.gpu_model_id, status__in=lease_states.OPEN
    ).order_by("pk")
    for lease_id in leases.values_list("pk", flat=True):
        with transaction.atomic():
            lease = Lease.objects.select_for_update().get(pk=lease_id)
            compensation = Compensation.objects.filter(lease=lease).first()
            if compensation is None:
                since = max(lease.started_at, passed_at) if passed_at else lease.started_at
                earned_before = lease_owed(lease=lease, until=since, tail=False)
                compensation = Compensation.objects.create(
                    gpu_check=check,
                    lease=lease,
                    client_id=lease.client_id,
                    since=since,
                    refund=max(0, lease.settled_amount - earned_before),
                )
            if lease.status == Lease.Status.CLOSING:  # closing already: nothing more is paid beyond its ask
                continue
            try:
                lease_close_for_cause(
                    lease_id=lease.pk,
                    reason=f"its GPUs failed proof-of-GPU check {check.pk} ({check.get_failure_display().lower()})",
                    now=now,
                )
                closed += 1
            except Conflict:
                waiting = True
    if not waiting:
        GpuCheck.objects.filter(pk=check.pk).update(consequences_at=now)
        transaction.on_commit(lambda: queueing.send(tasks.pay_compensations, check.pk))
    if closed:
        logger.warning("check %s failed: closed %d leases of provider %s", check.pk, closed, check.provider_id)
        reputations_update(provider_ids=[check.provider_id], now=now)
    return closed


def consequences_due(*, limit: int = 100) -> list[int]:
    """Failed checks whose leases are not all closed yet."""
    due = GpuCheck.objects.filter(status=GpuCheck.Status.FAILED, consequences_at__isnull=True).order_by("pk")
    return list(due.values_list("pk", flat=True)[:limit])


def compensations_due(*, limit: int = 100) -> list[int]:
    """Failed checks with compensations still to pay."""
    due = Compensation.objects.filter(status=Compensation.Status.PENDING, gpu_check__consequences_at__isnull=False)
    return sorted(set(due.values_list("gpu_check_id", flat=True)[:limit]))


def compensations_pay(*, check_id: int, now: datetime | None = None) -> int:
    """Pay the compensations a failed check owes; returns how many were paid now.

    - Ledger escrow: each client gets its refund back from the provider's earnings and the
      platform's fee, as far as their balances go.
    - Escrow on chain: the verifier slashes the provider's stake. First the refunds (pro rata to
      them if the stake cannot cover them all), then ``PROOF_SLASH_BPS`` of what stake remains, as a
      penalty shared by the affected clients pro rata to their leases' hourly price. Each share is
      slashed straight to the client's wallet, or to the custody account for a client without one.
    """
    now = now or timezone.now()
    if not cache.add(f"trust:compensations:{check_id}", 1, timeout=PAY_LOCK_SECONDS):
        return 0  # another worker is paying them
    try:
        return _pay(check_id, now)
    finally:
        cache.delete(f"trust:compensations:{check_id}")


def _pay(check_id: int, now: datetime) -> int:
    pending = list(
        Compensation.objects.filter(
            gpu_check_id=check_id, gpu_check__consequences_at__isnull=False, status=Compensation.Status.PENDING
        )
        .select_related("lease__provider", "lease__client")
        .order_by("pk")
    )
    if not pending:
        return 0
    if any(c.payable is None for c in pending):  # fixed once: a retry pays the same
        planned = escrow().compensation_plan(
            [c.lease for c in pending], refunds=[c.refund for c in pending], penalty_bps=settings.PROOF_SLASH_BPS
        )
        for compensation, payable in zip(pending, planned, strict=True):
            compensation.payable = payable
            compensation.penalty = max(0, payable - compensation.refund)
            compensation.save(update_fields=["payable", "penalty"])
    for compensation in pending:

        def paid(given: int, beneficiary: str, compensation: Compensation = compensation) -> None:
            compensation.beneficiary = beneficiary
            _paid(compensation, given, now)

        escrow().compensate(
            compensation.lease,
            amount=compensation.payable or 0,
            key=f"compensation:{compensation.pk}",
            since=compensation.since,
            paid=paid,
        )
    return len(pending)


def _paid(compensation: Compensation, amount: int, now: datetime) -> None:
    compensation.paid, compensation.status, compensation.paid_at = amount, Compensation.Status.PAID, now
    compensation.save(update_fields=["paid", "status", "paid_at", "beneficiary", "payable", "penalty"])
    lease = compensation.lease
    notify(
        user=lease.client,
        kind="lease.compensated",
        title=f"Lease {lease.pk}: {format_usd(amount)} back after its provider failed a GPU check",
        body=(
            f"The GPUs of lease {lease.pk} failed a proof-of-GPU check, so the lease was closed and its unused "
            f"deposit refunded. For the time since the GPUs last passed a check "
            f"({compensation.since:%Y-%m-%d %H:%M} UTC) the lease paid {format_usd(compensation.refund)}; "
            f"{format_usd(amount)} is back in your balance."
        ),
        data={
            "object": "compensation",
            "lease": lease.pk,
            "check": compensation.gpu_check_id,
            "refund": compensation.refund,
            "penalty": compensation.penalty,
            "paid": amount,
            "since": compensation.since.isoformat(),
        },
    )
