"""The reverse auction's rules as pure functions: who is eligible, who wins, what is paid.

- Eligible: provider active and online, verified for the bid's GPU model when the order requires
  it, with the region and attributes the order's placement names, price within the order's
  maximum, capacity still free.
- Ranking: lowest price; ties go to the better reputation, then the earlier bid.
- Price paid: ``first_price`` pays the winner its bid. ``second_price`` pays the lowest price among
  the other eligible bids, never less than the winner's own bid; a winner alone is paid the
  order's maximum. When the winner is the cheapest bid this is exactly the second-lowest
  eligible bid, which makes bidding one's true cost the best strategy. The rule prices the
  deadline's award; a bid the client accepts itself clears at ``first_price`` (its own price).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

FIRST_PRICE = "first_price"
SECOND_PRICE = "second_price"


@dataclass(frozen=True)
class Candidate:
    bid_id: int
    price_per_hour: int
    reputation: int
    placed: datetime | int  # when the bid was placed, or its position in placement order
    ineligible_reason: str | None = None

    @property
    def eligible(self) -> bool:
        return self.ineligible_reason is None


@dataclass(frozen=True)
class BidFacts:
    """What eligibility depends on, gathered by the caller from locked or fresh rows."""

    price_per_hour: int
    max_price_per_hour: int
    provider_active: bool
    provider_online: bool
    verification_required: bool
    gpu_verified: bool
    reputation: int
    min_reputation: int
    gpus_available: int
    gpus_needed: int
    host_fits: bool
    placement_met: bool = True


def placement_unmet(placement: Mapping[str, str], *, region: str, attributes: Mapping[str, str]) -> str:
    """What of an order's placement a provider lacks ("region=eu-west, tier=gold"), or "" when it
    has it all: ``region`` is the provider's region, any other key one of its attributes."""
    have = {**attributes, "region": region}
    return ", ".join(f"{key}={value}" for key, value in sorted(placement.items()) if have.get(key) != value)


def ineligibility(facts: BidFacts) -> str | None:
    """Why a bid cannot win, or None when it can."""
    if not facts.provider_active:
        return "provider_inactive"
    if not facts.provider_online:
        return "provider_offline"
    if facts.verification_required and not facts.gpu_verified:
        return "not_verified"
    if facts.reputation < facts.min_reputation:
        return "reputation_too_low"
    if not facts.placement_met:
        return "placement_unmet"
    if facts.price_per_hour > facts.max_price_per_hour:
        return "price_above_maximum"
    if facts.gpus_available < facts.gpus_needed or not facts.host_fits:
        return "insufficient_capacity"
    return None


def _rank_key(candidate: Candidate) -> tuple:
    return (candidate.price_per_hour, -candidate.reputation, candidate.placed, candidate.bid_id)


def rank(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Eligible candidates, best first."""
    return sorted((c for c in candidates if c.eligible), key=_rank_key)


def clearing_price(*, rule: str, winner: Candidate, others: Sequence[Candidate], max_price_per_hour: int) -> int:
    """What the winner is paid per hour. ``others``: the other eligible candidates."""
    if rule == FIRST_PRICE:
        return winner.price_per_hour
    if rule != SECOND_PRICE:
        raise ValueError(f"unknown pricing rule {rule!r}")
    prices = [c.price_per_hour for c in others if c.eligible and c.bid_id != winner.bid_id]
    if not prices:
        return max_price_per_hour
    return min(max(min(prices), winner.price_per_hour), max_price_per_hour)
