"""Celery tasks for leases: each takes ids, calls one service, and is safe to run again. The
escrow's own tasks (funding, closing and topping up on chain) are in ``leases.escrow.tasks``."""

from celery import shared_task

from leases import services
from leases.escrow import escrow
from leases.escrow import tasks as escrow_tasks

__all__ = ["escrow_tasks"]  # the escrow's tasks register with the worker through this module


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


@shared_task(name="leases.tasks.sync_chain", ignore_result=True, soft_time_limit=100, time_limit=120)
def sync_chain() -> int:
    """Periodic: what happened in the escrow outside our calls (on chain: index its events, apply
    deposits and withdrawals, retry leases whose funding or closing task was lost)."""
    return escrow().sync()
