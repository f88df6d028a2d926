"""Bidding rules over the API: clear 4xx for every way a bid can be wrong."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketplace.models import Bid, Order
from providers.models import ProviderGpu
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.django_db


@pytest.fixture
def order() -> Order:
    return f.order(f.client_user(), max_price_per_hour=5 * USD)


def post_bid(p, order_id: int, body: dict):  # type: ignore[no-untyped-def]
    return f.api(p.user, f.PROVIDER).post(f"/api/v1/orders/{order_id}/bids/", body, format="json")


def test_a_provider_bids_and_the_owner_sees_it(order: Order) -> None:
    p = f.provider()
    response = post_bid(p, order.pk, {"price_per_hour": 4 * USD})
    assert response.status_code == 201
    body = response.json()
    assert body["price_per_hour"] == 4 * USD and body["price_per_gpu_hour"] == 4 * USD
    assert body["gpu_model"]["id"] == "h100-sxm-80gb" and body["status"] == "open"
    owner = f.api(order.client, f.CLIENT)
    listed = owner.get(f"/api/v1/orders/{order.pk}/bids/").json()["results"]
    assert [b["id"] for b in listed] == [body["id"]]
    assert listed[0]["provider"]["name"] == p.name


def test_bid_above_the_maximum_is_400(order: Order) -> None:
    response = post_bid(f.provider(), order.pk, {"price_per_hour": 5 * USD + 1})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "price_above_maximum"
    assert not Bid.objects.exists()


@pytest.mark.parametrize("price", [0, -1, "1000", 1.5, None, True, 10**13, [1]])
def test_bad_prices_are_400(order: Order, price: object) -> None:
    response = post_bid(f.provider(), order.pk, {"price_per_hour": price})
    assert response.status_code == 400
    assert "price_per_hour" in response.json()["error"]["fields"]
    assert not Bid.objects.exists()


def test_bid_on_a_closed_order_is_409(order: Order) -> None:
    Order.objects.filter(pk=order.pk).update(status=Order.Status.CANCELLED)
    response = post_bid(f.provider(), order.pk, {"price_per_hour": USD})
    # cancelled orders are no longer visible to providers who did not bid
    assert response.status_code == 404
    p = f.provider()
    Order.objects.filter(pk=order.pk).update(status=Order.Status.OPEN)
    f.bid(p, order, 2 * USD)
    Order.objects.filter(pk=order.pk).update(status=Order.Status.CANCELLED)
    response = post_bid(p, order.pk, {"price_per_hour": USD})
    assert response.status_code == 409 and response.json()["error"]["code"] == "order_not_open"


def test_bid_after_the_window_is_409() -> None:
    order = f.order(f.client_user(), now=timezone.now() - timedelta(minutes=10))
    response = post_bid(f.provider(), order.pk, {"price_per_hour": USD})
    assert response.status_code == 409 and response.json()["error"]["code"] == "bid_window_closed"


def test_bid_without_free_capacity_is_409() -> None:
    order = f.order(f.client_user(), resources={"gpu_count": 8})
    small = f.provider(gpus={"h100-sxm-80gb": 4})
    response = post_bid(small, order.pk, {"price_per_hour": USD})
    assert response.status_code == 409 and response.json()["error"]["code"] == "insufficient_capacity"
    wrong_model = f.provider(gpus={"a100-sxm-80gb": 8})
    assert post_bid(wrong_model, order.pk, {"price_per_hour": USD}).status_code == 409
    little_memory = f.provider(memory=32)
    assert post_bid(little_memory, order.pk, {"price_per_hour": USD}).status_code == 409


def test_unverified_provider_on_a_verified_order_is_403() -> None:
    order = f.order(f.client_user(), verification="verified")
    response = post_bid(f.provider(), order.pk, {"price_per_hour": USD})
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_eligible"
    assert post_bid(f.provider(verified=True), order.pk, {"price_per_hour": USD}).status_code == 201


def test_one_open_bid_per_provider(order: Order) -> None:
    p = f.provider()
    first = post_bid(p, order.pk, {"price_per_hour": 3 * USD}).json()
    second = post_bid(p, order.pk, {"price_per_hour": 2 * USD})
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "bid_exists"
    assert second.json()["error"]["fields"]["bid"] == first["id"]


def test_lower_a_bid_but_never_raise_it(order: Order) -> None:
    p = f.provider()
    api = f.api(p.user, f.PROVIDER)
    bid_id = post_bid(p, order.pk, {"price_per_hour": 3 * USD}).json()["id"]
    lowered = api.patch(f"/api/v1/bids/{bid_id}/", {"price_per_hour": 2 * USD}, format="json")
    assert lowered.status_code == 200 and lowered.json()["price_per_hour"] == 2 * USD
    raised = api.patch(f"/api/v1/bids/{bid_id}/", {"price_per_hour": 4 * USD}, format="json")
    assert raised.status_code == 400 and raised.json()["error"]["code"] == "bid_not_lowered"
    assert Bid.objects.get(pk=bid_id).price_per_hour == 2 * USD


def test_withdraw_then_bid_again(order: Order) -> None:
    p = f.provider()
    api = f.api(p.user, f.PROVIDER)
    bid_id = post_bid(p, order.pk, {"price_per_hour": 3 * USD}).json()["id"]
    withdrawn = api.post(f"/api/v1/bids/{bid_id}/withdraw/")
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    again = api.post(f"/api/v1/bids/{bid_id}/withdraw/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "bid_not_open"
    assert api.patch(f"/api/v1/bids/{bid_id}/", {"price_per_hour": USD}, format="json").status_code == 409
    assert post_bid(p, order.pk, {"price_per_hour": 2 * USD}).status_code == 201


def test_another_providers_bid_is_invisible(order: Order) -> None:
    mine, theirs = f.provider(), f.provider()
    their_bid = f.bid(theirs, order, 3 * USD)
    f.bid(mine, order, 4 * USD)
    api = f.api(mine.user, f.PROVIDER)
    assert api.get(f"/api/v1/bids/{their_bid.pk}/").status_code == 404
    assert api.patch(f"/api/v1/bids/{their_bid.pk}/", {"price_per_hour": 1}, format="json").status_code == 404
    assert api.post(f"/api/v1/bids/{their_bid.pk}/withdraw/").status_code == 404
    listed = api.get(f"/api/v1/orders/{order.pk}/bids/").json()["results"]
    assert [b["provider"]["id"] for b in listed] == [mine.pk]


def test_clients_cannot_bid_and_providers_cannot_bid_on_their_own_orders(order: Order) -> None:
    client_api = f.api(order.client, f.CLIENT)
    assert (
        client_api.post(f"/api/v1/orders/{order.pk}/bids/", {"price_per_hour": USD}, format="json").status_code == 403
    )
    both = f.user(client=True, provider=True)
    from providers import services as providers

    p = providers.provider_register(user=both, name="self", region="eu")
    providers.inventory_report(
        provider=p,
        gpus=[providers.GpuReport(model="h100-sxm-80gb", total=8, free=8)],
        cpu_cores=providers.HostReport(total=64, free=64),
        memory_gib=providers.HostReport(total=512, free=512),
        storage_gib=providers.HostReport(total=1000, free=1000),
    )
    own = f.order(both)
    response = post_bid(p, own.pk, {"price_per_hour": USD})
    assert response.status_code == 403 and response.json()["error"]["code"] == "own_order"


def test_a_bid_must_use_an_accepted_gpu_model(order: Order) -> None:
    p = f.provider(gpus={"h100-sxm-80gb": 8, "a100-sxm-80gb": 8})
    response = post_bid(p, order.pk, {"price_per_hour": USD, "gpu_model": "a100-sxm-80gb"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "gpu_model_not_accepted"


def test_an_accepted_model_the_provider_lacks_is_no_capacity() -> None:
    order = f.order(f.client_user(), resources={"gpu_models": ["h100-sxm-80gb", "a100-sxm-80gb"]})
    response = post_bid(f.provider(), order.pk, {"price_per_hour": USD, "gpu_model": "a100-sxm-80gb"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "insufficient_capacity"


def test_a_second_open_bid_writes_nothing(order: Order) -> None:
    p = f.provider()
    post_bid(p, order.pk, {"price_per_hour": 3 * USD})
    assert post_bid(p, order.pk, {"price_per_hour": 2 * USD}).status_code == 409
    assert list(Bid.objects.filter(order=order).values_list("price_per_hour", flat=True)) == [3 * USD]
    # once withdrawn, the provider may bid again
    bid = Bid.objects.get(order=order)
    assert f.api(p.user, f.PROVIDER).post(f"/api/v1/bids/{bid.pk}/withdraw/").status_code == 200
    assert post_bid(p, order.pk, {"price_per_hour": 2 * USD}).status_code == 201


def test_a_bid_is_four_statements_and_a_transaction(order: Order) -> None:
    """The hot path of the market: the token, the bidder's GPU lines, the order's lock, the insert.
    (Each statement the ORM builds costs more CPU than the database spends on it.)"""
    p = f.provider()
    api = f.api(p.user, f.PROVIDER)
    api.get("/api/v1/bids/")  # the token's first use also records when it was used
    with CaptureQueriesContext(connection) as queries:
        assert api.post(f"/api/v1/orders/{order.pk}/bids/", {"price_per_hour": USD}, format="json").status_code == 201
    statements = [q["sql"].split()[0] for q in queries.captured_queries if not q["sql"].startswith("SAVEPOINT")]
    statements = [s for s in statements if s not in ("RELEASE", "BEGIN", "COMMIT")]
    assert statements == ["SELECT", "SELECT", "SELECT", "INSERT"], queries.captured_queries


def test_unknown_order_is_404() -> None:
    assert post_bid(f.provider(), 999_999, {"price_per_hour": USD}).status_code == 404


def test_provider_without_profile_gets_a_clear_403(order: Order) -> None:
    api = f.api(f.user(provider=True), f.PROVIDER)
    response = api.post(f"/api/v1/orders/{order.pk}/bids/", {"price_per_hour": USD}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "provider_profile_required"


def test_the_provider_feed_lists_orders_it_can_serve() -> None:
    client = f.client_user()
    fits = f.order(client, resources={"gpu_count": 2})
    too_big = f.order(client, resources={"gpu_count": 16})
    other_model = f.order(client, resources={"gpu_models": ["l4-24gb"]})
    needs_verified = f.order(client, verification="verified")
    by_vram = f.order(client, resources={"gpu_models": None, "min_vram_gib": 80})
    p = f.provider(gpus={"h100-sxm-80gb": 8})
    api = f.api(p.user, f.PROVIDER)
    ids = [o["id"] for o in api.get("/api/v1/provider/orders/").json()["results"]]
    assert set(ids) == {fits.pk, by_vram.pk}
    assert too_big.pk not in ids and other_model.pk not in ids and needs_verified.pk not in ids
    ProviderGpu.objects.filter(provider=p).update(verified=True)
    bid = f.bid(p, fits, USD)
    feed = {o["id"]: o for o in api.get("/api/v1/provider/orders/").json()["results"]}
    assert needs_verified.pk in feed
    assert feed[fits.pk]["my_bid"] == {"id": bid.pk, "price_per_hour": USD}


def test_a_disabled_provider_cannot_bid(order: Order) -> None:
    from providers.models import Provider

    p = f.provider()
    Provider.objects.filter(pk=p.pk).update(status=Provider.Status.DISABLED)
    response = post_bid(p, order.pk, {"price_per_hour": USD})
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_eligible"
