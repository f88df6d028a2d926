"""Bidding by the provider's pricing policy.

For each open order the marketplace says this provider can serve (``GET /provider/orders/``):
skip it when it runs longer than the policy allows, uses an image from a registry the provider
does not allow or an image it denies, or pays less than the provider asks; otherwise bid
``price per GPU-hour * GPUs`` (at least the floor) on the cheapest acceptable model the provider
prices, trying the next model when the marketplace says there is no capacity for it.

Capacity is held locally while a bid is open: the GPUs each open bid would take are subtracted
from what is available before bidding again, so the provider never promises the same GPU twice.
Holds are read back from the marketplace's open bids on every pass: a bid that is lost, withdrawn
or expired no longer holds anything, and a restarted agent holds exactly what it held before.
"""

import fnmatch
from collections import Counter
from dataclasses import dataclass, field

from agent.client import MarketplaceClient, MarketplaceError
from agent.config import PricingPolicy


@dataclass
class BidSummary:
    placed: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)  # GPUs held by open bids, by model


def capacity_and_holds(client: MarketplaceClient) -> tuple[Counter, Counter]:
    """(GPUs available to new leases, GPUs held by open bids), by catalog model."""
    available: Counter = Counter()
    for line in client.me().get("gpus") or []:
        available[str(line["gpu_model"]["id"])] += int(line["available"])
    held: Counter = Counter()
    for bid in client.bids(["open"]):
        held[str(bid["gpu_model"]["id"])] += int(bid["gpu_count"])
    return available, held


def registry_of(image: str) -> str:
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def offers(order: dict, policy: PricingPolicy) -> tuple[list[tuple[str, int]], str]:
    """(model, price per hour) pairs to try, cheapest first, or the reason not to bid."""
    image = str(order["workload"]["image"])
    if order.get("open_ended") and not policy.open_ended:
        return [], "open-ended (runs while funded), and this provider takes only orders with an end"
    if order["duration_hours"] > policy.max_duration_hours:
        return [], f"runs {order['duration_hours']} h, more than {policy.max_duration_hours} h"
    if policy.allowed_registries and registry_of(image) not in policy.allowed_registries:
        return [], f"registry {registry_of(image)} is not allowed"
    if any(fnmatch.fnmatch(image, pattern) for pattern in policy.denied_images):
        return [], f"image {image} is denied"
    gpus = order["resources"]["gpu_count"]
    priced = [
        (model, max(policy.per_gpu_hour[model] * gpus, policy.floor_per_hour))
        for model in order["resources"]["gpu_models"]
        if model in policy.per_gpu_hour
    ]
    affordable = sorted((p for p in priced if p[1] <= order["max_price_per_hour"]), key=lambda p: (p[1], p[0]))
    if not priced:
        return [], "no price for any of its GPU models"
    if not affordable:
        return [], "pays less than the asking price"
    return affordable, ""


def bid_pass(client: MarketplaceClient, policy: PricingPolicy) -> BidSummary:
    summary = BidSummary()
    available, held = capacity_and_holds(client)
    for order in client.provider_orders():
        order_id = int(order["id"])
        if order.get("my_bid"):
            continue
        candidates, reason = offers(order, policy)
        if not candidates:
            summary.skipped[order_id] = reason
            continue
        gpus = int(order["resources"]["gpu_count"])
        for model, price in candidates:
            if available[model] - held[model] < gpus:
                continue  # held by open bids: try the next model
            try:
                client.place_bid(order_id, price_per_hour=price, gpu_model=model)
            except MarketplaceError as exc:
                if exc.code == "insufficient_capacity":
                    continue  # try the next model
                summary.skipped[order_id] = str(exc)
                break
            held[model] += gpus
            summary.placed.append(order_id)
            break
        else:
            summary.skipped[order_id] = "no free capacity (open bids hold the rest)"
    summary.held = {model: count for model, count in held.items() if count}
    return summary
