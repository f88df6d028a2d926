"""Web pages for accounts: sign up, and logging in with brute force held off (logging out and
password resets are Django's views)."""

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from core import services
from core.api import throttling
from core.errors import DomainError
from core.forms import SignupForm


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


def login_address_bucket(request: HttpRequest) -> str:
    """Failed logins from the client's address, by password or by wallet."""
    return f"login:address:{client_address(request)}"


def client_address(request: HttpRequest) -> str:
    """The client's address: the peer's, or behind ``NUM_PROXIES`` proxies the address the first
    of them saw (the last ones they appended to X-Forwarded-For; what the client sent is not trusted)."""
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    if settings.NUM_PROXIES and forwarded:
        return forwarded[-min(settings.NUM_PROXIES, len(forwarded))]
    return request.META.get("REMOTE_ADDR", "")
