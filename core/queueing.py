"""Handing work from a service to Celery.

``send`` imports the task when called (an app's tasks module imports the services that call this)
and never fails the caller: a broker that cannot take the task is logged, and every task sent this
way has a periodic sweep that does what a lost one left undone.
"""

import importlib
import logging
from datetime import datetime
from typing import Any

from kombu.exceptions import OperationalError as KombuOperationalError

logger = logging.getLogger(__name__)


def send(task_path: str, *args: Any, eta: datetime | None = None) -> None:
    """Queue the Celery task at ``task_path`` (``"app.tasks.name"``) with ``args`` (to run at
    ``eta``, if given)."""
    module, name = task_path.rsplit(".", 1)
    try:
        getattr(importlib.import_module(module), name).apply_async(args=args, eta=eta)
    except (KombuOperationalError, OSError) as exc:  # the broker is down: said in one line, not a bug
        logger.warning("could not queue %s%s (%s); its sweep will do it", task_path, args, exc)
