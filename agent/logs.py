"""Shipping the tail of each lease's workload log to the marketplace, for the client's lease page.

Each pass sends the last ``tail_lines`` lines (at most ``MAX_LOG_BYTES``, the newest kept) of a
lease whose workload exists, when they changed since the last send. The marketplace keeps only the
latest tail, so a lost send is made good by the next, and a restarted agent just sends again.
"""

import hashlib
import logging

from agent.client import MarketplaceClient, MarketplaceError
from agent.runtimes.base import Runtime, RuntimeError_, RuntimeUnavailable

logger = logging.getLogger("gpumarket.agent")
MAX_LOG_BYTES = 64_000  # the marketplace refuses more


def clip(text: str, *, limit: int = MAX_LOG_BYTES) -> str:
    """The end of ``text`` in at most ``limit`` UTF-8 bytes, starting at a whole line when it was cut."""
    text = text.replace("\x00", "")
    data = text.encode()
    if len(data) <= limit:
        return text
    end = data[-limit:].decode(errors="ignore")
    newline = end.find("\n")
    return end[newline + 1 :] if 0 <= newline < len(end) - 1 else end


class LogShipper:
    def __init__(self, client: MarketplaceClient, runtime: Runtime, *, tail_lines: int = 200) -> None:
        self.client = client
        self.runtime = runtime
        self.tail_lines = tail_lines
        self._sent: dict[int, str] = {}  # lease id -> digest of the tail last sent

    def ship(self, lease_id: int) -> bool:
        """Send the lease's log tail if it changed; never raises. True when something was sent."""
        try:
            text = clip(self.runtime.logs(lease_id, tail=self.tail_lines))
        except (RuntimeError_, RuntimeUnavailable, OSError) as exc:
            logger.info("logs unreadable", extra={"fields": {"lease": lease_id, "error": str(exc)}})
            return False
        digest = hashlib.sha256(text.encode()).hexdigest()
        if not text or self._sent.get(lease_id) == digest:
            return False
        try:
            self.client.put_logs(lease_id, text)
        except MarketplaceError as exc:
            logger.info("logs not sent", extra={"fields": {"lease": lease_id, "error": str(exc)}})
            return False
        self._sent[lease_id] = digest
        return True

    def forget(self, keep: set[int]) -> None:
        """Drop what is remembered of leases no longer active."""
        for lease_id in set(self._sent) - keep:
            del self._sent[lease_id]
