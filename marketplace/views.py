"""The marketplace's pages: the landing page, offers, the dashboard, orders and their live bids.
(Each app routes and renders its own pages: the account in ``core``, the provider console in
``providers``, leases in ``leases``, top-ups in ``payments``; ``config.urls`` puts them under one
namespace, ``web``.)

Views parse the request, call one service or selector, and render; rules live in services. Pages
work without JavaScript; htmx swaps fragments and a WebSocket tells a page when to refresh one.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import DomainError, NotFound
from core.validation import MAX_ID
from core.web import AuthenticatedHttpRequest, HtmxHttpRequest, perform
from leases import selectors as lease_selectors
from leases.selectors import spot_check_terms
from marketplace import selectors, services
from marketplace.forms import (
    RELIABILITY_CHOICES,
    TEMPLATES,
    OfferFilterForm,
    OrderForm,
    offer_order_initial,
    template_initial,
)
from marketplace.models import Order
from notifications import selectors as notification_selectors
from providers import selectors as provider_selectors
from providers.models import Provider


def _roles(request: HttpRequest) -> set[str]:
    return set(request.user.roles) if request.user.is_authenticated else set()


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    glance = provider_selectors.market_at_a_glance()
    online = sum(row.gpus_online for row in glance)
    verified = sum(row.gpus_verified for row in glance)
    return render(
        request,
        "marketplace/home.html",
        {"glance": glance, "gpus_online": online, "verified_share": verified / online if online else 0},
    )


@require_GET
def offers(request: HtmxHttpRequest) -> HttpResponse:
    form = OfferFilterForm(request.GET)
    form.is_valid()  # what is not valid filters nothing, and says why beside its field
    sort = form.sort_key()
    ordering = {
        "price": ["price_per_gpu_hour", "-provider__reputation"],
        "vram": ["-gpu_model__vram_gib", "price_per_gpu_hour"],
        "reliability": ["-provider__reputation", "price_per_gpu_hour"],
        "available": ["-available_count", "price_per_gpu_hour"],
    }[sort]
    rows = provider_selectors.offers_list(filters=form.filters()).order_by(*ordering)[:200]
    context = {
        "rows": rows,
        "form": form,
        "models": provider_selectors.gpu_models(),
        "query": request.GET,
        "sort": sort,
        "reliability_steps": [pct for pct, _ in RELIABILITY_CHOICES if pct],
    }
    template = "marketplace/_offers_table.html" if request.htmx else "marketplace/offers.html"
    return render(request, template, context)


@login_required
@require_GET
def dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    roles = _roles(request)
    context: dict = {
        "roles": roles,
        "notifications": notification_selectors.notifications_for(user=request.user, unread=True)[:10],
    }
    if "client" in roles:
        context["orders"] = selectors.orders_listed_for(user=request.user, roles={"client"})[:20]
        context["client_leases"] = lease_selectors.leases_visible_to(user=request.user, roles={"client"})[:20]
        context["summary"] = lease_selectors.account_summary(user=request.user)
    provider = Provider.objects.filter(user=request.user).first() if "provider" in roles else None
    if provider is not None:
        context["provider"] = provider
        context["bids"] = selectors.bids_of_provider(provider=provider, open_only=True)[:20]
        context["provider_leases"] = lease_selectors.leases_visible_to(user=request.user, roles={"provider"})[:20]
        context["earnings"] = lease_selectors.provider_earnings(user=request.user, limit=10)
    return render(request, "marketplace/dashboard.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def order_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    if "client" not in _roles(request):
        messages.error(request, "Renting GPUs needs a client account.")
        return redirect("web:dashboard")
    if request.method == "GET":
        chosen = request.GET.get("template", "")
        initial = template_initial(chosen if chosen in TEMPLATES else "pytorch-jupyter")
        offer_id = request.GET.get("offer", "")
        if offer_id:  # "Rent this" on an offers row
            valid = offer_id.isdigit() and int(offer_id) <= MAX_ID
            offer = provider_selectors.offer_get(offer_id=int(offer_id)) if valid else None
            if offer is None:
                messages.info(request, "That offer is no longer available: choose the GPU models below.")
            else:
                initial.update(offer_order_initial(offer))
        form = OrderForm(initial=initial)
        return render(
            request,
            "marketplace/order_new.html",
            {
                "form": form,
                "templates": TEMPLATES,
                "spot_checks": spot_check_terms(),
                "max_body_bytes": settings.MAX_REQUEST_BODY_BYTES,
            },
        )
    form = OrderForm(request.POST)
    if form.is_valid() and form.spec is not None:
        try:
            order = services.order_create(client=request.user, spec=form.spec)
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("web:order", pk=order.pk)
    context = {
        "form": form,
        "templates": TEMPLATES,
        "estimate": form.estimate() if not form.errors else None,
        "spot_checks": spot_check_terms(),
        "max_body_bytes": settings.MAX_REQUEST_BODY_BYTES,
    }
    return render(request, "marketplace/order_new.html", context, status=400)


@login_required
@require_POST
def order_check(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Live validation of the new-order form (htmx): the problems and the cost estimate."""
    form = OrderForm(request.POST)
    form.is_valid()
    return render(request, "marketplace/_order_check.html", {"form": form, "estimate": form.estimate()})


@login_required
@require_GET
def order_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    order = _get_or_404(request, pk)
    return render(request, "marketplace/order.html", {"order": order, **_bids_context(request, order)})


def _get_or_404(request: AuthenticatedHttpRequest, pk: int) -> Order:
    try:
        return selectors.order_get_visible(user=request.user, roles=_roles(request), order_id=pk)
    except NotFound as exc:
        raise Http404(exc.message) from exc


BIDS_SHOWN = 50  # the cheapest; a page with hundreds of rows helps nobody choose


def _bids_context(request: AuthenticatedHttpRequest, order: Order) -> dict:
    visible = selectors.bids_visible_to(user=request.user, roles=_roles(request), order=order).order_by(
        "price_per_hour", "created_at"
    )
    bids = list(visible[:BIDS_SHOWN])
    total = len(bids) if len(bids) < BIDS_SHOWN else visible.count()
    lease = getattr(order, "lease", None) if order.status == Order.Status.AWARDED else None
    is_owner = order.client_id == request.user.pk
    can_accept = order.status == Order.Status.OPEN and timezone.now() < order.deadline
    # who signs what the client accepts here: its wallet, or the marketplace (custody, the demo wallet)
    signer = services.order_terms_signer(client=request.user) if is_owner and can_accept else ""
    return {
        "bids": bids,
        "bids_total": total,
        "bids_limit": BIDS_SHOWN,
        "lease": lease,
        "is_owner": is_owner,
        "can_accept": can_accept,
        "wallet_signs": signer == "wallet",
        "terms_signer": signer,
        "authorized": bool(order.authorization),
    }


@login_required
@require_GET
def order_bids(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    order = _get_or_404(request, pk)
    return render(request, "marketplace/_order_live.html", {"order": order, **_bids_context(request, order)})


@login_required
@require_POST
def order_accept(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    order = _get_or_404(request, pk)
    bid_id, deadline = request.POST.get("bid", ""), request.POST.get("deadline", "")
    lease = perform(
        request,
        lambda: services.order_accept(
            client=request.user,
            order_id=order.pk,
            bid_id=int(bid_id) if bid_id.isdigit() else 0,
            signature=request.POST.get("signature", "")[:140],  # what the page's wallet signed, if it asks
            deadline=int(deadline) if deadline.isdigit() and len(deadline) < 12 else None,
        ),
        success="Bid accepted: your lease is starting.",
    )
    return redirect("web:lease", pk=lease.pk) if lease else redirect("web:order", pk=order.pk)


@login_required
@require_POST
def order_cancel(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    order = _get_or_404(request, pk)
    perform(request, lambda: services.order_cancel(client=request.user, order_id=order.pk), success="Order cancelled.")
    return redirect("web:order", pk=order.pk)
