from celery import shared_task

from marketplace import services


@shared_task(name="marketplace.tasks.award_order", ignore_result=True, soft_time_limit=30, time_limit=45)
def award_order(order_id: int) -> None:
    """Runs at an order's deadline; idempotent (a decided or early order is left alone)."""
    services.order_award_due(order_id=order_id)


@shared_task(name="marketplace.tasks.sweep_due_orders", ignore_result=True, soft_time_limit=50, time_limit=60)
def sweep_due_orders() -> int:
    """Periodic safety net for deadlines whose task was lost or delayed."""
    return services.orders_award_due()
