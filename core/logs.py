"""Warnings for conditions that last (Redis away, a socket falling behind): said at most once a
period for each kind, so an outage is a line a minute in the log, not one a request."""

import logging
import time


class SparseWarnings:
    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self.logger, self.every = logger, every
        self._said: dict[str, float] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._said.get(kind, -self.every) >= self.every:
            self._said[kind] = now
            self.logger.warning(message, *args)
