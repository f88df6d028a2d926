"""Web pages' actions on notifications: webhook endpoints (added, removed, their secret rolled,
pinged) from the account page, and notifications marked read from the dashboard."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from core.errors import DomainError, NotFound
from core.forms import TokenForm
from core.views import account_page
from core.web import AuthenticatedHttpRequest, perform
from notifications import services
from notifications.forms import WebhookEndpointForm


@login_required
@require_POST
def webhook_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = WebhookEndpointForm(request.POST)
    if form.is_valid():
        try:
            services.webhook_endpoint_create(user=request.user, **form.cleaned_data)
        except DomainError as exc:
            for name, problems in exc.fields.items():
                for problem in problems if isinstance(problems, list) else [problems]:
                    form.add_error(name if name in form.fields else None, str(problem))
            if not exc.fields:
                form.add_error(None, exc.message)
        else:
            messages.success(request, "Endpoint added: it receives the events you chose, signed with its secret.")
            return redirect(reverse("web:account") + "#webhooks")
    return account_page(request, TokenForm(), webhook_form=form, status=400)


@login_required
@require_POST
def webhook_action(request: AuthenticatedHttpRequest, pk: int, action: str) -> HttpResponse:
    actions = {
        "delete": (services.webhook_endpoint_delete, "Endpoint removed."),
        "roll": (services.webhook_secret_roll, "New secret: update your receiver."),
        "ping": (services.webhook_ping, "Ping sent: see the deliveries below."),
    }
    if action not in actions:
        raise Http404("No such action.")
    call, success = actions[action]
    perform(request, lambda: call(user=request.user, endpoint_id=pk), success=success)
    return redirect(reverse("web:account") + "#webhooks")


@login_required
@require_POST
def notification_read(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    try:
        services.notification_read(user=request.user, notification_id=pk)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return redirect("web:dashboard")
