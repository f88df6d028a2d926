"""The escrow contract's tasks: each sends one thing to the chain and books what it did, retried
while the chain is unreachable. ``leases.escrow.chain`` queues them by import; they keep the
names they were first queued under."""

from typing import Any

from celery import shared_task

from chain.transactions import ChainUnavailable

# Escrow tasks retry for as long as the chain is unreachable, backing off up to 5 minutes.
CHAIN_TASK: dict[str, Any] = {
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
    from leases.escrow import chain  # the module that queues these

    chain.lease_fund_on_chain(lease_id=lease_id)


@shared_task(name="leases.tasks.close_lease_on_chain", **CHAIN_TASK)
def close_lease_on_chain(lease_id: int) -> None:
    """Close a closing lease in the escrow contract and book what it paid and refunded."""
    from leases.escrow import chain  # the module that queues these

    chain.lease_close_on_chain(lease_id=lease_id)


@shared_task(name="leases.tasks.top_up_lease_on_chain", **CHAIN_TASK)
def top_up_lease_on_chain(top_up_id: int) -> None:
    """Send a pending lease top-up to the escrow contract and book the outcome."""
    from leases.escrow import chain  # the module that queues these

    chain.top_up_on_chain(top_up_id=top_up_id)
