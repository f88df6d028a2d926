"""What the pages show of the market, worded and formatted: the words live here, not in the
services. A bid's row travels in the live event (``services.bid_changed``), so an open order page
adds it without fetching the list again; ``templates/marketplace/_bid_row.html`` renders the same row
(a test keeps the two equal)."""

from core.money import format_usd_short
from marketplace import selectors
from marketplace.models import Bid


def bid_row(bid: Bid) -> dict:
    """What an order page shows of a bid, formatted as its table shows it."""
    provider, gpu_count = bid.provider, bid.order.gpu_count
    # what accepting it costs: the bid itself, per hour, and the deposit it takes
    per_hour = format_usd_short(bid.price_per_hour)
    deposit = format_usd_short(bid.price_per_hour * bid.order.duration_hours)
    return {
        "id": bid.pk,
        "provider_id": provider.pk,
        "rank": bid.rank_key,
        "status": bid.status,
        "price_per_hour": bid.price_per_hour,
        "text": {
            "provider": provider.name,
            "region": provider.region,
            "gpu_model": bid.gpu_model.name,
            "per_gpu_hour": format_usd_short(bid.price_per_hour // gpu_count),
            "per_hour": format_usd_short(bid.price_per_hour),
            "reliability": f"{round(provider.reputation / 10)} %",
            "verified": "verified" if selectors.bid_gpu_verified(bid) else "",
            "status": bid.get_status_display(),
            "accept": f"Accept the bid of {provider.name} at {per_hour}/h, {deposit} deposit",
            "accept_short": f"Accept at {per_hour}/h, {deposit} deposit",
        },
    }
