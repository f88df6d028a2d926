"""A provider's reputation, 0 to 1000 (shown as a reliability percentage): pure arithmetic.

Three parts, each a share from 0 to 1 that starts at one half for a newcomer (a prior worth a
couple of observations, so one early event cannot swing it to either end) and follows the
provider's record as it grows:

- verification (40%): proof-of-GPU checks passed against failed in the window; a failure weighs
  ``CHECK_FAILURE_WEIGHT`` passes, since a cheater can pass most checks and fail a few;
- uptime (30%): the share of the window the provider's agent was heard from, counted from its
  heartbeats (from its registration, for a newer provider);
- leases (30%): leases completed against leases the provider broke off (it closed them before
  their paid time ran out, or a failed check closed them); a broken lease weighs
  ``LEASE_FAILURE_WEIGHT`` completed ones.

A newcomer scores 500; a provider with a spotless record of a few dozen checks and leases and full
uptime scores above 950; one failed check in a handful takes it below 700.
"""

from dataclasses import dataclass

CHECK_FAILURE_WEIGHT = 10
LEASE_FAILURE_WEIGHT = 3
PRIOR_SECONDS = 86_400  # uptime: a day, half of it online
WEIGHTS = (0.4, 0.3, 0.3)  # verification, uptime, leases


@dataclass(frozen=True)
class Record:
    checks_passed: int = 0
    checks_failed: int = 0
    online_seconds: int = 0
    window_seconds: int = 0  # how much of the window the provider existed
    leases_completed: int = 0
    leases_failed: int = 0


def share(good: float, bad: float) -> float:
    """good / (good + bad) after one of each: one half with no record."""
    return (good + 1) / (good + bad + 2)


def score(record: Record) -> int:
    verification = share(record.checks_passed, CHECK_FAILURE_WEIGHT * record.checks_failed)
    online = min(record.online_seconds, record.window_seconds)
    uptime = (online + PRIOR_SECONDS / 2) / (record.window_seconds + PRIOR_SECONDS)
    leases = share(record.leases_completed, LEASE_FAILURE_WEIGHT * record.leases_failed)
    parts = (verification, uptime, leases)
    return max(0, min(1000, round(1000 * sum(w * p for w, p in zip(WEIGHTS, parts, strict=True)))))
