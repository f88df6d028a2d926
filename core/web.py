"""Small helpers shared by the web UI's views of every app: a form button's service call, the
client's address."""

from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from core.errors import DomainError
from core.models import User

T = TypeVar("T")


class HtmxHttpRequest(HttpRequest):
    """A page's request, as the type checker sees it: django-htmx adds what htmx sent."""

    htmx: HtmxDetails


class AuthenticatedHttpRequest(HtmxHttpRequest):
    """The request of a page behind ``login_required``: its user is one of ours."""

    user: User  # Django types it for anonymous visitors too; login_required sends them away


def perform(request: HttpRequest, action: Callable[[], T], *, success: str | Callable[[T], str]) -> T | None:
    """Run a service call for a form button: tell the user how it went (the domain error's own
    message when it is refused) and return its result, or None when refused."""
    try:
        result = action()
    except DomainError as exc:
        messages.error(request, exc.message)
        return None
    messages.success(request, success(result) if callable(success) else success)
    return result


def client_address(request: HttpRequest) -> str:
    """The client's address: the peer's, or behind ``NUM_PROXIES`` proxies the address the first
    of them saw (the last ones they appended to X-Forwarded-For; what the client sent is not trusted)."""
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    if settings.NUM_PROXIES and forwarded:
        return forwarded[-min(settings.NUM_PROXIES, len(forwarded))]
    return request.META.get("REMOTE_ADDR", "")


def login_address_bucket(request: HttpRequest) -> str:
    """Failed logins from the client's address, by password or by wallet."""
    return f"login:address:{client_address(request)}"
