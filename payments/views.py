"""Web pages for card top-ups: choose an amount, pay in Stripe's Payment Element, watch it land.

The card never touches our servers: the page mounts Stripe.js's Payment Element with the
PaymentIntent's client secret, and Stripe confirms it. The balance is credited by the signed
``payment_intent.succeeded`` webhook, or by the page we return to, which asks Stripe for the
intent's state (both credit exactly once).
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from chain.selectors import deposit_target, wallets_for
from core.errors import DomainError, NotFound
from core.money import format_usd
from core.web import AuthenticatedHttpRequest
from leases.selectors import account_summary
from payments import selectors, services
from payments.forms import CardTopUpForm, DemoCreditForm
from payments.models import CardTopUp
from payments.services import MICROS_PER_CENT


@login_required
@require_http_methods(["GET", "POST"])
def top_up_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Add funds: by card where Stripe is set up, else demo credit where the server offers it."""
    configured = bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_PUBLISHABLE_KEY)
    try:
        services.off_chain_funding_check(user=request.user)
    except DomainError as exc:
        context = {"refused": exc.message, "configured": configured}
        if exc.code == "wallet_funded":  # how to deposit from the wallet instead
            context |= {"wallets": wallets_for(user=request.user), "target": deposit_target()}
        return render(request, "payments/top_up.html", context)
    if not configured and settings.DEMO_CREDIT_CENTS:
        return _demo_credit(request)
    form = CardTopUpForm(request.POST or None)
    context = {"form": form, "configured": configured}
    if request.method == "POST" and form.is_valid():
        try:
            top_up, client_secret = services.top_up_create(user=request.user, amount_cents=form.cleaned_data["amount"])
        except DomainError as exc:
            form.add_error("amount", exc.message)
        else:
            pay = {
                "top_up": top_up,
                "stripe": {
                    "key": settings.STRIPE_PUBLISHABLE_KEY,
                    "client_secret": client_secret,
                    "return_path": reverse("web:top-up", args=[top_up.pk]),
                },
                "stripe_js": settings.STRIPE_JS_URL,
            }
            response = render(request, "payments/pay.html", pay)
            # Stripe's script, its API and its frames (3-D Secure), on this page only
            origins = stripe_origins()
            response._csp_update = {"script-src": origins, "connect-src": origins, "frame-src": origins}  # type: ignore[attr-defined]  # what django-csp reads
            return response
    status = 400 if form.errors else 200
    return render(request, "payments/top_up.html", context, status=status)


def _demo_credit(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = DemoCreditForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.demo_credit_add(user=request.user, amount_cents=form.cleaned_data["amount"])
        except DomainError as exc:
            form.add_error("amount", (exc.fields.get("amount_cents") or [exc.message])[0])
        else:
            messages.success(
                request, f"Added {format_usd(form.cleaned_data['amount'] * MICROS_PER_CENT)} of demo credit."
            )
            return redirect("web:account")
    context = {"form": form, "left": services.demo_credit_left(user=request.user)}
    return render(request, "payments/demo_credit.html", context, status=400 if form.errors else 200)


def _top_up(request: AuthenticatedHttpRequest, pk: int) -> CardTopUp:
    try:
        top_up = selectors.top_up_get(user=request.user, top_up_id=pk)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return services.top_up_refresh(top_up=top_up)


@login_required
@require_GET
def top_up_status(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    top_up = _top_up(request, pk)
    template = "payments/_top_up_status.html" if request.htmx else "payments/top_up_status.html"
    return render(request, template, {"top_up": top_up, "summary": account_summary(user=request.user)})


def stripe_origins() -> list[str]:
    """Where Stripe's Payment Element loads from and talks to (the test server's, in tests)."""
    found = {"https://js.stripe.com", "https://hooks.stripe.com", "https://api.stripe.com"}
    for url in (settings.STRIPE_JS_URL, settings.STRIPE_API_BASE):
        if url:
            parts = urlsplit(url)
            found.add(f"{parts.scheme}://{parts.netloc}")
    return sorted(found)
