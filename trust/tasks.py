from celery import shared_task

from chain.transactions import ChainUnavailable
from trust import services


@shared_task(name="trust.tasks.sweep_checks", ignore_result=True, soft_time_limit=50, time_limit=60)
def sweep_checks() -> int:
    """Periodic: expire checks nobody started in time and fail those whose rows were never opened,
    also for providers whose agent stopped asking; draw spot checks on running leases; finish
    closing the leases of failed checks and paying their clients where a task was lost."""
    expired = services.checks_expire()
    services.spot_checks_issue()
    for check_id in services.consequences_due():  # each in a task of its own: closing and paying take time
        apply_consequences.delay(check_id)
    for check_id in services.compensations_due():
        pay_compensations.delay(check_id)
    return expired


@shared_task(name="trust.tasks.apply_consequences", ignore_result=True, soft_time_limit=280, time_limit=300)
def apply_consequences(check_id: int) -> None:
    """Close the leases on a failed check's GPUs and fix what their clients are owed."""
    services.consequences_apply(check_id=check_id)


# Paying compensations on chain retries for as long as the chain is unreachable.
@shared_task(
    name="trust.tasks.pay_compensations",
    ignore_result=True,
    autoretry_for=(ChainUnavailable,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=None,
    soft_time_limit=280,
    time_limit=300,
)
def pay_compensations(check_id: int) -> None:
    """Pay what a failed check owes the clients of the leases it closed (on chain: by slashing)."""
    services.compensations_pay(check_id=check_id)


@shared_task(name="trust.tasks.update_reputations", ignore_result=True, soft_time_limit=280, time_limit=300)
def update_reputations() -> int:
    """Periodic: every provider's reputation from its record of checks, uptime and leases."""
    return services.reputations_update()
