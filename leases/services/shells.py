"""Shells into a lease: the client opens one from the lease page while the workload runs; the
marketplace relays it to the provider's agent (``leases.consumers.ShellConsumer``). Each session
is written down when it opens and when it ends, so the lease's page shows who opened a shell,
when, and for how long; what was typed or shown is never kept."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from core.errors import Conflict, NotFound
from core.models import User
from leases.events import lease_changed
from leases.models import Lease, ShellSession

MAX_OPEN_SHELLS = 4  # sessions of one lease open at once
STALE_AFTER = timedelta(hours=24)  # an open session this old was cut off without its end written


def shell_open(*, user: User, lease_id: int) -> ShellSession:
    """A new shell session into the lease, for its client, while the lease runs."""
    with transaction.atomic():
        lease = Lease.objects.select_for_update().filter(pk=lease_id, client=user).first()
        if lease is None:
            raise NotFound("No such lease.")
        if lease.status != Lease.Status.RUNNING:
            raise Conflict(
                "The lease is not running: a shell opens only while its workload runs.", code="lease_not_running"
            )
        open_now = ShellSession.objects.filter(
            lease=lease, ended_at__isnull=True, started_at__gt=timezone.now() - STALE_AFTER
        ).count()
        if open_now >= MAX_OPEN_SHELLS:
            raise Conflict(
                f"This lease has {MAX_OPEN_SHELLS} shells open already: close one first.", code="too_many_shells"
            )
        session = ShellSession.objects.create(lease=lease, user=user)
        lease_changed(lease)
    return session


def shell_end(*, session_id: int, reason: str) -> None:
    """The session ended (the browser left, the shell exited, the agent went): written once."""
    with transaction.atomic():
        session = ShellSession.objects.select_related("lease").filter(pk=session_id, ended_at__isnull=True).first()
        if session is None:
            return
        session.ended_at = timezone.now()
        session.end_reason = reason[:200]
        session.save(update_fields=["ended_at", "end_reason"])
        lease_changed(session.lease)


def shell_may_continue(*, session_id: int) -> bool:
    """Whether an open session's lease still runs (a shell ends when its lease stops running)."""
    return ShellSession.objects.filter(
        pk=session_id, ended_at__isnull=True, lease__status=Lease.Status.RUNNING
    ).exists()
