"""The deadline award runs in a real Celery worker process, through the configured broker
(Redis in CI, the filesystem transport on embedded defaults)."""

import os
import subprocess
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from config.celery import app as celery_app
from marketplace.models import Order
from tests import factories as f
from tests import processes
from tests.factories import USD
from tests.faults.harness import database_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def test_a_real_worker_awards_the_order_when_its_window_ends() -> None:
    client = f.client_user()
    order = f.order(client, now=timezone.now() - timedelta(seconds=116))  # the window ends in ~4 s
    winner = f.bid(f.provider(), order, 2 * USD)
    f.bid(f.provider(), order, 3 * USD)

    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_TASK_ALWAYS_EAGER": "false"}
    worker = processes.start(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=info", "-n", "test@%h"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # What order_create queues on commit (tests run tasks eagerly, so send it for real here).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "always eager has no effect on send_task": intended
            celery_app.send_task("marketplace.tasks.award_order", args=[order.pk], eta=order.deadline)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            order.refresh_from_db()
            if order.status != Order.Status.OPEN:
                break
            time.sleep(0.25)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
    assert order.status == Order.Status.AWARDED, output[-3000:]
    assert order.closed_at >= order.deadline
    assert order.lease.bid_id == winner.pk
