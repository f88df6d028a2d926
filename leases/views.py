"""Web pages of a lease: its state, endpoints, what it costs as it runs, top-ups and close."""

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from core.errors import DomainError
from core.money import format_usd
from core.web import AuthenticatedHttpRequest, perform
from leases import selectors, services, states
from leases.charts import usage_chart
from leases.forms import AutoTopUpForm, TopUpForm
from leases.models import Lease

# The states a lease goes through, in order, for the page's timeline.
TIMELINE = [
    (Lease.Status.FUNDING, "Funding"),
    (Lease.Status.FUNDED, "Funded"),
    (Lease.Status.DEPLOYING, "Deploying"),
    (Lease.Status.RUNNING, "Running"),
    (Lease.Status.CLOSED, "Closed"),
]


SHELL_SESSIONS_SHOWN = 10  # the newest, in the lease's history


def _lease(request: AuthenticatedHttpRequest, pk: int) -> Lease:
    roles = set(request.user.roles)
    lease = (
        selectors.leases_visible_to(user=request.user, roles=roles)
        .select_related("provider", "gpu_model", "order")
        .filter(pk=pk)
        .first()
    )
    if lease is None:
        raise Http404("No such lease.")
    return lease


@login_required
@require_GET
def lease_logs(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The logs panel, redrawn when new lines come and every minute: while it is open, the agent
    streams (each redraw asks again, at most every half minute)."""
    lease = _lease(request, pk)
    services.lease_logs_watch(lease=lease)
    return render(request, "leases/_lease_logs.html", {"lease": lease, "log": selectors.lease_log(lease=lease)})


@login_required
@require_GET
def lease_logs_download(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The recent log the marketplace holds (the newest 64 KB the agent sent), as a text file."""
    lease = _lease(request, pk)
    log = selectors.lease_log(lease=lease)
    response = HttpResponse(log["text"], content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="lease-{lease.pk}.log"'
    return response


def _timeline(lease: Lease, *, ran: bool) -> list[dict]:
    """The steps the lease went through: done, current, or ahead. Running is marked passed only if
    the provider's agent ever reported the workload running; a lease that closed without it says
    "Never ran" there."""
    order = [status for status, _ in TIMELINE]
    # states off the main line sit where they branch from it
    current: str = {
        Lease.Status.INSUFFICIENT_FUNDS: Lease.Status.RUNNING,
        Lease.Status.CLOSING: Lease.Status.CLOSED,
        Lease.Status.FAILED: Lease.Status.DEPLOYING,
    }.get(Lease.Status(lease.status), lease.status)
    reached = order.index(Lease.Status(current))
    steps = []
    for i, (status, label) in enumerate(TIMELINE):
        state = "current" if i == reached else ("done" if i < reached else "")
        if status == Lease.Status.RUNNING and state == "done" and not ran:
            state, label = "skipped", "Never ran"
        if status == Lease.Status.CLOSED and lease.status == Lease.Status.CLOSING:
            label = "Closing"
        steps.append({"label": label, "state": state})
    return steps


def _context(request: HttpRequest, lease: Lease) -> dict:
    now = timezone.now()
    accrued = selectors.lease_accrued_now(lease)
    ceiling = selectors.lease_accrual_ceiling(lease)
    closed = lease.status == Lease.Status.CLOSED
    running = lease.status == Lease.Status.RUNNING
    is_client = lease.client_id == request.user.pk
    return {
        "lease": lease,
        "is_client": is_client,
        # its token is the client's: the provider's page has no link
        "jupyter_url": selectors.jupyter_url(lease) if is_client and running else "",
        "ssh_command": selectors.ssh_command(lease) if is_client and running else "",
        "accrued": accrued,
        "accrual_ceiling": ceiling,
        "remaining": selectors.lease_remaining_deposit(lease, accrued=accrued),
        "seconds_left": 0 if closed else max(0, int((lease.ends_at - now).total_seconds())),
        "now": now,
        # the meter ticks only as far as the server's accrual can go without a new usage report
        "ticking": running and ceiling > accrued,
        "timeline": _timeline(lease, ran=selectors.lease_ran(lease)),
        "unpublished_ports": [p["port"] for p in lease.order.ports or []] if running and not lease.endpoints else [],
        "top_up_form": TopUpForm(),
        "auto_top_up_form": AutoTopUpForm(
            initial={"limit": format_usd(lease.auto_top_up_limit)[1:] if lease.auto_top_up_limit else ""}
        ),
        "can_top_up": lease.status not in states.CLOSING_OR_CLOSED,
        "can_auto_top_up": lease.status in states.AUTO_TOP_UP,
        "spot_checks": selectors.spot_check_terms(),
        # the client's terminal into the workload: the page has it until the lease closes, and it
        # opens while the lease runs
        "can_shell": is_client and lease.status not in states.CLOSING_OR_CLOSED,
        "shell_sessions": selectors.lease_shell_sessions(lease)[:SHELL_SESSIONS_SHOWN],
    }


@login_required
@require_GET
def lease_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    lease = _lease(request, pk)
    services.lease_logs_watch(lease=lease)
    return render(request, "leases/lease.html", _page(request, lease))


def _page(request: AuthenticatedHttpRequest, lease: Lease, **posted: Any) -> dict:
    """The lease page's whole context, with any form as posted (kept as typed, with its errors)."""
    chart = usage_chart(selectors.lease_statement(lease=lease).periods)
    return {**_context(request, lease), "log": selectors.lease_log(lease=lease), "chart": chart, **posted}


def _refused(request: AuthenticatedHttpRequest, lease: Lease, exc: DomainError, **posted: forms.Form) -> HttpResponse:
    """The page again, with why the service refused the form: beside its field, or at the top of
    the page where the lease's state no longer shows the form (a lease closed meanwhile)."""
    lease.refresh_from_db()
    context = _page(request, lease, **posted)
    shown = {"top_up_form": context["can_top_up"], "auto_top_up_form": context["can_auto_top_up"]}
    for name, form in posted.items():
        if shown[name]:
            form.add_error(None if len(form.fields) != 1 else next(iter(form.fields)), exc.message)
        else:
            messages.error(request, exc.message)
    return render(request, "leases/lease.html", context, status=exc.status_code)


@login_required
@require_GET
def lease_panel(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    lease = _lease(request, pk)
    return render(request, "leases/_lease_live.html", _context(request, lease))


@login_required
@require_POST
def lease_close(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    lease = _lease(request, pk)
    perform(
        request,
        lambda: services.lease_close(user=request.user, lease_id=lease.pk, roles=set(request.user.roles)),
        success="Lease closed: what was not used goes back to your balance.",
    )
    return redirect("web:lease", pk=lease.pk)


@login_required
@require_POST
def lease_top_up(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    def top_up(lease: Lease, data: dict) -> str:
        services.lease_top_up(user=request.user, lease_id=lease.pk, amount=data["amount"])
        return "Topped up."

    return _lease_form(request, pk, TopUpForm, "top_up_form", top_up)


@login_required
@require_POST
def lease_auto_top_up(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    def auto_top_up(lease: Lease, data: dict) -> str:
        limit = data["limit"] or 0
        services.lease_auto_top_up_set(user=request.user, lease_id=lease.pk, limit=limit)
        return f"Automatic top-up on: up to {format_usd(limit)} in all." if limit else "Automatic top-up off."

    return _lease_form(request, pk, AutoTopUpForm, "auto_top_up_form", auto_top_up)


def _lease_form(
    request: AuthenticatedHttpRequest,
    pk: int,
    form_class: type[forms.Form],
    name: str,
    act: Callable[[Lease, dict], str],
) -> HttpResponse:
    """A form of the lease page posted: ``act`` on it (a service call, returning what to say), or
    the page again with the form as typed and why (its own errors, or the service's refusal)."""
    lease = _lease(request, pk)
    form = form_class(request.POST)
    if not form.is_valid():
        return render(request, "leases/lease.html", _page(request, lease, **{name: form}), status=400)
    try:
        said = act(lease, form.cleaned_data)
    except DomainError as exc:
        return _refused(request, lease, exc, **{name: form})
    messages.success(request, said)
    return redirect("web:lease", pk=lease.pk)
