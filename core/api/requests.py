"""The type of an API request past authentication, for the type checker: every API view but the
public ones (the catalog, offers, health) refuses anonymous callers before it runs, so its
``request.user`` is one of our users."""

from rest_framework.request import Request

from core.models import User


class AuthenticatedRequest(Request):
    user: User  # DRF types it for anonymous callers too; these views refuse them
