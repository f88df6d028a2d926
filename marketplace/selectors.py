"""Reads for orders and bids, including who may see what.

A client sees its own orders and every bid on them. A provider sees open orders, the orders it
has bid on, and only its own bids. Anything else is reported as missing (404), never as
forbidden, so nobody learns that another tenant's object exists.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    F,
    FilteredRelation,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.errors import NotFound
from core.models import User
from leases.models import Lease
from ledger.models import LedgerTransaction
from marketplace.auction import BidFacts, Candidate, ineligibility, placement_unmet
from marketplace.models import Bid, Order, Verification
from providers.models import Provider, ProviderGpu
from providers.selectors import online_since, provider_for_user
from trust.models import GpuCheck


def provider_of(user: User) -> Provider | None:
    """The user's provider profile, if it has one."""
    try:
        return user.provider
    except Provider.DoesNotExist:
        return None


def _for_display(orders: QuerySet[Order]) -> QuerySet[Order]:
    """What the order serializer shows, fetched with the orders instead of one query each."""
    return (
        orders.select_related("lease__provider")
        .prefetch_related("gpu_models")
        .annotate(open_bid_count=Count("bids", filter=Q(bids__status=Bid.Status.OPEN)))
        # an aggregate groups the rows, and Django then drops Meta.ordering: newest first, said again
        .order_by("-created_at", "-id")
    )


def orders_visible_to(*, user: User, roles: set[str]) -> QuerySet[Order]:
    visible = Q(pk__in=[])
    if "client" in roles:
        visible |= Q(client=user)
    if "provider" in roles:
        provider = provider_of(user)
        visible |= Q(status=Order.Status.OPEN)
        if provider is not None:
            visible |= Q(pk__in=Bid.objects.filter(provider=provider).values("order_id"))
    return _for_display(Order.objects.filter(visible))


def orders_listed_for(*, user: User, roles: set[str]) -> QuerySet[Order]:
    """``GET /orders/``: a client's own orders; for a provider, the orders it has bid on."""
    listed = Q(pk__in=[])
    if "client" in roles:
        listed |= Q(client=user)
    if "provider" in roles:
        provider = provider_of(user)
        if provider is not None:
            listed |= Q(pk__in=Bid.objects.filter(provider=provider).values("order_id"))
    return _for_display(Order.objects.filter(listed))


def order_get_visible(*, user: User, roles: set[str], order_id: int) -> Order:
    order = orders_visible_to(user=user, roles=roles).filter(pk=order_id).first()
    if order is None:
        raise NotFound("No such order.")
    return order


def order_get_owned(*, user: User, order_id: int) -> Order:
    order = Order.objects.filter(pk=order_id, client=user).first()
    if order is None:
        raise NotFound("No such order.")
    return order


def with_gpu_verified(bids: QuerySet[Bid]) -> QuerySet[Bid]:
    """Each bid with ``gpu_verified``: whether the bidder's GPUs of the bid's model are verified."""
    rows = ProviderGpu.objects.filter(provider_id=OuterRef("provider_id"), gpu_model_id=OuterRef("gpu_model_id"))
    return bids.annotate(gpu_verified=Coalesce(Subquery(rows.values("verified")[:1]), Value(False)))


def bid_gpu_verified(bid: Bid) -> bool:
    """Whether the bidder's GPUs of the bid's model are verified (annotated, else read)."""
    verified = getattr(bid, "gpu_verified", None)  # annotated by with_gpu_verified
    if verified is None:
        verified = ProviderGpu.objects.filter(
            provider_id=bid.provider_id, gpu_model_id=bid.gpu_model_id, verified=True
        ).exists()
        bid.gpu_verified = verified  # type: ignore[attr-defined]  # kept, as the annotation would be
    return bool(verified)


def bids_visible_to(*, user: User, roles: set[str], order: Order) -> QuerySet[Bid]:
    """Every bid for the order's owner; a provider's own bids for that provider."""
    qs = with_gpu_verified(Bid.objects.filter(order=order).select_related("provider", "gpu_model"))
    if "client" in roles and order.client_id == user.pk:
        return qs
    provider = provider_of(user) if "provider" in roles else None
    if provider is not None:
        return qs.filter(provider=provider)
    return qs.none()


def bids_of_provider(*, provider: Provider, open_only: bool = False) -> QuerySet[Bid]:
    bids = Bid.objects.filter(provider=provider)
    if open_only:
        bids = bids.filter(status=Bid.Status.OPEN)
    return with_gpu_verified(bids.select_related("order", "provider", "gpu_model").order_by("-id"))


def bid_get_own(*, provider: Provider, bid_id: int) -> Bid:
    bid = Bid.objects.filter(pk=bid_id, provider=provider).select_related("order").first()
    if bid is None:
        raise NotFound("No such bid.")
    return bid


def open_orders_for_provider(*, provider: Provider, now: datetime | None = None) -> QuerySet[Order]:
    """Open orders this provider could serve right now with its free capacity."""
    now = now or timezone.now()
    rows = list(ProviderGpu.objects.filter(provider=provider))
    through = Order.gpu_models.through
    can_serve = Q(pk__in=[])
    for row in rows:
        if row.available <= 0:
            continue
        fits = Q(pk__in=through.objects.filter(gpumodel_id=row.gpu_model_id).values("order_id")) & Q(
            gpu_count__lte=row.available
        )
        if not row.verified:
            fits &= Q(verification=Verification.NONE)
        can_serve |= fits
    cpu = min(provider.cpu_cores_free, provider.cpu_cores_total - provider.cpu_cores_reserved)
    memory = min(provider.memory_gib_free, provider.memory_gib_total - provider.memory_gib_reserved)
    storage = min(provider.storage_gib_free, provider.storage_gib_total - provider.storage_gib_reserved)
    my_bid = Bid.objects.filter(order=OuterRef("pk"), provider=provider, status=Bid.Status.OPEN)
    open_now = Q(status=Order.Status.OPEN, deadline__gt=now)
    # an order that names a placement is listed to the providers that have it (the few such open
    # orders are read and matched here: JSON containment is not portable across databases)
    placed_elsewhere = [
        pk
        for pk, placement in Order.objects.filter(open_now).exclude(placement={}).values_list("pk", "placement")
        if placement_unmet(placement, region=provider.region, attributes=provider.attributes or {})
    ]
    return (
        Order.objects.filter(can_serve, open_now, min_reputation__lte=provider.reputation)
        .exclude(pk__in=placed_elsewhere)
        .filter(cpu_cores__lte=cpu, memory_gib__lte=memory, storage_gib__lte=storage)
        .exclude(client_id=provider.user_id)
        .annotate(
            my_bid_id=Subquery(my_bid.values("pk")[:1]), my_bid_price=Subquery(my_bid.values("price_per_hour")[:1])
        )
        .prefetch_related("gpu_models")
        .order_by("deadline", "id")
    )


def bidder_gpus(*, user: User, order_id: int) -> tuple[Provider, list[ProviderGpu]]:
    """The bidding provider and its GPU lines of the models the order accepts, in one read (the
    provider alone, by a second read, when it has none of them)."""
    accepted = _accepted_models(order_id).values("gpumodel_id")
    rows = list(
        ProviderGpu.objects.select_related("provider", "gpu_model")
        .filter(provider__user=user, gpu_model_id__in=accepted)
        .order_by()
    )
    return (rows[0].provider if rows else provider_for_user(user=user)), rows


def open_bid_of(*, provider: Provider, order_id: int) -> int | None:
    return (
        Bid.objects.filter(order_id=order_id, provider=provider, status=Bid.Status.OPEN)
        .values_list("pk", flat=True)
        .first()
    )


def _accepted_models(order_id: int) -> QuerySet:
    return Order.gpu_models.through.objects.filter(order_id=order_id)


def order_gpu_model_ids(*, order_id: int) -> set[str]:
    return set(_accepted_models(order_id).values_list("gpumodel_id", flat=True))


def order_for_bidding_locked(*, provider: Provider, order_id: int) -> Order:
    """The order a provider wants to bid on, locked (its lock serializes every change to its bids
    and its award).

    An order that is not open is only visible to providers that bid on it (they get a 409 from
    the service); to anyone else it does not exist.
    """
    order = (
        Order.objects.select_for_update()
        .filter(pk=order_id)
        .only(
            "id",
            "client_id",
            "status",
            "deadline",
            "max_price_per_hour",
            "gpu_count",
            "cpu_cores",
            "memory_gib",
            "storage_gib",
            "duration_hours",  # the bid's row says the deposit accepting it takes
            "verification",
            "min_reputation",
            "placement",
        )
        .order_by()
        .first()
    )
    if order is None or (
        order.status != Order.Status.OPEN and not Bid.objects.filter(order_id=order_id, provider=provider).exists()
    ):
        raise NotFound("No such order.")
    return order


_BID_COLUMNS = (
    "id",
    "price_per_hour",
    "provider__status",
    "provider__reputation",
    "online",
    "provider__cpu_cores_total",
    "provider__cpu_cores_free",
    "provider__cpu_cores_reserved",
    "provider__memory_gib_total",
    "provider__memory_gib_free",
    "provider__memory_gib_reserved",
    "provider__storage_gib_total",
    "provider__storage_gib_free",
    "provider__storage_gib_reserved",
    "gpu__total",
    "gpu__free",
    "gpu__reserved",
    "gpu__verified",
    "provider__region",
    "provider__attributes",
)


def award_candidates(*, order: Order, now: datetime) -> list[Candidate]:
    """Every open bid on the order as an auction candidate, with why it is ineligible if it is.

    One query of plain rows (an order may hold thousands of bids): each bid with its provider and
    the provider's GPUs of the bid's model, in the order bids were placed. The caller holds the
    order's lock, which every writer of its bids takes first, so the bids cannot change meanwhile.
    """
    rows = (
        Bid.objects.filter(order=order, status=Bid.Status.OPEN)
        .annotate(
            gpu=FilteredRelation("provider__gpus", condition=Q(provider__gpus__gpu_model_id=F("gpu_model_id"))),
            online=ExpressionWrapper(
                Q(provider__last_heartbeat_at__gte=online_since(now)), output_field=BooleanField()
            ),
        )
        .order_by("created_at", "id")
        .values_list(*_BID_COLUMNS)
    )
    verification_required = order.verification == Verification.VERIFIED
    candidates = []
    for placed, (
        bid_id,
        price,
        status,
        reputation,
        online,
        cpu_total,
        cpu_free,
        cpu_reserved,
        mem_total,
        mem_free,
        mem_reserved,
        disk_total,
        disk_free,
        disk_reserved,
        gpu_total,
        gpu_free,
        gpu_reserved,
        gpu_verified,
        region,
        attributes,
    ) in enumerate(rows):
        facts = BidFacts(
            price_per_hour=price,
            max_price_per_hour=order.max_price_per_hour,
            provider_active=status == Provider.Status.ACTIVE,
            provider_online=bool(online),
            verification_required=verification_required,
            gpu_verified=bool(gpu_verified),
            reputation=reputation,
            min_reputation=order.min_reputation,
            gpus_available=max(0, min(gpu_free or 0, (gpu_total or 0) - (gpu_reserved or 0))),
            gpus_needed=order.gpu_count,
            host_fits=min(cpu_free, cpu_total - cpu_reserved) >= order.cpu_cores
            and min(mem_free, mem_total - mem_reserved) >= order.memory_gib
            and min(disk_free, disk_total - disk_reserved) >= order.storage_gib,
            placement_met=not placement_unmet(order.placement, region=region, attributes=attributes or {}),
        )
        candidates.append(Candidate(bid_id, price, reputation, placed, ineligibility(facts)))
    return candidates


@dataclass(frozen=True)
class MarketNumbers:
    """The market's state for Prometheus (``marketplace.metrics``), read in a few aggregate queries."""

    orders_open: int
    bids_total: int
    award_latencies: list[float]  # seconds from deadline to award, orders awarded at their deadline lately
    leases_running: int
    settlement_lag_seconds: float  # the longest a running lease has gone without a settlement
    agents_online: int
    checks_failed_total: int
    checks_passed_total: int


def market_numbers(*, now: datetime | None = None, window: timedelta = timedelta(minutes=15)) -> MarketNumbers:
    now = now or timezone.now()
    awarded = Order.objects.filter(status=Order.Status.AWARDED, closed_at__gte=now - window).filter(
        closed_at__gte=F("deadline")  # by the deadline's award, not accepted by the client before it
    )
    latencies = sorted(
        (closed - deadline).total_seconds()
        for closed, deadline in awarded.values_list("closed_at", "deadline")[:10_000]
        if closed is not None
    )
    running = Lease.objects.filter(status=Lease.Status.RUNNING)
    last_settled = running.annotate(
        last=Coalesce(
            Max("transactions__created_at", filter=Q(transactions__kind=LedgerTransaction.Kind.LEASE_PAYOUT)),
            F("started_at"),
        )
    ).aggregate(oldest=Min("last"))["oldest"]
    checks = dict(
        GpuCheck.objects.filter(status__in=[GpuCheck.Status.FAILED, GpuCheck.Status.PASSED])
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return MarketNumbers(
        orders_open=Order.objects.filter(status=Order.Status.OPEN).count(),
        bids_total=Bid.objects.count(),
        award_latencies=latencies,
        leases_running=running.count(),
        settlement_lag_seconds=max(0.0, (now - last_settled).total_seconds()) if last_settled else 0.0,
        agents_online=Provider.objects.filter(last_heartbeat_at__gte=online_since(now)).count(),
        checks_failed_total=checks.get(GpuCheck.Status.FAILED, 0),
        checks_passed_total=checks.get(GpuCheck.Status.PASSED, 0),
    )
