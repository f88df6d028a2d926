"""Web pages for accounts: sign up, logging in with brute force held off (logging out and password
resets are Django's views), and the account page: balance and movements, API tokens, wallets,
webhook endpoints (whose forms ``notifications.views`` handles)."""

import hashlib
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chain.selectors import wallets_for
from core import selectors, services
from core.api import throttling
from core.errors import DomainError
from core.forms import SignupForm, SshKeyForm, TokenForm
from core.web import AuthenticatedHttpRequest, login_address_bucket, perform
from leases import selectors as lease_selectors
from ledger import selectors as ledger_selectors
from notifications import selectors as notification_selectors
from notifications.forms import WebhookEndpointForm


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, which browsers and tools ask for without reading the pages' icon link."""
    return redirect(static("img/favicon.svg"), permanent=True)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("web:dashboard")
    role = request.GET.get("role") if request.GET.get("role") in ("client", "provider") else "client"
    form = SignupForm(request.POST or None, initial={"role": role})
    if request.method == "POST" and form.is_valid():
        role = form.cleaned_data["role"]
        try:
            user = services.user_create(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                is_client=role in ("client", "both"),
                is_provider=role in ("provider", "both"),
            )
        except DomainError as exc:
            form.add_error("username", exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("web:dashboard")
    return render(request, "core/signup.html", {"form": form}, status=400 if form.errors else 200)


class LoginView(auth_views.LoginView):
    """Django's login, with brute force held off: after ``LOGIN_FAILURES_PER_ACCOUNT`` failed
    attempts on one account, or ``LOGIN_FAILURES_PER_ADDRESS`` from one address, within
    ``LOGIN_LOCKOUT_SECONDS``, attempts are refused (429) without the password being checked, so
    the lockout tells nothing about it. A successful login clears the account's count."""

    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        buckets = _login_buckets(request)
        limits = (settings.LOGIN_FAILURES_PER_ACCOUNT, settings.LOGIN_FAILURES_PER_ADDRESS)
        if any(throttling.count_of(bucket) >= limit for bucket, limit in zip(buckets, limits, strict=True)):
            minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, f"Too many failed attempts. Try again in {minutes} minutes, or reset your password.")
            response = self.render_to_response(self.get_context_data(form=form), status=429)
            response["Retry-After"] = str(settings.LOGIN_LOCKOUT_SECONDS)
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: Any) -> HttpResponse:
        throttling.forget(_login_buckets(self.request)[0])
        return super().form_valid(form)

    def form_invalid(self, form: Any) -> HttpResponse:
        for bucket in _login_buckets(self.request):
            throttling.hit(bucket, settings.LOGIN_LOCKOUT_SECONDS)
        return super().form_invalid(form)


def _login_buckets(request: HttpRequest) -> tuple[str, str]:
    """Failed-login counters: the account (by its lowercased name) and the client's address."""
    username = str(request.POST.get("username", ""))[:150].strip().lower()
    digest = hashlib.sha256(username.encode()).hexdigest()[:32]  # no user input in cache keys
    return f"login:account:{digest}", login_address_bucket(request)


@login_required
@require_GET
def account(request: AuthenticatedHttpRequest) -> HttpResponse:
    return account_page(request, TokenForm())


def account_page(
    request: AuthenticatedHttpRequest,
    token_form: TokenForm,
    *,
    new_secret: str = "",
    webhook_form: WebhookEndpointForm | None = None,
    ssh_key_form: SshKeyForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """The account page, with the token form and the webhook form as given (kept as typed when
    they were refused)."""
    ledger = Paginator(ledger_selectors.ledger_for_user(user=request.user), 25).get_page(request.GET.get("page"))
    endpoints = list(notification_selectors.endpoints_for(user=request.user))
    for endpoint in endpoints:
        endpoint.recent = list(  # type: ignore[attr-defined]  # the page shows each endpoint with its last deliveries
            notification_selectors.deliveries_for(user=request.user, endpoint_id=endpoint.pk).order_by("-id")[:5]
        )
    wallets = list(wallets_for(user=request.user))
    context = {
        "summary": lease_selectors.account_summary(user=request.user),
        "ledger": ledger,
        "tokens": selectors.tokens_for_user(user=request.user).order_by("-created_at"),
        "token_form": token_form,
        "new_secret": new_secret,
        "wallets": wallets,
        # a client without a wallet: the marketplace holds its money (in custody, with the escrow on chain)
        "held_for_you": request.user.is_client and not wallets,
        "escrow_on_chain": settings.ESCROW_BACKEND == "chain",
        "endpoints": endpoints,
        "webhook_form": webhook_form or WebhookEndpointForm(),
        "ssh_keys": selectors.ssh_keys_for(user=request.user),
        "ssh_key_form": ssh_key_form or SshKeyForm(),
    }
    return render(request, "core/account.html", context, status=status)


@login_required
@require_POST
def token_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = TokenForm(request.POST)
    if not form.is_valid():
        return account_page(request, form, status=400)
    try:
        issued = services.token_issue(
            user=request.user, name=form.cleaned_data["name"], scope=form.cleaned_data["scope"]
        )
    except DomainError as exc:
        form.add_error(None, exc.message)
        return account_page(request, form, status=exc.status_code)
    return account_page(request, TokenForm(), new_secret=issued.secret)


@login_required
@require_POST
def ssh_key_add(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = SshKeyForm(request.POST)
    if not form.is_valid():
        return account_page(request, TokenForm(), ssh_key_form=form, status=400)
    try:
        key = services.ssh_key_add(
            user=request.user, name=form.cleaned_data["name"], public_key=form.cleaned_data["public_key"]
        )
    except DomainError as exc:
        field = "public_key" if "public_key" in exc.fields else None
        form.add_error(field, exc.fields["public_key"][0] if field else exc.message)
        return account_page(request, TokenForm(), ssh_key_form=form, status=exc.status_code)
    messages.success(request, f"SSH key “{key.name}” added ({key.fingerprint}).")
    return redirect(f"{reverse('web:account')}#ssh-keys")


@login_required
@require_POST
def ssh_key_remove(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    perform(request, lambda: services.ssh_key_remove(user=request.user, key_id=pk), success="SSH key removed.")
    return redirect(f"{reverse('web:account')}#ssh-keys")


@login_required
@require_POST
def token_revoke(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    perform(
        request,
        lambda: services.token_revoke(user=request.user, token_id=pk),
        success=lambda token: f"Token “{token.name}” revoked.",
    )
    return redirect("web:account")
