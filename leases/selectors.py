"""Reads for leases, balances and the ledger."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.models import User
from leases.accrual import elapsed_seconds, owed_amount
from leases.models import Lease, LedgerAccount, LedgerEntry, UsageReport


def leases_visible_to(*, user: User, roles: set[str]) -> QuerySet[Lease]:
    """A client sees its leases, a provider the leases it serves."""
    visible = Q(pk__in=[])
    if "client" in roles:
        visible |= Q(client=user)
    if "provider" in roles:
        visible |= Q(provider__user=user)
    return with_usage(Lease.objects.filter(visible).select_related("provider", "gpu_model"))


def with_usage(leases: QuerySet[Lease]) -> QuerySet[Lease]:
    """Leases annotated with what ``lease_run_seconds`` needs, in the same query."""
    reports = UsageReport.objects.filter(lease=OuterRef("pk"))
    last = reports.order_by("-period_start")
    return leases.annotate(
        usage_run_seconds=Coalesce(
            Subquery(reports.order_by().values("lease").annotate(total=Sum("run_seconds")).values("total")[:1]),
            Value(0),
        ),
        usage_last_start=Subquery(last.values("period_start")[:1]),
        usage_last_end=Subquery(last.values("period_end")[:1]),
        usage_last_run=Subquery(last.values("run_seconds")[:1]),
    )


def lease_run_seconds(*, lease: Lease, until: datetime, tail: bool = True) -> int:
    """Seconds the provider's agent reported the workload running, plus the stretch since its last
    report if that report showed it running to the end (at most ``USAGE_TAIL_SECONDS``: the report
    that would cover it may arrive after the lease closed)."""
    if not hasattr(lease, "usage_run_seconds"):
        lease = with_usage(Lease.objects.filter(pk=lease.pk)).get()
    total = int(lease.usage_run_seconds or 0)
    start, end, run = lease.usage_last_start, lease.usage_last_end, lease.usage_last_run
    if tail and end is not None and run is not None and run >= (end - start).total_seconds() - 1:
        total += max(0, min(int((until - end).total_seconds()), settings.USAGE_TAIL_SECONDS))
    return total


def lease_owed(*, lease: Lease, until: datetime, tail: bool = True) -> int:
    """What the provider has earned by ``until``: see ``leases.accrual``. Without ``tail``, only
    reported usage counts."""
    return owed_amount(
        price_per_hour=lease.price_per_hour,
        deposit=lease.deposit,
        elapsed_seconds=elapsed_seconds(started_at=lease.started_at, until=until, duration_hours=lease.duration_hours),
        run_seconds=lease_run_seconds(lease=lease, until=until, tail=tail),
    )


def lease_accrued_now(lease: Lease) -> int:
    if lease.status == Lease.Status.CLOSED:
        return lease.paid_to_provider
    return lease_owed(lease=lease, until=timezone.now())


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
