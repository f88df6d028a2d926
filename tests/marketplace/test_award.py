"""The reverse auction end to end through the services and the API."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import Conflict, PaymentRequired
from leases.models import Lease
from ledger.models import LedgerAccount
from marketplace import presenters, services, tasks
from marketplace.models import Bid, Order
from providers.models import Provider, ProviderGpu
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.django_db


def past_order(client, seconds_ago: int = 300, **overrides):  # type: ignore[no-untyped-def]
    """An order whose bid window (120 s) closed a while ago; bids placed while it was open."""
    return f.order(client, now=timezone.now() - timedelta(seconds=seconds_ago), **overrides)


def bid_then(p, o, price):  # type: ignore[no-untyped-def]
    return f.bid(p, o, price, now=o.created_at + timedelta(seconds=1))


def balance(user) -> int:  # type: ignore[no-untyped-def]
    return LedgerAccount.objects.get(owner=user, kind=LedgerAccount.Kind.CLIENT_BALANCE).balance


# --- manual accept ----------------------------------------------------------------------------


def test_client_accepts_a_bid_and_the_deposit_moves_into_escrow() -> None:
    client = f.client_user(balance=100 * USD)
    cheap, pricey = f.provider(), f.provider()
    order = f.order(client, duration_hours=3, resources={"gpu_count": 2})
    b1 = f.bid(cheap, order, 4 * USD)
    b2 = f.bid(pricey, order, 3 * USD)

    api = f.api(client, f.CLIENT)
    response = api.post(f"/api/v1/orders/{order.pk}/accept/", {"bid": b1.pk}, format="json")

    assert response.status_code == 201, response.json()
    lease = Lease.objects.get(pk=response.json()["id"])
    assert (lease.provider, lease.price_per_hour, lease.deposit) == (cheap, 4 * USD, 12 * USD)
    assert lease.status == Lease.Status.FUNDED
    assert balance(client) == 88 * USD
    assert LedgerAccount.objects.get(lease=lease).balance == 12 * USD
    order.refresh_from_db()
    assert order.status == Order.Status.AWARDED
    assert Bid.objects.get(pk=b1.pk).status == Bid.Status.WON
    assert Bid.objects.get(pk=b2.pk).status == Bid.Status.LOST
    gpu = ProviderGpu.objects.get(provider=cheap, gpu_model_id="h100-sxm-80gb")
    assert gpu.reserved == 2 and gpu.available == 6
    assert api.get(f"/api/v1/orders/{order.pk}/").json()["lease"] == lease.pk


def test_accept_without_enough_balance_is_402_and_the_order_stays_open() -> None:
    client = f.client_user(balance=5 * USD)
    p = f.provider()
    order = f.order(client, duration_hours=10)
    b = f.bid(p, order, 1 * USD)
    response = f.api(client, f.CLIENT).post(f"/api/v1/orders/{order.pk}/accept/", {"bid": b.pk}, format="json")
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_funds"
    order.refresh_from_db()
    assert order.status == Order.Status.OPEN
    assert not Lease.objects.exists()
    assert balance(client) == 5 * USD
    assert ProviderGpu.objects.get(provider=p).reserved == 0
    assert Bid.objects.get(pk=b.pk).status == Bid.Status.OPEN


def test_accept_after_the_window_is_409() -> None:
    client = f.client_user()
    order = past_order(client)
    b = bid_then(f.provider(), order, USD)
    with pytest.raises(Conflict) as exc:
        services.order_accept(client=client, order_id=order.pk, bid_id=b.pk)
    assert exc.value.code == "bid_window_closed"


def test_accepting_a_withdrawn_bid_is_409() -> None:
    client = f.client_user()
    p = f.provider()
    order = f.order(client)
    b = f.bid(p, order, USD)
    services.bid_withdraw(user=p.user, bid_id=b.pk)
    response = f.api(client, f.CLIENT).post(f"/api/v1/orders/{order.pk}/accept/", {"bid": b.pk}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "bid_not_open"


def test_accepting_an_offline_providers_bid_is_409_with_the_reason() -> None:
    client = f.client_user()
    p = f.provider()
    order = f.order(client)
    b = f.bid(p, order, USD)
    Provider.objects.filter(pk=p.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    response = f.api(client, f.CLIENT).post(f"/api/v1/orders/{order.pk}/accept/", {"bid": b.pk}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "bid_provider_offline"


def test_accepting_twice_makes_one_lease() -> None:
    client = f.client_user()
    order = f.order(client)
    b = f.bid(f.provider(), order, USD)
    api = f.api(client, f.CLIENT)
    assert api.post(f"/api/v1/orders/{order.pk}/accept/", {"bid": b.pk}, format="json").status_code == 201
    second = api.post(f"/api/v1/orders/{order.pk}/accept/", {"bid": b.pk}, format="json")
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "order_not_open"
    assert Lease.objects.count() == 1


def test_accept_replayed_with_an_idempotency_key_returns_the_same_lease() -> None:
    client = f.client_user()
    order = f.order(client)
    b = f.bid(f.provider(), order, USD)
    api = f.api(client, f.CLIENT)
    headers = {"HTTP_IDEMPOTENCY_KEY": "accept-1"}
    first = api.post(f"/api/v1/orders/{order.pk}/accept/", {"bid": b.pk}, format="json", **headers)
    again = api.post(f"/api/v1/orders/{order.pk}/accept/", {"bid": b.pk}, format="json", **headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true"
    other = api.post(f"/api/v1/orders/{order.pk}/accept/", {"bid": b.pk + 1}, format="json", **headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


# --- deadline award ---------------------------------------------------------------------------


def test_deadline_awards_the_cheapest_eligible_bid() -> None:
    client = f.client_user()
    order = past_order(client)
    a, b, c = f.provider(), f.provider(), f.provider()
    bid_then(a, order, 3 * USD)
    winner = bid_then(b, order, 2 * USD)
    offline = bid_then(c, order, 1 * USD)
    Provider.objects.filter(pk=c.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))

    lease = services.order_award_due(order_id=order.pk)

    assert lease is not None and lease.bid == winner and lease.price_per_hour == 2 * USD
    assert Bid.objects.get(pk=offline.pk).status == Bid.Status.LOST
    assert services.order_award_due(order_id=order.pk) is None  # idempotent
    assert Lease.objects.count() == 1


def test_ties_go_to_better_reputation_then_the_earlier_bid() -> None:
    client = f.client_user()
    order = past_order(client)
    early_low_rep = f.provider(reputation=300)
    late_high_rep = f.provider(reputation=800)
    later_high_rep = f.provider(reputation=800)
    f.bid(early_low_rep, order, USD, now=order.created_at + timedelta(seconds=1))
    expected = f.bid(late_high_rep, order, USD, now=order.created_at + timedelta(seconds=2))
    f.bid(later_high_rep, order, USD, now=order.created_at + timedelta(seconds=3))
    lease = services.order_award_due(order_id=order.pk)
    assert lease is not None and lease.bid_id == expected.pk


def test_second_price_pays_the_runner_up() -> None:
    client = f.client_user()
    order = past_order(client, pricing_rule="second_price", max_price_per_hour=9 * USD)
    winner = bid_then(f.provider(), order, 2 * USD)
    bid_then(f.provider(), order, 3 * USD)
    bid_then(f.provider(), order, 5 * USD)
    lease = services.order_award_due(order_id=order.pk)
    assert lease is not None and lease.bid_id == winner.pk
    assert (lease.bid_price_per_hour, lease.price_per_hour) == (2 * USD, 3 * USD)
    assert lease.deposit == 3 * USD * order.duration_hours


def test_second_price_alone_is_paid_the_maximum() -> None:
    client = f.client_user()
    order = past_order(client, pricing_rule="second_price", max_price_per_hour=4 * USD)
    bid_then(f.provider(), order, 2 * USD)
    lease = services.order_award_due(order_id=order.pk)
    assert lease is not None and lease.price_per_hour == 4 * USD


@pytest.mark.parametrize("bidders", [1, 3])
def test_a_bid_accepted_by_hand_is_paid_the_price_on_its_button(bidders: int) -> None:
    """Second price decides the deadline's award; a client who accepts a bid pays that bid (alone,
    it would have been the order's maximum; among others, the runner-up's price)."""
    client = f.client_user()
    order = f.order(client, pricing_rule="second_price", max_price_per_hour=9 * USD)
    chosen = f.bid(f.provider(), order, 2 * USD)
    for price in (3 * USD, 5 * USD)[: bidders - 1]:
        f.bid(f.provider(), order, price)
    lease = services.order_accept(client=client, order_id=order.pk, bid_id=chosen.pk)
    assert (lease.bid_price_per_hour, lease.price_per_hour) == (2 * USD, 2 * USD)
    assert lease.deposit == 2 * USD * order.duration_hours
    assert (
        presenters.bid_row(chosen)["text"]["accept_short"]
        == f"Accept at $2.00/h, ${2 * order.duration_hours}.00 deposit"
    )


def test_no_bids_means_expired() -> None:
    order = past_order(f.client_user())
    assert services.order_award_due(order_id=order.pk) is None
    order.refresh_from_db()
    assert order.status == Order.Status.EXPIRED and order.status_reason == "no eligible bid"


def test_only_ineligible_bids_means_expired_and_bids_expire() -> None:
    client = f.client_user()
    order = past_order(client)
    p = f.provider()
    b = bid_then(p, order, USD)
    Provider.objects.filter(pk=p.pk).update(status=Provider.Status.DISABLED)
    services.order_award_due(order_id=order.pk)
    order.refresh_from_db()
    assert order.status == Order.Status.EXPIRED
    assert Bid.objects.get(pk=b.pk).status == Bid.Status.EXPIRED


def test_deadline_award_without_funds_expires_the_order() -> None:
    client = f.client_user(balance=USD)
    order = past_order(client, duration_hours=10)
    bid_then(f.provider(), order, USD)
    assert services.order_award_due(order_id=order.pk) is None
    order.refresh_from_db()
    assert order.status == Order.Status.EXPIRED
    assert "balance" in order.status_reason
    assert balance(client) == USD
    assert not Lease.objects.exists()


def test_deadline_skips_a_bid_whose_capacity_is_gone() -> None:
    client = f.client_user()
    order = past_order(client, resources={"gpu_count": 4})
    full = f.provider(gpus={"h100-sxm-80gb": 4})
    bid_then(full, order, USD)
    runner_up = bid_then(f.provider(), order, 2 * USD)
    # the cheaper provider's GPUs get taken by another lease before the deadline
    ProviderGpu.objects.filter(provider=full).update(reserved=4)
    lease = services.order_award_due(order_id=order.pk)
    assert lease is not None and lease.bid_id == runner_up.pk


def test_award_before_the_deadline_does_nothing() -> None:
    order = f.order(f.client_user())
    f.bid(f.provider(), order, USD)
    assert services.order_award_due(order_id=order.pk) is None
    order.refresh_from_db()
    assert order.status == Order.Status.OPEN


def test_the_sweeper_and_the_task_award_due_orders() -> None:
    client = f.client_user()
    due = [past_order(client) for _ in range(3)]
    for o in due:
        bid_then(f.provider(), o, USD)
    not_due = f.order(client)
    assert tasks.sweep_due_orders() == 3
    assert Order.objects.filter(status=Order.Status.AWARDED).count() == 3
    assert Order.objects.get(pk=not_due.pk).status == Order.Status.OPEN
    late = past_order(client)
    bid_then(f.provider(), late, USD)
    tasks.award_order(late.pk)
    assert Order.objects.get(pk=late.pk).status == Order.Status.AWARDED


def test_capacity_is_reserved_at_award_and_released_at_close() -> None:
    client = f.client_user()
    p = f.provider(gpus={"h100-sxm-80gb": 4})
    first = f.order(client, resources={"gpu_count": 4})
    lease = services.order_accept(client=client, order_id=first.pk, bid_id=f.bid(p, first, USD).pk)
    second = f.order(client, resources={"gpu_count": 1})
    with pytest.raises(Conflict) as exc:
        f.bid(p, second, USD)
    assert exc.value.code == "insufficient_capacity"
    from leases.services import lease_close

    lease_close(user=client, lease_id=lease.pk, roles={"client"})
    assert f.bid(p, second, USD).status == Bid.Status.OPEN


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_an_open_order_expires_its_bids() -> None:
    client = f.client_user()
    order = f.order(client)
    b = f.bid(f.provider(), order, USD)
    api = f.api(client, f.CLIENT)
    response = api.post(f"/api/v1/orders/{order.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert Bid.objects.get(pk=b.pk).status == Bid.Status.EXPIRED
    again = api.post(f"/api/v1/orders/{order.pk}/cancel/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "order_not_open"
    assert services.order_award_due(order_id=order.pk) is None


def test_an_awarded_order_cannot_be_cancelled() -> None:
    client = f.client_user()
    order = f.order(client)
    services.order_accept(client=client, order_id=order.pk, bid_id=f.bid(f.provider(), order, USD).pk)
    response = f.api(client, f.CLIENT).post(f"/api/v1/orders/{order.pk}/cancel/")
    assert response.status_code == 409


def test_payment_required_is_the_402_error() -> None:
    assert PaymentRequired("x").status_code == 402
