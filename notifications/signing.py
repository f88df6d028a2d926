"""Webhook signatures: pure functions, for us and for integrators' receivers.

Each delivery carries ``GPUMarket-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is
HMAC-SHA256 of ``"<t>.<raw body>"`` under the endpoint's secret. A receiver recomputes it, compares
in constant time, refuses timestamps older than its tolerance (replays), and remembers event ids it
has handled (the same event may arrive twice).
"""

import hashlib
import hmac
import time

HEADER = "GPUMarket-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature is missing, malformed, wrong, or too old."""


def sign(body: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    body: bytes, header: str, secret: str, *, tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None
) -> int:
    """Check ``header`` for ``body``; return its timestamp or raise SignatureError."""
    parts: dict[str, list[str]] = {}
    for item in (header or "").split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError) as exc:
        raise SignatureError("no timestamp in the signature header") from exc
    expected = sign(body, secret, timestamp).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", [])):
        raise SignatureError("the signature does not match")
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise SignatureError("the timestamp is outside the tolerance: a replay, or a clock far off")
    return timestamp
