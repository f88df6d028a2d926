"""gunicorn's settings for the web process (``gunicorn -c config/gunicorn.py config.wsgi:application``).

With ``PROMETHEUS_MULTIPROC_DIR`` set, every worker writes its request metrics there and /metrics
sums them; the directory is emptied when the server starts and a dead worker's files are dropped.
"""

import os
import shutil
from typing import Any

from prometheus_client import multiprocess

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_tmp_dir = "/tmp"  # noqa: S108 - an emptyDir in the chart: the root filesystem is read-only
accesslog = "-"
forwarded_allow_ips = "*"  # behind the cluster's ingress
timeout = 60
graceful_timeout = 30


def on_starting(server: object) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:  # gunicorn's Arbiter and Worker
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
