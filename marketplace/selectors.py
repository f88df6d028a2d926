"""Reads for orders and bids, including who may see what.

A client sees its own orders and every bid on them. A provider sees open orders, the orders it
has bid on, and only its own bids. Anything else is reported as missing (404), never as
forbidden, so nobody learns that another tenant's object exists.
"""

from collections.abc import Iterable
from datetime import datetime

from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from core.errors import NotFound
from core.models import User
from marketplace.auction import BidFacts, Candidate, ineligibility
from marketplace.models import Bid, Order, Verification
from providers.models import Provider, ProviderGpu
from providers.selectors import host_available, provider_is_online


def _provider_of(user: User) -> Provider | None:
    try:
        return user.provider
    except Provider.DoesNotExist:
        return None


def orders_visible_to(*, user: User, roles: set[str]) -> QuerySet[Order]:
    visible = Q(pk__in=[])
    if "client" in roles:
        visible |= Q(client=user)
    if "provider" in roles:
        provider = _provider_of(user)
        visible |= Q(status=Order.Status.OPEN)
        if provider is not None:
            visible |= Q(pk__in=Bid.objects.filter(provider=provider).values("order_id"))
    return Order.objects.filter(visible).prefetch_related("gpu_models")


def orders_listed_for(*, user: User, roles: set[str]) -> QuerySet[Order]:
    """``GET /orders/``: a client's own orders; for a provider, the orders it has bid on."""
    listed = Q(pk__in=[])
    if "client" in roles:
        listed |= Q(client=user)
    if "provider" in roles:
        provider = _provider_of(user)
        if provider is not None:
            listed |= Q(pk__in=Bid.objects.filter(provider=provider).values("order_id"))
    return Order.objects.filter(listed).prefetch_related("gpu_models")


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


def bids_visible_to(*, user: User, roles: set[str], order: Order) -> QuerySet[Bid]:
    """Every bid for the order's owner; a provider's own bids for that provider."""
    qs = Bid.objects.filter(order=order).select_related("provider", "gpu_model")
    if "client" in roles and order.client_id == user.pk:
        return qs
    provider = _provider_of(user) if "provider" in roles else None
    if provider is not None:
        return qs.filter(provider=provider)
    return qs.none()


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
    return (
        Order.objects.filter(can_serve, status=Order.Status.OPEN, deadline__gt=now)
        .filter(cpu_cores__lte=cpu, memory_gib__lte=memory, storage_gib__lte=storage)
        .exclude(client_id=provider.user_id)
        .annotate(
            my_bid_id=Subquery(my_bid.values("pk")[:1]), my_bid_price=Subquery(my_bid.values("price_per_hour")[:1])
        )
        .prefetch_related("gpu_models")
        .order_by("deadline", "id")
    )


def bid_facts(*, order: Order, bid: Bid, provider: Provider, gpu: ProviderGpu | None, now: datetime) -> BidFacts:
    return BidFacts(
        price_per_hour=bid.price_per_hour,
        max_price_per_hour=order.max_price_per_hour,
        provider_active=provider.status == Provider.Status.ACTIVE,
        provider_online=provider_is_online(provider, now),
        verification_required=order.verification == Verification.VERIFIED,
        gpu_verified=bool(gpu and gpu.verified),
        gpus_available=gpu.available if gpu else 0,
        gpus_needed=order.gpu_count,
        host_fits=host_available(
            provider, cpu_cores=order.cpu_cores, memory_gib=order.memory_gib, storage_gib=order.storage_gib
        ),
    )


def award_candidates(*, order: Order, bids: Iterable[Bid], now: datetime) -> list[Candidate]:
    """Every open bid as an auction candidate, with the reason it is ineligible if it is."""
    bids = list(bids)
    gpus = {
        (row.provider_id, row.gpu_model_id): row
        for row in ProviderGpu.objects.filter(
            provider_id__in={b.provider_id for b in bids}, gpu_model_id__in={b.gpu_model_id for b in bids}
        )
    }
    candidates = []
    for bid in bids:
        facts = bid_facts(
            order=order, bid=bid, provider=bid.provider, gpu=gpus.get((bid.provider_id, bid.gpu_model_id)), now=now
        )
        candidates.append(
            Candidate(
                bid_id=bid.pk,
                price_per_hour=bid.price_per_hour,
                reputation=bid.provider.reputation,
                created_at=bid.created_at,
                ineligible_reason=ineligibility(facts),
            )
        )
    return candidates
