"""Writes for the reverse auction: orders, bids, acceptance and the deadline award.

Locking: every path that decides an order's fate locks the order row first, then its bids, then
the provider's rows (capacity), then ledger accounts by id. Whichever of a client's accept and
the deadline award locks the order first wins; the other finds it no longer open. The lease's
one-to-one link to the order makes a second lease impossible even if that reasoning were wrong.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from core import queueing, realtime
from core.errors import Conflict, NotAllowed, NotFound, PaymentRequired, ValidationFailed
from core.models import User
from leases.escrow import escrow
from leases.models import Lease
from leases.services import lease_open
from marketplace import selectors, tasks
from marketplace.auction import FIRST_PRICE, Candidate, clearing_price, placement_unmet, rank
from marketplace.models import Bid, Order
from marketplace.presenters import bid_row
from marketplace.spec import OrderSpec
from notifications.services import webhook_publish
from providers.models import GpuModel, Provider, ProviderGpu
from providers.selectors import gpu_models_matching, host_available, provider_for_user
from providers.services import Reservation, capacity_reserve

logger = logging.getLogger(__name__)

INELIGIBLE_MESSAGES = {
    "provider_inactive": "The provider is not active.",
    "provider_offline": "The provider has not sent a heartbeat recently and is offline.",
    "not_verified": "The order requires verified GPUs and this provider's are not verified.",
    "reputation_too_low": "The provider's reputation is below the order's minimum.",
    "placement_unmet": "The provider's region or attributes no longer match the order's placement.",
    "price_above_maximum": "The bid is above the order's maximum price.",
    "insufficient_capacity": "The provider no longer has free capacity for this order.",
}


# --- Orders ---------------------------------------------------------------------------------


def order_create(*, client: User, spec: OrderSpec, now: datetime | None = None) -> Order:
    if not client.is_client:
        raise NotAllowed("This account does not have the client role.", code="role_required")
    unknown = sorted(
        set(spec.gpu_models) - set(GpuModel.objects.filter(id__in=spec.gpu_models).values_list("id", flat=True))
    )
    if unknown:
        known = ", ".join(GpuModel.objects.order_by("id").values_list("id", flat=True))
        said = f"Not in the catalog: {', '.join(unknown)}. The catalog's models: {known}."
        raise ValidationFailed(
            f"Unknown GPU model. {said}", code="unknown_gpu_model", fields={"resources": {"gpu_models": [said]}}
        )
    models = list(gpu_models_matching(ids=spec.gpu_models or None, min_vram_gib=spec.min_vram_gib))
    if not models:
        raise ValidationFailed(
            "No GPU model in the catalog matches.",
            code="no_matching_gpu_model",
            fields={"resources": {"min_vram_gib": ["No listed model has that much memory."]}},
        )
    now = now or timezone.now()
    with transaction.atomic():
        order = Order.objects.create(
            client=client,
            name=spec.name,
            image=spec.image,
            command=spec.command,
            args=spec.args,
            env=spec.env,
            ports=spec.ports,
            volumes=spec.volumes,
            gpu_count=spec.gpu_count,
            min_vram_gib=spec.min_vram_gib,
            cpu_cores=spec.cpu_cores,
            memory_gib=spec.memory_gib,
            storage_gib=spec.storage_gib,
            shm_gib=spec.shm_gib,
            duration_hours=spec.duration_hours,
            open_ended=spec.open_ended,
            max_price_per_hour=spec.max_price_per_hour,
            pricing_rule=spec.pricing_rule,
            verification=spec.verification,
            min_reputation=spec.min_reputation,
            placement=spec.placement,
            workload_file=spec.workload_file,
            bid_window_seconds=spec.bid_window_seconds,
            created_at=now,
            deadline=now + timedelta(seconds=spec.bid_window_seconds),
        )
        order.gpu_models.set(models)
        transaction.on_commit(lambda: _schedule_award(order.pk, order.deadline))
        realtime.publish(realtime.PROVIDERS_GROUP, {"type": "order.opened", "order": order.pk})
        order_event(order, "order.created")
    return order


def order_changed(order_id: int) -> None:
    """Pages showing the order refresh its bids and state (after the transaction commits)."""
    realtime.publish(realtime.order_group(order_id), {"type": "order.changed", "order": order_id})


def bid_changed(bid: Bid, *, placed: bool = False) -> None:
    """Pages showing the bid's order list it at once: the event carries the bid's row, so they
    need not fetch the list again. Only the order's client and the bidder hear it (bids are
    sealed: ``OrderConsumer`` drops it for other providers). Needs the bid's order, provider and
    GPU model loaded."""
    realtime.publish(
        realtime.order_group(bid.order_id),
        {"type": "bid.placed" if placed else "bid.changed", "order": bid.order_id, "bid": bid_row(bid)},
    )


def order_event(order: Order, event: str, **extra: object) -> None:
    """Tell the client's webhooks (and its open pages) that its order changed."""
    order_changed(order.pk)
    webhook_publish(
        user_ids=[order.client_id],
        event_type=event,
        data={"object": "order", "id": order.pk, "status": order.status, "status_reason": order.status_reason, **extra},
    )


def _schedule_award(order_id: int, deadline: datetime) -> None:
    """Queue the deadline award. If the broker is down the periodic sweeper awards it."""
    queueing.send(tasks.award_order, order_id, eta=deadline)


def order_cancel(*, client: User, order_id: int) -> Order:
    selectors.order_get_owned(user=client, order_id=order_id)
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status != Order.Status.OPEN:
            raise Conflict(f"The order is {order.status}; only open orders can be cancelled.", code="order_not_open")
        order.status = Order.Status.CANCELLED
        order.status_reason = "cancelled by the client"
        order.closed_at = timezone.now()
        order.save(update_fields=["status", "status_reason", "closed_at"])
        Bid.objects.filter(order=order, status=Bid.Status.OPEN).update(
            status=Bid.Status.EXPIRED, status_reason="the order was cancelled", updated_at=order.closed_at
        )
        order_event(order, "order.cancelled")
    return order


# --- Bids -----------------------------------------------------------------------------------


def _require_open(order: Order, now: datetime) -> None:
    if order.status != Order.Status.OPEN:
        raise Conflict(f"The order is {order.status}, not open for bids.", code="order_not_open")
    if now >= order.deadline:
        raise Conflict("The order's bid window has closed.", code="bid_window_closed")


def bid_place(
    *, user: User, order_id: int, price_per_hour: int, gpu_model: str | None = None, now: datetime | None = None
) -> Bid:
    """A provider's bid: a price per hour for the whole order, on one of its GPU models."""
    now = now or timezone.now()
    provider, rows = selectors.bidder_gpus(user=user, order_id=order_id)
    try:
        return _bid_insert(
            user=user,
            provider=provider,
            rows=rows,
            order_id=order_id,
            price_per_hour=price_per_hour,
            gpu_model=gpu_model,
            now=now,
        )
    except IntegrityError:  # one open bid per provider and order (a constraint): say which
        existing = selectors.open_bid_of(provider=provider, order_id=order_id)
        if existing is None:
            raise
        raise Conflict(
            f"You already have open bid {existing} on this order; lower or withdraw it.",
            code="bid_exists",
            fields={"bid": existing},
        ) from None


def _bid_insert(
    *,
    user: User,
    provider: Provider,
    rows: list[ProviderGpu],
    order_id: int,
    price_per_hour: int,
    gpu_model: str | None,
    now: datetime,
) -> Bid:
    with transaction.atomic():
        # The order's lock serializes every change to its bids and its award: a bid cannot slip
        # in after the award decided the auction.
        order = selectors.order_for_bidding_locked(provider=provider, order_id=order_id)
        if order.client_id == user.pk:
            raise NotAllowed("You cannot bid on your own order.", code="own_order")
        _require_open(order, now)
        if price_per_hour > order.max_price_per_hour:
            raise ValidationFailed(
                "The bid is above the order's maximum price.",
                code="price_above_maximum",
                fields={"price_per_hour": [f"At most {order.max_price_per_hour}."]},
            )
        if gpu_model is not None:
            rows = [r for r in rows if r.gpu_model_id == gpu_model]
            if not rows and gpu_model not in (accepted := selectors.order_gpu_model_ids(order_id=order_id)):
                raise ValidationFailed(
                    "The order does not accept that GPU model.",
                    code="gpu_model_not_accepted",
                    fields={"gpu_model": [f"One of: {', '.join(sorted(accepted))}."]},
                )
        if provider.status != Provider.Status.ACTIVE:
            raise NotAllowed("Your provider account is not active.", code="not_eligible")
        if provider.reputation < order.min_reputation:
            raise NotAllowed(
                f"The order takes bids from providers with a reputation of at least {order.min_reputation}; "
                f"yours is {provider.reputation}.",
                code="not_eligible",
            )
        unmet = placement_unmet(order.placement, region=provider.region, attributes=provider.attributes or {})
        if unmet:
            raise NotAllowed(
                f"The order takes bids from providers with {unmet}; yours does not have it.", code="not_eligible"
            )
        rows = sorted(rows, key=lambda r: (-r.available, r.gpu_model_id))
        verified_needed = order.verification == "verified"
        if verified_needed and not any(r.verified for r in rows):
            raise NotAllowed("The order requires verified GPUs; yours are not verified.", code="not_eligible")
        usable = [r for r in rows if r.available >= order.gpu_count and (r.verified or not verified_needed)]
        if not usable or not host_available(
            provider, cpu_cores=order.cpu_cores, memory_gib=order.memory_gib, storage_gib=order.storage_gib
        ):
            raise Conflict("You do not have free capacity for this order.", code="insufficient_capacity")
        chosen = usable[0]
        bid = Bid.objects.create(
            order=order,
            provider=provider,
            gpu_model=chosen.gpu_model,
            price_per_hour=price_per_hour,
            created_at=now,
        )
        bid.gpu_verified = chosen.verified  # type: ignore[attr-defined]  # annotated by what with_gpu_verified would have said
        bid_changed(bid, placed=True)
        return bid


def _own_open_bid_locked(*, user: User, bid_id: int, now: datetime) -> Bid:
    provider = provider_for_user(user=user)
    bid = selectors.bid_get_own(provider=provider, bid_id=bid_id)
    Order.objects.select_for_update().get(pk=bid.order_id)
    bid = Bid.objects.select_for_update(of=("self",)).select_related("order", "provider", "gpu_model").get(pk=bid.pk)
    if bid.status != Bid.Status.OPEN:
        raise Conflict(f"The bid is {bid.status}.", code="bid_not_open")
    _require_open(bid.order, now)
    return bid


def bid_lower(*, user: User, bid_id: int, price_per_hour: int, now: datetime | None = None) -> Bid:
    now = now or timezone.now()
    with transaction.atomic():
        bid = _own_open_bid_locked(user=user, bid_id=bid_id, now=now)
        if price_per_hour >= bid.price_per_hour:
            raise ValidationFailed(
                "A bid can only be lowered.",
                code="bid_not_lowered",
                fields={"price_per_hour": [f"Must be below {bid.price_per_hour}."]},
            )
        bid.price_per_hour = price_per_hour
        bid.save(update_fields=["price_per_hour", "updated_at"])
        bid_changed(bid)
    return bid


def bid_withdraw(*, user: User, bid_id: int, now: datetime | None = None) -> Bid:
    now = now or timezone.now()
    with transaction.atomic():
        bid = _own_open_bid_locked(user=user, bid_id=bid_id, now=now)
        bid.status = Bid.Status.WITHDRAWN
        bid.status_reason = "withdrawn by the provider"
        bid.save(update_fields=["status", "status_reason", "updated_at"])
        bid_changed(bid)
    return bid


# --- Award ----------------------------------------------------------------------------------


def _award(
    *,
    order: Order,
    winner: Bid,
    candidates: list[Candidate],
    now: datetime,
    rule: str,
    signed_terms: dict[str, Any] | None = None,
) -> Lease:
    """Reserve capacity, fund the lease at the price ``rule`` clears, settle every bid. The caller
    holds the order's lock."""
    winner_candidate = next(c for c in candidates if c.bid_id == winner.pk)
    others = [c for c in candidates if c.eligible and c.bid_id != winner.pk]
    price = clearing_price(
        rule=rule, winner=winner_candidate, others=others, max_price_per_hour=order.max_price_per_hour
    )
    capacity_reserve(
        reservation=Reservation(
            provider_id=winner.provider_id,
            gpu_model_id=winner.gpu_model_id,
            gpu_count=order.gpu_count,
            cpu_cores=order.cpu_cores,
            memory_gib=order.memory_gib,
            storage_gib=order.storage_gib,
        )
    )
    lease = lease_open(order=order, bid=winner, price_per_hour=price, now=now, signed_terms=signed_terms)
    order.status = Order.Status.AWARDED
    order.status_reason = f"lease {lease.pk}"
    order.closed_at = now
    order.save(update_fields=["status", "status_reason", "closed_at"])
    Bid.objects.filter(pk=winner.pk).update(status=Bid.Status.WON, status_reason=f"lease {lease.pk}", updated_at=now)
    Bid.objects.filter(order=order, status=Bid.Status.OPEN).exclude(pk=winner.pk).update(
        status=Bid.Status.LOST, status_reason="another bid won", updated_at=now
    )
    order_event(order, "order.awarded", lease=lease.pk)
    return lease


def order_accept(
    *,
    client: User,
    order_id: int,
    bid_id: int,
    now: datetime | None = None,
    signature: str = "",
    deadline: int | None = None,
) -> Lease:
    """The client picks a bid during the window and pays that bid, the price its button showed,
    whatever the order's pricing rule (which decides only the deadline's award). 402 if its balance
    cannot fund the deposit. With the escrow on chain, a client with a wallet signs those terms
    (``order_bid_terms``): ``signature`` and the ``deadline`` it signed, checked before anything is
    written."""
    selectors.order_get_owned(user=client, order_id=order_id)
    now = now or timezone.now()
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        _require_open(order, now)
        winner = Bid.objects.select_related("provider").filter(pk=bid_id, order=order).first()
        if winner is None:
            raise NotFound("No such bid on this order.")
        if winner.status != Bid.Status.OPEN:
            raise Conflict("That bid is no longer open.", code="bid_not_open")
        candidates = selectors.award_candidates(order=order, now=now)
        reason = next(c.ineligible_reason for c in candidates if c.bid_id == winner.pk)
        if reason is not None:
            raise Conflict(INELIGIBLE_MESSAGES[reason], code=f"bid_{reason}")
        signed = escrow().acceptance_signed(
            client=client,
            order_id=order.pk,
            provider_user_id=winner.provider.user_id,
            price_per_hour=winner.price_per_hour,  # a manual accept pays the bid: first price
            duration_hours=order.duration_hours,
            signature=signature,
            deadline=deadline,
        )
        return _award(order=order, winner=winner, candidates=candidates, now=now, rule=FIRST_PRICE, signed_terms=signed)


def order_bid_terms(*, client: User, order_id: int, bid_id: int) -> dict[str, Any] | None:
    """What the client's wallet signs to accept this bid (an EIP-712 message), or None when there is
    nothing for it to sign (the ledger escrow; a client the marketplace signs for)."""
    order = selectors.order_get_owned(user=client, order_id=order_id)
    bid = Bid.objects.select_related("provider").filter(pk=bid_id, order=order).first()
    if bid is None:
        raise NotFound("No such bid on this order.")
    return escrow().acceptance_terms(
        client=client,
        order_id=order.pk,
        provider_user_id=bid.provider.user_id,
        price_per_hour=bid.price_per_hour,
        duration_hours=order.duration_hours,
    )


def order_authorization_terms(*, client: User, order_id: int) -> dict[str, Any] | None:
    """What the client's wallet signs to let the deadline's award open the lease within the order's
    maximum price (an EIP-712 message), or None when there is nothing for it to sign."""
    return escrow().authorization_terms(order=selectors.order_get_owned(user=client, order_id=order_id))


def order_terms_signer(*, client: User) -> str:
    """Who signs the terms the client accepts (``leases.escrow.base.Escrow.terms_signer``)."""
    return escrow().terms_signer(client=client)


def order_authorize(*, client: User, order_id: int, signature: str, expiry: int | None) -> Order:
    """Keep the client's signed standing authorization with its open order, for the deadline's award."""
    selectors.order_get_owned(user=client, order_id=order_id)
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status != Order.Status.OPEN:
            raise Conflict(f"The order is {order.status}.", code="order_not_open")
        order.authorization = escrow().authorization_signed(order=order, signature=signature, expiry=expiry)
        order.save(update_fields=["authorization"])
    return order


def order_award_due(*, order_id: int, now: datetime | None = None) -> Lease | None:
    """Award an open order whose window has ended to its best eligible bid, or expire it.

    Idempotent: an order that is no longer open, or not yet due, is left alone.
    """
    now = now or timezone.now()
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None or order.status != Order.Status.OPEN or order.deadline > now:
            return None
        candidates = selectors.award_candidates(order=order, now=now)
        reason = "no eligible bid"
        try:
            signed = escrow().award_terms(order=order)
        except Conflict as refused:
            signed, reason, candidates = {}, refused.message, []  # nothing may be awarded
        for candidate in rank(candidates):
            winner = Bid.objects.get(pk=candidate.bid_id)
            try:
                with transaction.atomic():  # a savepoint: a failed try leaves no trace
                    return _award(
                        order=order,
                        winner=winner,
                        candidates=candidates,
                        now=now,
                        rule=order.pricing_rule,
                        signed_terms=signed,
                    )
            except Conflict:
                continue  # capacity went away since the candidates were read: try the next
            except PaymentRequired:
                reason = "the client's balance could not fund the deposit"
                break
        order.status = Order.Status.EXPIRED
        order.status_reason = reason
        order.closed_at = now
        order.save(update_fields=["status", "status_reason", "closed_at"])
        Bid.objects.filter(order=order, status=Bid.Status.OPEN).update(
            status=Bid.Status.EXPIRED, status_reason=f"the order expired: {reason}", updated_at=now
        )
        order_event(order, "order.expired")
        logger.info("order %s expired: %s", order.pk, reason)
        return None


def orders_award_due(*, now: datetime | None = None, limit: int = 200) -> int:
    """The sweeper: award every open order whose deadline has passed. Returns how many it handled."""
    now = now or timezone.now()
    due = list(
        Order.objects.filter(status=Order.Status.OPEN, deadline__lte=now)
        .order_by("deadline")
        .values_list("pk", flat=True)[:limit]
    )
    for order_id in due:
        order_award_due(order_id=order_id, now=now)
    return len(due)
