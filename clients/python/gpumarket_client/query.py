"""The offers query language: ``gpu=h100 vram>=80 price<2.5 verified region=eu gpus>=2``.

Terms are separated by spaces. ``gpu`` matches a catalog id or name containing the word (``h100``
is every H100); ``region`` a region starting with it; ``vram`` (GiB) and ``gpus`` (free) compare
with ``>=``, ``>`` or ``=``; ``price`` (dollars per GPU-hour) with ``<=``, ``<`` or ``=``;
``reliability`` (percent) with ``>=``; ``verified`` alone, or ``verified=yes|no``."""

import re
from dataclasses import dataclass, field
from typing import Any

from gpumarket_client.models import micros

_TERM = re.compile(r"^(?P<key>[a-z_]+)\s*(?:(?P<op>>=|<=|=|>|<)\s*(?P<value>.+))?$")


class QueryError(ValueError):
    """A term the language does not have, said so the user can fix it."""


@dataclass
class OfferQuery:
    params: dict[str, Any] = field(default_factory=dict)  # what the API filters
    gpu: str | None = None  # matched here: a word of the model's id or name
    region: str | None = None  # matched here: a prefix of the provider's region

    def matches(self, offer: Any) -> bool:
        model = offer.gpu_model if isinstance(offer.gpu_model, dict) else {}
        if self.gpu and self.gpu not in f"{model.get('id', '')} {model.get('name', '')}".lower().replace(" ", ""):
            return False
        region = str((offer.provider or {}).get("region", "")).lower()
        return not (self.region and not region.startswith(self.region))


def parse(words: list[str]) -> OfferQuery:
    query = OfferQuery()
    for word in " ".join(words).split():
        match = _TERM.match(word.strip().lower())
        if not match:
            raise QueryError(f"Cannot read {word!r}: write key=value, key>=number or key<number.")
        key, op, value = match["key"], match["op"], match["value"]
        if key == "verified":
            if op not in (None, "=") or (value or "yes") not in ("yes", "true", "no", "false"):
                raise QueryError("verified, or verified=yes / verified=no.")
            query.params["verified"] = (value or "yes") in ("yes", "true")
        elif key in ("gpu", "model"):
            _need(op, ("=",), word)
            query.gpu = value.replace("-", "").replace(" ", "") if value else None
        elif key == "region":
            _need(op, ("=",), word)
            query.region = value
        elif key in ("vram", "gpus", "count"):
            _need(op, (">=", ">", "="), word)
            number = _whole(value, word) + (1 if op == ">" else 0)
            query.params["min_vram_gib" if key == "vram" else "gpu_count"] = number
        elif key == "price":
            _need(op, ("<=", "<", "="), word)
            micros = _dollars(value, word) - (1 if op == "<" else 0)
            if micros < 1:
                raise QueryError(f"{word}: a price above $0.")
            query.params["max_price_per_gpu_hour"] = micros
        elif key == "reliability":
            _need(op, (">=", "="), word)
            query.params["min_reputation"] = min(1000, _whole(value, word) * 10)
        else:
            raise QueryError(f"Unknown term {key!r}: use gpu, vram, gpus, price, region, reliability or verified.")
    return query


def _need(op: str | None, allowed: tuple[str, ...], word: str) -> None:
    if op not in allowed:
        raise QueryError(f"{word}: use {' or '.join(allowed)}.")


def _whole(value: str | None, word: str) -> int:
    if not value or not value.isdigit():
        raise QueryError(f"{word}: a whole number.")
    return int(value)


def _dollars(value: str | None, word: str) -> int:
    amount = micros(value or "")
    if amount is None:
        raise QueryError(f"{word}: a price in dollars, e.g. 2.50.")
    return amount
