"""WebSocket authentication: ``Authorization: Bearer <token>`` (agents, integrators) or the
session cookie (the web UI)."""

import logging
from contextlib import suppress
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.middleware import BaseMiddleware
from redis.exceptions import RedisError

from core import realtime, services

logger = logging.getLogger(__name__)


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


UNAUTHORIZED = 4401
FORBIDDEN = 4403
CONFLICT = 4409
SERVICE_RESTART = 1012  # the channel layer went away: reconnect in a moment


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """A socket that pushes events from the channel layer. When the layer (Redis) goes away, the
    socket closes with 1012 and the client reconnects: pages and agents poll meanwhile, and a
    reconnect after the layer is back joins its groups again."""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (RedisError, OSError) as exc:
            logger.warning("live updates: the channel layer does not answer (%s); closing the socket", exc)
            with suppress(Exception):  # the socket may be gone already
                await send({"type": "websocket.close", "code": SERVICE_RESTART})

    # messages whose handlers never touch the database (besides events): see ``dispatch``
    direct_types: frozenset[str] = frozenset()

    async def dispatch(self, message: dict) -> None:
        # An event only passes through to the socket: no database, so none of the hop to a
        # thread that Channels makes before each handler to close stale connections.
        if message["type"] == realtime.EVENT:
            await self.market_event(message)
        elif message["type"] in self.direct_types:
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)

    async def market_event(self, event: dict) -> None:
        """An event from the layer: its payload goes to the socket as it is."""
        await self.send_json(event["payload"])

    async def decode_json(self, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None  # garbage from a client is ignored (``receive_json`` gets None), never a crash


class WatchConsumer(LiveConsumer):
    """A page watching one object (an order, a lease): it joins the object's group if the user may
    see the object, and forwards each event, which tells the page to refresh. Subclasses say who
    may watch (``group_for``); the URL's ``pk`` names the object."""

    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not getattr(user, "is_authenticated", False):
            await self.close(code=UNAUTHORIZED)
            return
        try:
            object_id = int(self.scope["url_route"]["kwargs"]["pk"])
        except (KeyError, TypeError, ValueError):
            await self.close(code=FORBIDDEN)
            return
        group = await database_sync_to_async(self.group_for)(user, object_id)
        if group is None:
            await self.close(code=FORBIDDEN)
            return
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    def group_for(self, user: Any, object_id: int) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        return  # pages only listen

    def may_hear(self, payload: dict) -> bool:
        """Whether this page may hear the event; all events of the group by default."""
        return True

    async def market_event(self, event: dict) -> None:
        if self.may_hear(event["payload"]):
            await self.send_json(event["payload"])
