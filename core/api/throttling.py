"""Per-token rate limits as fixed-window counters.

DRF's stock throttles keep a list of request times per client and rewrite it on every request,
which grows with the rate. Here each window is one counter: with Redis, one pipelined
``INCR`` + ``EXPIRE`` round trip; on embedded defaults, the local-memory cache. While Redis does
not answer, nothing is counted and nothing is refused (the API stays up; the log says so).
"""

import logging
import time
from functools import cache as memoize
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from core.logs import SparseWarnings
from core.models import ApiToken

if TYPE_CHECKING:
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)


@memoize
def _redis() -> Any:
    return redis.Redis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None


def hit(bucket: str, ttl: int) -> int:
    """Count one more event in ``bucket`` (kept ``ttl`` seconds); returns the count so far."""
    return _count(f"{settings.REDIS_KEY_PREFIX}:{bucket}", ttl)


def count_of(bucket: str) -> int:
    """Events counted in ``bucket`` so far (0 once it expired, or while Redis is down)."""
    client = _redis()
    if client is None:
        return int(cache.get(f"{settings.REDIS_KEY_PREFIX}:{bucket}") or 0)
    try:
        return int(client.get(f"{settings.REDIS_KEY_PREFIX}:{bucket}") or 0)
    except redis.RedisError as exc:
        _redis_down(exc)
        return 0


def forget(bucket: str) -> None:
    client = _redis()
    if client is None:
        cache.delete(f"{settings.REDIS_KEY_PREFIX}:{bucket}")
        return
    try:
        client.delete(f"{settings.REDIS_KEY_PREFIX}:{bucket}")
    except redis.RedisError as exc:
        _redis_down(exc)


_warnings = SparseWarnings(logger)


def _redis_down(exc: Exception) -> None:
    """Counting fails open: while Redis is down, requests are served and not counted (said once a
    minute per process, not once a request)."""
    _warnings.warning("redis", "rate limits are not counted: Redis does not answer (%s)", exc)


def _count(bucket: str, ttl: int) -> int:
    client = _redis()
    if client is not None:
        pipe = client.pipeline(transaction=False)
        pipe.incr(bucket)
        pipe.expire(bucket, ttl, nx=True)
        try:
            return int(pipe.execute()[0])
        except redis.RedisError as exc:
            _redis_down(exc)
            return 0
    cache.add(bucket, 0, timeout=ttl)
    try:
        return cache.incr(bucket)
    except ValueError:  # expired between add and incr
        cache.set(bucket, 1, timeout=ttl)
        return 1


class TokenRateThrottle(SimpleRateThrottle):
    """Requests per API token (per user for web sessions, per address when anonymous)."""

    scope = "token"
    num_requests: int  # parsed from the rate by SimpleRateThrottle, when there is one
    duration: int

    def get_cache_key(self, request: Request, view: "APIView") -> str:
        if isinstance(request.auth, ApiToken):
            ident = f"t{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"u{request.user.pk}"
        else:
            ident = f"a{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request: Request, view: "APIView") -> bool:
        if self.rate is None:
            return True
        now = time.time()
        window = int(now // self.duration)
        self.wait_seconds = (window + 1) * self.duration - now
        count = _count(
            f"{settings.REDIS_KEY_PREFIX}:{self.get_cache_key(request, view)}:{window}", int(self.duration) + 1
        )
        return count <= self.num_requests

    def wait(self) -> float:
        return max(1.0, self.wait_seconds)


class ActionRateThrottle(TokenRateThrottle):
    """A tighter budget for one costly or sensitive write (the view's ``throttle_scope``: bids,
    token creation), per token, beside the general one. Reads are not counted."""

    def __init__(self) -> None:  # the rate depends on the view: read in allow_request
        pass

    def allow_request(self, request: Request, view: "APIView") -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        self.scope = getattr(view, "throttle_scope", "")
        self.rate = self.THROTTLE_RATES.get(self.scope) if self.scope else None
        if self.rate is None:
            return True
        requests, duration = self.parse_rate(self.rate)
        assert requests is not None and duration is not None  # a rate was given
        self.num_requests, self.duration = requests, duration
        return super().allow_request(request, view)
