"""Reads for leases, balances and the ledger."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from chain.models import ChainEvent
from core.models import User
from leases.accrual import elapsed_seconds, owed_amount
from leases.models import Lease, LeaseLog, LeaseTopUp, ShellSession, UsageReport
from leases.states import CLOSING_OR_CLOSED
from ledger.models import LedgerAccount
from ledger.selectors import balances
from protocol.proof.protocol import envelope


def leases_visible_to(*, user: User, roles: set[str]) -> QuerySet[Lease]:
    """A client sees its leases, a provider the leases it serves."""
    visible = Q(pk__in=[])
    if "client" in roles:
        visible |= Q(client=user)
    if "provider" in roles:
        visible |= Q(provider__user=user)
    # "compensation": the trust app's record of a failed check's refund, shown with a closed lease
    return with_usage(Lease.objects.filter(visible).select_related("provider", "gpu_model", "compensation"))


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


@dataclass(frozen=True)
class SpotCheckTerms:
    """What the proof-of-GPU spot checks cost a lease, as its terms state them."""

    per_day: float  # on average, at random times
    seconds: float  # an honest card's time
    at_most_seconds: float  # the envelope: a slower answer fails


def spot_check_terms() -> SpotCheckTerms:
    return SpotCheckTerms(
        per_day=settings.PROOF_SPOT_CHECKS_PER_DAY,
        seconds=settings.PROOF_TARGET_SECONDS,
        at_most_seconds=envelope(
            settings.PROOF_TARGET_SECONDS, margin=settings.PROOF_MARGIN, allowance=settings.PROOF_ALLOWANCE_SECONDS
        ),
    )


def lease_shell_sessions(lease: Lease) -> QuerySet[ShellSession]:
    """The shells opened into the lease, newest first: who, when, for how long."""
    return ShellSession.objects.filter(lease=lease).select_related("user").order_by("-started_at", "-id")


def lease_log(*, lease: Lease) -> dict[str, Any]:
    """The lease's latest log tail (empty until its provider's agent sends one)."""
    log = LeaseLog.objects.filter(lease=lease).values("text", "updated_at").first()
    return dict(log) if log else {"text": "", "updated_at": None}


def lease_run_seconds(*, lease: Lease, until: datetime, tail: bool = True) -> int:
    """Seconds the provider's agent reported the workload running, plus the stretch since its last
    report if that report showed it running to the end (at most ``USAGE_TAIL_SECONDS``: the report
    that would cover it may arrive after the lease closed)."""
    if not hasattr(lease, "usage_run_seconds"):
        lease = with_usage(Lease.objects.filter(pk=lease.pk)).get()
    total = int(lease.usage_run_seconds or 0)  # type: ignore[attr-defined]  # annotated by with_usage
    start, end, run = lease.usage_last_start, lease.usage_last_end, lease.usage_last_run  # type: ignore[attr-defined]  # annotated by with_usage
    if tail and end is not None and run is not None and run >= (end - start).total_seconds() - 1:
        total += max(0, min(int((until - end).total_seconds()), settings.USAGE_TAIL_SECONDS))
    return total


def lease_owed(*, lease: Lease, until: datetime, tail: bool = True) -> int:
    """What the provider has earned by ``until``: see ``leases.accrual``. Without ``tail``, only
    reported usage counts. A lease waiting for a top-up (``insufficient_funds``) earns nothing
    after its paid time ran out."""
    if lease.suspended_at is not None:
        until = min(until, lease.suspended_at)
    return owed_amount(
        price_per_hour=lease.price_per_hour,
        deposit=lease.deposit,
        elapsed_seconds=elapsed_seconds(started_at=lease.started_at, until=until),
        run_seconds=lease_run_seconds(lease=lease, until=until, tail=tail),
    )


def lease_accrued_now(lease: Lease) -> int:
    if lease.status == Lease.Status.CLOSED:
        return lease.paid_to_provider
    return lease_owed(lease=lease, until=timezone.now())


def lease_accrual_ceiling(lease: Lease) -> int:
    """The most the cost so far can reach before the provider's agent reports again: the reported
    run time plus the tail a report showing the workload running allows. A page's meter ticks up
    to it and no further, so a reload never shows less than the meter did."""
    if lease.status == Lease.Status.CLOSED:
        return lease.paid_to_provider
    return lease_owed(lease=lease, until=lease.ends_at)


def lease_ran(lease: Lease) -> bool:
    """Whether the provider's agent ever reported the workload running."""
    return lease_run_seconds(lease=lease, until=timezone.now(), tail=False) > 0


def lease_remaining_deposit(lease: Lease, *, accrued: int) -> int:
    """What the deposit still holds for the client, given what the provider has accrued."""
    return 0 if lease.status == Lease.Status.CLOSED else lease.deposit - accrued


@dataclass(frozen=True)
class AccountSummary:
    balance: int
    in_escrow: int
    earnings: int


def account_summary(*, user: User) -> AccountSummary:
    accounts = balances(user=user)
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


def usage_reports_for(*, lease: Lease) -> QuerySet[UsageReport]:
    return UsageReport.objects.filter(lease=lease).order_by("period_start")


# --- statements ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatementPeriod:
    period_start: datetime
    period_end: datetime
    run_seconds: int
    gpu_seconds: int
    amount: int  # what the period's running time is worth at the lease's price
    gpu_utilization_pct: float | None = None  # as the agent read NVML when the period ended
    gpu_memory_mib: int | None = None


@dataclass(frozen=True)
class LeaseStatement:
    lease: Lease
    periods: list[StatementPeriod]
    run_seconds: int
    gpu_seconds: int
    usage_amount: int  # the periods' worth, before the time cap and the deposit
    settled: int
    paid_to_provider: int
    platform_fee: int
    refunded_to_client: int


def lease_statement(*, lease: Lease) -> LeaseStatement:
    """A lease's periods of reported usage with what each is worth, and what was paid and refunded.

    Amounts are cut from the running total (``price * seconds so far // 3600``, less the same for
    the periods before), so the periods add up exactly to the total.
    """
    periods, cumulative, before = [], 0, 0
    for report in usage_reports_for(lease=lease):
        cumulative += report.run_seconds
        worth = lease.price_per_hour * cumulative // 3600
        periods.append(
            StatementPeriod(
                period_start=report.period_start,
                period_end=report.period_end,
                run_seconds=report.run_seconds,
                gpu_seconds=report.gpu_seconds,
                amount=worth - before,
                gpu_utilization_pct=report.gpu_utilization_pct,
                gpu_memory_mib=report.gpu_memory_mib,
            )
        )
        before = worth
    return LeaseStatement(
        lease=lease,
        periods=periods,
        run_seconds=cumulative,
        gpu_seconds=sum(p.gpu_seconds for p in periods),
        usage_amount=before,
        settled=lease.settled_amount,
        paid_to_provider=lease.paid_to_provider,
        platform_fee=lease.platform_fee,
        refunded_to_client=lease.refunded_to_client,
    )


# --- provider earnings --------------------------------------------------------------------------
@dataclass(frozen=True)
class LeaseEarning:
    lease: Lease
    owed: int  # earned so far (for a closed lease: what it was paid)
    settled: int  # of which already paid out of its escrow


@dataclass(frozen=True)
class ProviderEarnings:
    accrued: int  # earned by active leases and not settled yet (before the platform fee)
    earned: int  # paid into the provider's earnings: settlements and closes, less platform fees
    platform_fees: int  # the platform's share of what the provider's leases paid out
    claimed: int  # sent to the provider's wallets by the escrow contract (``claim``)
    claimable: int  # earned and not claimed yet
    leases: list[LeaseEarning]


def provider_earnings(*, user: User, limit: int = 100) -> ProviderEarnings:
    """What a provider earned, was paid and claimed, in total and for its most recent leases."""
    now = timezone.now()
    rows = []
    for lease in with_usage(Lease.objects.filter(provider__user=user)).order_by("-created_at", "-id")[:limit]:
        if lease.status in CLOSING_OR_CLOSED:
            owed = lease.paid_to_provider or lease.settled_amount
        else:
            owed = lease_owed(lease=lease, until=now)
        rows.append(LeaseEarning(lease=lease, owed=owed, settled=lease.settled_amount))
    accrued = 0
    active = Lease.objects.filter(provider__user=user).exclude(status__in=CLOSING_OR_CLOSED)
    for lease in with_usage(active):
        accrued += max(0, lease_owed(lease=lease, until=now, tail=False) - lease.settled_amount)
    earned = (
        LedgerAccount.objects.filter(owner=user, kind=LedgerAccount.Kind.PROVIDER_EARNINGS)
        .values_list("balance", flat=True)
        .first()
        or 0
    )
    claimed = claimed_by(addresses=list(user.wallets.values_list("address", flat=True)))
    fees = Lease.objects.filter(provider__user=user).aggregate(total=Sum("platform_fee"))["total"] or 0
    return ProviderEarnings(
        accrued=accrued,
        earned=earned,
        platform_fees=fees,
        claimed=claimed,
        claimable=max(0, earned - claimed),
        leases=rows,
    )


def claimed_by(*, addresses: list[str]) -> int:
    """What the escrow contract sent to these provider wallets (indexed ``Claimed`` events)."""
    if not addresses:
        return 0
    claims = ChainEvent.objects.filter(name="Claimed", args__provider__in=addresses).values_list("args", flat=True)
    return sum(int(args["amount"]) for args in claims)


def has_pending_top_up(lease: Lease) -> bool:
    """A top-up of the lease is on its way to the escrow."""
    return LeaseTopUp.objects.filter(lease=lease, status=LeaseTopUp.Status.PENDING).exists()


JUPYTER_TOKEN = "JUPYTER_TOKEN"  # noqa: S105 - the variable Jupyter reads its token from, not a token
JUPYTER_PORT = 8888


def jupyter_url(lease: Lease) -> str:
    """Where the lease's Jupyter opens with its token (the PyTorch + Jupyter template), or "". Only
    where the workload publishes Jupyter's port alone, so that its one endpoint is that port's."""
    token, endpoint = _env_value(lease, JUPYTER_TOKEN), _sole_endpoint(lease, JUPYTER_PORT)
    return f"http://{endpoint}/lab?{urlencode({'token': token})}" if token and endpoint else ""


def _env_value(lease: Lease, name: str) -> str:
    """The value the lease's order gives the variable ``name`` ("" where it gives none)."""
    return next((e["value"] for e in lease.order.env if e["name"] == name and e["value"]), "")


def _sole_endpoint(lease: Lease, port: int) -> str:
    """The endpoint of ``port``, where the workload publishes that port alone (a lease's endpoints
    are not labelled by port: with one port, its one endpoint is that port's); "" otherwise."""
    ports = [p["port"] for p in lease.order.ports or []]
    return lease.endpoints[0] if ports == [port] and len(lease.endpoints) == 1 else ""


SSH_PORT = 2222  # where SSH images (linuxserver/openssh-server, the SSH box template) listen
SSH_USER = "USER_NAME"  # the variable that names the user they let in


def ssh_command(lease: Lease) -> str:
    """The command that logs into the lease's SSH box (the SSH box template), or "": where its
    workload publishes the SSH port alone, names its user, and has an endpoint."""
    user, endpoint = _env_value(lease, SSH_USER), _sole_endpoint(lease, SSH_PORT)
    if not user or not endpoint:
        return ""
    host, _, port = endpoint.rpartition(":")
    return f"ssh -p {port} {user}@{host}"
