from celery import shared_task

from leases import services


@shared_task(name="leases.tasks.close_finished_leases", ignore_result=True, soft_time_limit=50, time_limit=60)
def close_finished_leases() -> int:
    return services.leases_close_finished()
