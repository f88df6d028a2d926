"""The pure auction rules: eligibility, ranking, the price paid."""

from datetime import UTC, datetime, timedelta

import pytest

from marketplace.auction import BidFacts, Candidate, clearing_price, ineligibility, rank

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def cand(bid_id: int, price: int, reputation: int = 500, at: int = 0, reason: str | None = None) -> Candidate:
    return Candidate(bid_id, price, reputation, T0 + timedelta(seconds=at), reason)


def facts(**overrides: object) -> BidFacts:
    base = dict(
        price_per_hour=100,
        max_price_per_hour=100,
        provider_active=True,
        provider_online=True,
        verification_required=False,
        gpu_verified=False,
        reputation=500,
        min_reputation=0,
        gpus_available=1,
        gpus_needed=1,
        host_fits=True,
    )
    return BidFacts(**(base | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({}, None),
        ({"provider_active": False}, "provider_inactive"),
        ({"provider_online": False}, "provider_offline"),
        ({"verification_required": True}, "not_verified"),
        ({"verification_required": True, "gpu_verified": True}, None),
        ({"min_reputation": 501}, "reputation_too_low"),
        ({"min_reputation": 500}, None),
        ({"price_per_hour": 101}, "price_above_maximum"),
        ({"gpus_available": 0}, "insufficient_capacity"),
        ({"host_fits": False}, "insufficient_capacity"),
    ],
)
def test_eligibility(overrides: dict, reason: str | None) -> None:
    assert ineligibility(facts(**overrides)) == reason


def test_cheapest_wins_then_reputation_then_earliest() -> None:
    ranked = rank(
        [
            cand(1, 300),
            cand(2, 200, reputation=400, at=0),
            cand(3, 200, reputation=900, at=5),
            cand(4, 200, reputation=900, at=9),
        ]
    )
    assert [c.bid_id for c in ranked] == [3, 4, 2, 1]


def test_ineligible_bids_never_rank() -> None:
    assert [c.bid_id for c in rank([cand(1, 10, reason="provider_offline"), cand(2, 20)])] == [2]


def test_first_price_pays_the_bid() -> None:
    assert clearing_price(rule="first_price", winner=cand(1, 200), others=[cand(2, 300)], max_price_per_hour=500) == 200


def test_second_price_pays_the_second_lowest_eligible_bid() -> None:
    others = [cand(2, 300), cand(3, 250), cand(4, 100, reason="provider_offline")]
    assert clearing_price(rule="second_price", winner=cand(1, 200), others=others, max_price_per_hour=500) == 250


def test_second_price_alone_pays_the_maximum() -> None:
    assert clearing_price(rule="second_price", winner=cand(1, 200), others=[], max_price_per_hour=500) == 500


def test_second_price_with_a_tie_pays_the_tied_price() -> None:
    assert (
        clearing_price(rule="second_price", winner=cand(1, 200), others=[cand(2, 200)], max_price_per_hour=500) == 200
    )


def test_second_price_never_pays_less_than_the_winners_own_bid() -> None:
    # a client may pick a pricier bid by hand; the winner is then paid at least what it asked
    assert (
        clearing_price(rule="second_price", winner=cand(1, 300), others=[cand(2, 200)], max_price_per_hour=500) == 300
    )
