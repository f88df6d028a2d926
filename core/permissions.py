"""Role and scope checks for API views.

A view names the role it serves in ``required_role``: "client", "provider", None for either, or
a dict from HTTP method to one of those.
A token's scope narrows what the user's roles allow: a client token acts as a client, a provider
token as a provider, a read-only token may only read. Session logins (the web UI) act with every
role the user has.
"""

from typing import TYPE_CHECKING

from rest_framework import permissions
from rest_framework.request import Request

from core.models import ApiToken, TokenScope

if TYPE_CHECKING:
    from rest_framework.views import APIView


def _roles(request: Request, *, reading: bool) -> set[str]:
    user = request.user
    if not user or not user.is_authenticated:
        return set()
    roles = set(user.roles)
    token = request.auth
    if not isinstance(token, ApiToken) or (reading and token.scope == TokenScope.READ_ONLY):
        return roles
    return roles & {token.scope}


def acting_roles(request: Request) -> set[str]:
    """The roles this request may act with (write)."""
    return _roles(request, reading=False)


def reading_roles(request: Request) -> set[str]:
    """The roles whose data this request may read."""
    return _roles(request, reading=True)


class HasRole(permissions.BasePermission):
    message = "This token's scope does not allow this request."

    def has_permission(self, request: Request, view: "APIView") -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        required = getattr(view, "required_role", None)
        if isinstance(required, dict):
            required = required.get(request.method)
        roles = reading_roles(request) if request.method in permissions.SAFE_METHODS else acting_roles(request)
        if required is None:
            return bool(roles) or request.method in permissions.SAFE_METHODS
        return required in roles
