"""How much of a lease's deposit has been earned: pure arithmetic, integer micro-dollars.

Accrual comes from elapsed whole seconds, ``price_per_hour * seconds // 3600``, never from a
rounded per-second rate, so totals do not drift; it is capped at the deposit.
"""

from datetime import datetime


def elapsed_seconds(*, started_at: datetime, until: datetime, duration_hours: int) -> int:
    seconds = int((until - started_at).total_seconds())
    return max(0, min(seconds, duration_hours * 3600))


def accrued_amount(*, price_per_hour: int, seconds: int, deposit: int) -> int:
    return min(price_per_hour * max(0, seconds) // 3600, deposit)
