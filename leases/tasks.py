from celery import shared_task
from django.conf import settings

from chain.transactions import ChainUnavailable
from leases import services


@shared_task(name="leases.tasks.close_finished_leases", ignore_result=True, soft_time_limit=50, time_limit=60)
def close_finished_leases() -> int:
    """Periodic: leases out of funds past their grace period, and leases whose provider went silent."""
    return services.leases_close_finished() + services.leases_close_abandoned()


@shared_task(name="leases.tasks.settle_leases", ignore_result=True, soft_time_limit=280, time_limit=300)
def settle_leases() -> int:
    """Periodic: pay providers what running leases earned since the last tick."""
    return services.leases_settle()


@shared_task(name="leases.tasks.warn_low_funds", ignore_result=True, soft_time_limit=50, time_limit=60)
def warn_low_funds() -> int:
    """Periodic: warn clients whose lease deposits run out soon."""
    return services.leases_warn_low_funds()


# Escrow tasks retry for as long as the chain is unreachable, backing off up to 5 minutes.
CHAIN_TASK = {
    "ignore_result": True,
    "autoretry_for": (ChainUnavailable,),
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "max_retries": None,
    "soft_time_limit": 280,
    "time_limit": 300,
}


@shared_task(name="leases.tasks.fund_lease_on_chain", **CHAIN_TASK)
def fund_lease_on_chain(lease_id: int) -> None:
    """Open a funding lease in the escrow contract; retried while the chain is unreachable."""
    from leases import escrow

    escrow.lease_fund_on_chain(lease_id=lease_id)


@shared_task(name="leases.tasks.close_lease_on_chain", **CHAIN_TASK)
def close_lease_on_chain(lease_id: int) -> None:
    """Close a closing lease in the escrow contract and book what it paid and refunded."""
    from leases import escrow

    escrow.lease_close_on_chain(lease_id=lease_id)


@shared_task(name="leases.tasks.top_up_lease_on_chain", **CHAIN_TASK)
def top_up_lease_on_chain(top_up_id: int) -> None:
    """Send a pending lease top-up to the escrow contract and book the outcome."""
    from leases import escrow

    escrow.top_up_on_chain(top_up_id=top_up_id)


@shared_task(name="leases.tasks.sync_chain", ignore_result=True, soft_time_limit=100, time_limit=120)
def sync_chain() -> int:
    """Periodic: index the escrow's events, apply deposits and withdrawals, and retry leases
    whose funding or closing task was lost."""
    if settings.ESCROW_BACKEND != "chain":
        return 0
    from leases import escrow

    return escrow.chain_sync(confirmations=settings.CHAIN_CONFIRMATIONS)
