"""Reads for leases, balances and the ledger."""

from dataclasses import dataclass

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from core.models import User
from leases.accrual import accrued_amount, elapsed_seconds
from leases.models import Lease, LedgerAccount, LedgerEntry, UsageReport


def leases_visible_to(*, user: User, roles: set[str]) -> QuerySet[Lease]:
    """A client sees its leases, a provider the leases it serves."""
    visible = Q(pk__in=[])
    if "client" in roles:
        visible |= Q(client=user)
    if "provider" in roles:
        visible |= Q(provider__user=user)
    return Lease.objects.filter(visible).select_related("provider", "gpu_model")


def lease_accrued_now(lease: Lease) -> int:
    if lease.status == Lease.Status.CLOSED:
        return lease.paid_to_provider
    seconds = elapsed_seconds(started_at=lease.started_at, until=timezone.now(), duration_hours=lease.duration_hours)
    return accrued_amount(price_per_hour=lease.price_per_hour, seconds=seconds, deposit=lease.deposit)


@dataclass(frozen=True)
class AccountSummary:
    balance: int
    in_escrow: int
    earnings: int


def account_summary(*, user: User) -> AccountSummary:
    accounts = dict(LedgerAccount.objects.filter(owner=user).values_list("kind", "balance"))
    in_escrow = (
        LedgerAccount.objects.filter(kind=LedgerAccount.Kind.LEASE_ESCROW, lease__client=user).aggregate(
            total=Sum("balance")
        )["total"]
        or 0
    )
    return AccountSummary(
        balance=accounts.get(LedgerAccount.Kind.CLIENT_BALANCE, 0),
        in_escrow=in_escrow,
        earnings=accounts.get(LedgerAccount.Kind.PROVIDER_EARNINGS, 0),
    )


def ledger_for_user(*, user: User) -> QuerySet[LedgerEntry]:
    """Movements on the user's balance and earnings, newest first."""
    return (
        LedgerEntry.objects.filter(
            account__owner=user,
            account__kind__in=[LedgerAccount.Kind.CLIENT_BALANCE, LedgerAccount.Kind.PROVIDER_EARNINGS],
        )
        .select_related("transaction", "account")
        .order_by("-id")
    )


def usage_reports_for(*, lease: Lease) -> QuerySet[UsageReport]:
    return UsageReport.objects.filter(lease=lease).order_by("period_start")
