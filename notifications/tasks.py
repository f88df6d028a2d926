"""Celery tasks for webhooks: thin wrappers around the services."""

from celery import shared_task

from notifications import services


@shared_task(ignore_result=True, soft_time_limit=60)
def deliver_webhook(delivery_id: int) -> None:
    delivery = services.webhook_deliver(delivery_id=delivery_id)
    if delivery is not None and delivery.status == delivery.Status.PENDING and delivery.next_attempt_at:
        deliver_webhook.apply_async((delivery_id,), eta=delivery.next_attempt_at)


@shared_task(ignore_result=True, soft_time_limit=300, time_limit=330)
def send_due_webhooks() -> int:
    return services.webhooks_send_due()
