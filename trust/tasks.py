from celery import shared_task

from trust import services


@shared_task(name="trust.tasks.sweep_checks", ignore_result=True, soft_time_limit=50, time_limit=60)
def sweep_checks() -> int:
    """Periodic: expire checks nobody started in time and fail those whose rows were never opened,
    also for providers whose agent stopped asking."""
    return services.checks_expire()
