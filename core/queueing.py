"""Handing work from a service to Celery.

Services name their tasks by import (``queueing.send(tasks.award_order, order.pk)``), so the path
from a service to its task is one an IDE and import-linter follow. ``send`` never fails the caller:
a broker that cannot take the task is logged, and every task sent this way has a periodic sweep
that does what a lost one left undone.
"""

import logging
from datetime import datetime
from typing import Any

from celery import Task
from kombu.exceptions import OperationalError as KombuOperationalError

logger = logging.getLogger(__name__)


def send(task: Task, *args: Any, eta: datetime | None = None) -> None:
    """Queue ``task`` with ``args`` (to run at ``eta``, if given)."""
    try:
        if eta is None:
            task.apply_async(args=args)
        else:
            task.apply_async(args=args, eta=eta)
    except (KombuOperationalError, OSError) as exc:  # the broker is down: said in one line, not a bug
        logger.warning("could not queue %s%s (%s); its sweep will do it", task.name, args, exc)
