"""Every Celery task can be sent: a soft time limit above the hard one (its own or the default)
makes Celery refuse to send it, and beat then never runs a periodic task at all."""

from celery import current_app
from django.conf import settings


def test_every_tasks_soft_time_limit_is_within_its_hard_one() -> None:
    current_app.loader.import_default_modules()  # every app's tasks.py
    ours = {name: task for name, task in current_app.tasks.items() if not name.startswith("celery.")}
    assert len(ours) > 10
    for name, task in ours.items():
        soft = task.soft_time_limit or settings.CELERY_TASK_SOFT_TIME_LIMIT
        hard = task.time_limit or settings.CELERY_TASK_TIME_LIMIT
        assert soft <= hard, f"{name}: soft_time_limit {soft} > time_limit {hard}"


def test_every_periodic_task_exists() -> None:
    current_app.loader.import_default_modules()
    for entry, schedule in settings.CELERY_BEAT_SCHEDULE.items():
        assert schedule["task"] in current_app.tasks, f"{entry}: no task {schedule['task']}"


def test_services_name_their_tasks_by_import() -> None:
    """A task a service queues is an object it imported, never a string: the path from a service to
    its task is one an IDE and import-linter can follow (and a renamed task fails at import)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    by_string = []
    for app in ("core", "notifications", "chain", "providers", "leases", "trust", "marketplace", "payments"):
        for path in (root / app).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                name = ast.unparse(node.func)
                sends = name.endswith(("queueing.send", "send_task")) or name in ("send", "_enqueue")
                if sends and isinstance(node.args[0], ast.Constant | ast.JoinedStr):
                    by_string.append(f"{path.relative_to(root)}:{node.lineno}")
    assert by_string == []
