"""The provider's console: register, install the agent, inventory, bids, leases, earnings, checks."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from core.errors import DomainError
from core.web import AuthenticatedHttpRequest
from leases import selectors as lease_selectors
from leases.selectors import spot_check_terms
from marketplace import selectors as market_selectors
from providers import selectors, services
from providers.forms import ProviderRegisterForm
from providers.models import Provider
from trust import selectors as trust_selectors


@login_required
@require_http_methods(["GET", "POST"])
def provider_console(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The provider's page: register, install the agent, inventory, bids, leases, earnings."""
    if not request.user.is_provider:
        messages.error(request, "Providing GPUs needs a provider account.")
        return redirect("web:dashboard")
    provider = Provider.objects.filter(user=request.user).first()
    if provider is None:
        form = ProviderRegisterForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.provider_register(user=request.user, **form.cleaned_data)
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Registered. Now install the agent next to your GPUs.")
                return redirect("web:provider")
        return render(request, "providers/register.html", {"form": form}, status=400 if form.errors else 200)
    if request.method == "POST":
        return redirect("web:provider")
    context = {
        "provider": provider,
        "online": selectors.provider_is_online(provider),
        "gpus": provider.gpus.select_related("gpu_model").order_by("-gpu_model__vram_gib"),
        "nodes": selectors.inventory_by_node(provider),
        "bids": market_selectors.bids_of_provider(provider=provider, open_only=True)[:50],
        "leases": lease_selectors.leases_visible_to(user=request.user, roles={"provider"}).select_related("gpu_model")[
            :50
        ],
        "earnings": lease_selectors.provider_earnings(user=request.user, limit=20),
        "has_token": request.user.api_tokens.filter(scope="provider", revoked_at__isnull=True).exists(),
        "checks": trust_selectors.checks_of(provider=provider)[:20],
        "suspended_until": trust_selectors.suspended_until(provider=provider),
        "record": trust_selectors.reputation_records(provider_ids=[provider.pk])[provider.pk],
        "spot_checks": spot_check_terms(),
        "attestations": trust_selectors.attestations_of(provider=provider)[:10],
    }
    return render(request, "providers/console.html", context)
