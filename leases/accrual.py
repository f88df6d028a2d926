"""How much of a lease's deposit has been earned: pure arithmetic, integer micro-dollars.

Amounts come from whole seconds, ``price_per_hour * seconds // 3600``, never from a rounded
per-second rate, so totals do not drift. What a provider is owed is the lesser of the time cap
(seconds since the lease started) and the usage (seconds its agent reported the workload running),
never beyond the deposit: downtime is not paid, and the client's refund grows by it.
"""

from datetime import datetime


def elapsed_seconds(*, started_at: datetime, until: datetime) -> int:
    """Whole seconds from ``started_at`` to ``until`` (the deposit, not the time, caps what is owed:
    a top-up extends a lease beyond its ordered duration)."""
    return max(0, int((until - started_at).total_seconds()))


def accrued_amount(*, price_per_hour: int, seconds: int, deposit: int) -> int:
    return min(price_per_hour * max(0, seconds) // 3600, deposit)


def owed_amount(*, price_per_hour: int, deposit: int, elapsed_seconds: int, run_seconds: int) -> int:
    """The lesser of the time cap and the usage-based amount, within the deposit."""
    return min(
        accrued_amount(price_per_hour=price_per_hour, seconds=elapsed_seconds, deposit=deposit),
        accrued_amount(price_per_hour=price_per_hour, seconds=run_seconds, deposit=deposit),
    )
