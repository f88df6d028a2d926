from celery import shared_task

from chain import wallets


@shared_task(name="chain.tasks.purge_challenges", ignore_result=True, soft_time_limit=50, time_limit=60)
def purge_challenges() -> int:
    """Periodic: forget Sign-In with Ethereum challenges long expired."""
    return wallets.challenges_purge()
