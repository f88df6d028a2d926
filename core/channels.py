"""WebSocket authentication: ``Authorization: Bearer <token>`` (agents, integrators) or the
session cookie (the web UI)."""

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware

from core import services


@database_sync_to_async
def _token_for(secret: str) -> Any:
    return services.token_authenticate(secret=secret)


class _BearerMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            token = await _token_for(auth[7:].strip())
            if token is not None:
                scope = {**scope, "user": token.user, "token": token}
        return await super().__call__(scope, receive, send)


def TokenAuthMiddleware(inner: Any) -> Any:  # noqa: N802 - reads like the middleware class it builds
    """Session auth first, then a bearer token, if present, overrides the user."""
    return AuthMiddlewareStack(_BearerMiddleware(inner))
