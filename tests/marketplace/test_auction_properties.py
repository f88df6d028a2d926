"""Properties of the auction rules over generated bids: the winner is the cheapest eligible bid
(better reputation, then the earlier bid, breaking ties), the ranking does not depend on the order
bids are read in, and the price paid never falls below the winner's own bid nor rises above the
client's maximum."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.auction import FIRST_PRICE, SECOND_PRICE, BidFacts, Candidate, clearing_price, ineligibility, rank

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=300, deadline=None)


@st.composite
def candidates(draw: st.DrawFn) -> list[Candidate]:
    count = draw(st.integers(0, 12))
    return [
        Candidate(
            bid_id=i + 1,
            price_per_hour=draw(st.integers(1, 10**7)),
            reputation=draw(st.integers(0, 1000)),
            placed=T0 + timedelta(seconds=draw(st.integers(0, 120))),
            ineligible_reason=draw(st.none() | st.sampled_from(["provider_offline", "not_verified"])),
        )
        for i in range(count)
    ]


@SETTINGS
@given(candidates(), st.randoms())
def test_the_ranking_is_the_eligible_bids_best_first_in_any_reading_order(bids: list[Candidate], rnd) -> None:  # type: ignore[no-untyped-def]
    ranked = rank(bids)
    assert {c.bid_id for c in ranked} == {c.bid_id for c in bids if c.eligible}
    for better, worse in pairwise(ranked):
        assert (better.price_per_hour, -better.reputation, better.placed, better.bid_id) < (
            worse.price_per_hour,
            -worse.reputation,
            worse.placed,
            worse.bid_id,
        )
    shuffled = list(bids)
    rnd.shuffle(shuffled)
    assert rank(shuffled) == ranked


@SETTINGS
@given(candidates(), st.integers(1, 10**7), st.sampled_from([FIRST_PRICE, SECOND_PRICE]))
def test_the_price_paid_is_between_the_winners_bid_and_the_clients_maximum(
    bids: list[Candidate], max_price: int, rule: str
) -> None:
    eligible = [c for c in bids if c.eligible and c.price_per_hour <= max_price]
    ranked = rank(eligible)
    if not ranked:
        return
    winner, others = ranked[0], ranked[1:]
    paid = clearing_price(rule=rule, winner=winner, others=others, max_price_per_hour=max_price)
    assert winner.price_per_hour <= paid <= max_price
    if rule == FIRST_PRICE:
        assert paid == winner.price_per_hour
    elif others:
        assert paid == others[0].price_per_hour  # the second-lowest eligible bid
    else:
        assert paid == max_price  # alone: the maximum


@SETTINGS
@given(
    st.builds(
        BidFacts,
        price_per_hour=st.integers(1, 100),
        max_price_per_hour=st.integers(1, 100),
        provider_active=st.booleans(),
        provider_online=st.booleans(),
        verification_required=st.booleans(),
        gpu_verified=st.booleans(),
        reputation=st.integers(0, 1000),
        min_reputation=st.integers(0, 1000),
        gpus_available=st.integers(0, 8),
        gpus_needed=st.integers(1, 8),
        host_fits=st.booleans(),
    )
)
def test_a_bid_is_eligible_exactly_when_every_rule_holds(facts: BidFacts) -> None:
    holds = (
        facts.provider_active
        and facts.provider_online
        and (facts.gpu_verified or not facts.verification_required)
        and facts.reputation >= facts.min_reputation
        and facts.price_per_hour <= facts.max_price_per_hour
        and facts.gpus_available >= facts.gpus_needed
        and facts.host_fits
    )
    assert (ineligibility(facts) is None) == holds
