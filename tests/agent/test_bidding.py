import pytest

from agent.bidding import bid_pass, offers, registry_of
from agent.client import MarketplaceClient
from agent.config import PricingPolicy
from core import services as accounts
from core.models import TokenScope
from marketplace import services as market
from marketplace.models import Bid
from tests import factories as f
from tests.factories import USD

POLICY = PricingPolicy(
    per_gpu_hour={"h100-sxm-80gb": 2 * USD, "a100-sxm-80gb": USD},
    floor_per_hour=1_500_000,
    max_duration_hours=48,
    allowed_registries=["ghcr.io", "docker.io"],
    denied_images=["ghcr.io/evil/*"],
)


def order(**overrides) -> dict:  # type: ignore[no-untyped-def]
    base = {
        "workload": {"image": "ghcr.io/acme/trainer:1.4"},
        "resources": {"gpu_count": 2, "gpu_models": ["h100-sxm-80gb", "a100-sxm-80gb"]},
        "duration_hours": 4,
        "max_price_per_hour": 10 * USD,
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return base


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("ubuntu", "docker.io"),
        ("library/ubuntu:22.04", "docker.io"),
        ("ghcr.io/a/b", "ghcr.io"),
        ("localhost:5000/x", "localhost:5000"),
    ],
)
def test_registry_of(image: str, registry: str) -> None:
    assert registry_of(image) == registry


def test_cheapest_priced_model_first_and_the_floor() -> None:
    assert offers(order(), POLICY) == ([("a100-sxm-80gb", 2 * USD), ("h100-sxm-80gb", 4 * USD)], "")
    one_gpu = offers(order(resources={"gpu_count": 1}), POLICY)[0]
    assert one_gpu[0] == ("a100-sxm-80gb", 1_500_000)  # the floor beats $1/h


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"duration_hours": 72}, "more than 48 h"),
        ({"workload": {"image": "quay.io/x/y:1"}}, "registry quay.io"),
        ({"workload": {"image": "ghcr.io/evil/miner:1"}}, "denied"),
        ({"resources": {"gpu_models": ["l4-24gb"]}}, "no price"),
        ({"max_price_per_hour": USD}, "less than the asking price"),
    ],
)
def test_orders_the_policy_declines(overrides: dict, reason: str) -> None:
    candidates, why = offers(order(**overrides), POLICY)
    assert candidates == [] and reason in why


@pytest.mark.django_db(transaction=True)
def test_a_bidding_pass_against_a_live_marketplace(live_server) -> None:  # type: ignore[no-untyped-def]
    # in-process over real HTTP: a full `run` would first report this host's inventory (no GPUs)
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    client = f.client_user()
    wanted = f.order(client, max_price_per_hour=5 * USD)
    denied = f.order(client, workload={"image": "ghcr.io/evil/miner:1"})
    too_cheap = f.order(client, max_price_per_hour=USD)
    policy = PricingPolicy(per_gpu_hour={"h100-sxm-80gb": 2 * USD}, denied_images=["ghcr.io/evil/*"])

    summary = bid_pass(MarketplaceClient(live_server.url, token), policy)

    assert summary.placed == [wanted.pk]
    assert set(summary.skipped) == {denied.pk, too_cheap.pk}
    bid = Bid.objects.get()
    assert (bid.order_id, bid.price_per_hour, bid.gpu_model_id) == (wanted.pk, 2 * USD, "h100-sxm-80gb")
    # the next pass sees its own bid and leaves the order alone
    assert bid_pass(MarketplaceClient(live_server.url, token), policy).placed == []


@pytest.mark.django_db(transaction=True)
def test_open_bids_hold_capacity_until_they_are_lost(live_server) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 2})
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    client = f.client_user()
    first = f.order(client, resources={"gpu_count": 2}, max_price_per_hour=10 * USD)
    second = f.order(client, resources={"gpu_count": 2}, max_price_per_hour=10 * USD)
    policy = PricingPolicy(per_gpu_hour={"h100-sxm-80gb": 2 * USD})
    agent = MarketplaceClient(live_server.url, token)

    summary = bid_pass(agent, policy)
    # both GPUs are promised to the first order while its bid is open: no second promise
    assert summary.placed == [first.pk] and summary.held == {"h100-sxm-80gb": 2}
    assert "open bids hold" in summary.skipped[second.pk]
    assert bid_pass(agent, policy).placed == []
    # the client cancels the first order, and the bid expires (as it would when lost or withdrawn):
    # the hold goes with it
    market.order_cancel(client=client, order_id=first.pk)
    assert Bid.objects.get(order=first).status == "expired"
    assert bid_pass(agent, policy).placed == [second.pk]


def test_a_provider_may_decline_open_ended_orders() -> None:
    assert offers(order(open_ended=True), POLICY)[0]  # by default it bids on them
    bounded = PricingPolicy(**{**POLICY.__dict__, "open_ended": False})
    assert offers(order(open_ended=False), bounded)[0]
    assert offers(order(open_ended=True), bounded) == (
        [],
        "open-ended (runs while funded), and this provider takes only orders with an end",
    )
