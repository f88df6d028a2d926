"""Web pages for accounts: sign up (logging in, out and password resets are Django's views)."""

from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from core import services
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
