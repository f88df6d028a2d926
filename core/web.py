"""Small helpers shared by the web UI's views."""

from collections.abc import Callable
from typing import TypeVar

from django.contrib import messages
from django.http import HttpRequest

from core.errors import DomainError

T = TypeVar("T")


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
