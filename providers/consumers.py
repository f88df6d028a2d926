"""``/ws/provider/``: pushes to provider agents (new open orders, awarded and closed leases).

The agent authenticates with its provider token (``Authorization: Bearer``). Messages are hints
to act now; the REST API stays the source of truth, and an agent without the socket polls.

The socket also relays the shells clients open into their leases (``protocol.shell``): the
client's side is ``leases.consumers.ShellConsumer``, which asks the provider's sockets to open a
session; from then on each side's messages for that session pass through here, and an agent can
only speak for the sessions it was asked to open. Only an agent's own token (provider scope)
carries shells: a read-only token or a browser session never sees a client's keystrokes.
"""

from contextlib import suppress
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull

from core.channels import FORBIDDEN, UNAUTHORIZED, LiveConsumer
from core.models import ApiToken, TokenScope
from core.realtime import PROVIDERS_GROUP, SHELL_RELAY, provider_group
from protocol import shell as wire
from providers.models import Provider

MAX_SHELLS = 64  # sessions one socket relays at once


def _carries_shells(token: Any) -> bool:
    return isinstance(token, ApiToken) and token.scope == TokenScope.PROVIDER


@database_sync_to_async
def _provider_id(user: Any, token: Any) -> int | None:
    if not getattr(user, "is_authenticated", False):
        return None
    if isinstance(token, ApiToken) and token.scope not in (TokenScope.PROVIDER, TokenScope.READ_ONLY):
        return None
    return Provider.objects.filter(user=user).values_list("pk", flat=True).first()


class ProviderConsumer(LiveConsumer):
    groups_joined: list[str]
    shells: dict[str, str]  # session -> the client's socket (its channel) it relays to
    direct_types = frozenset({SHELL_RELAY, "websocket.receive"})

    async def connect(self) -> None:
        self.groups_joined, self.shells = [], {}
        user = self.scope.get("user")
        if not getattr(user, "is_authenticated", False):
            await self.close(code=UNAUTHORIZED)
            return
        provider_id = await _provider_id(user, self.scope.get("token"))
        if provider_id is None:
            await self.close(code=FORBIDDEN)
            return
        self.groups_joined = [provider_group(provider_id), PROVIDERS_GROUP]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "provider": provider_id})

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        for session, client in list(self.shells.items()):
            reason = "the provider's agent disconnected"
            await self._to_client(client, {"type": wire.EXIT, "session": session, "code": None, "reason": reason})
        self.shells = {}

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind in wire.FROM_AGENT:
            await self._from_agent(content)

    # --- shells -------------------------------------------------------------------------------
    async def shell_relay(self, message: dict) -> None:
        """A client's shell message for this provider's agent."""
        payload = message.get("payload") or {}
        session = wire.session_id(payload.get("session"))
        if session is None:
            return
        if payload.get("type") == wire.OPEN:
            client = message.get("reply_to")
            if not _carries_shells(self.scope.get("token")) or not isinstance(client, str):
                return
            if len(self.shells) >= MAX_SHELLS:
                reason = "the provider's agent has too many shells open; try again in a while"
                await self._to_client(client, {"type": wire.EXIT, "session": session, "code": None, "reason": reason})
                return
            self.shells[session] = client
        elif session not in self.shells:
            return
        elif payload.get("type") == wire.CLOSE:
            del self.shells[session]
        await self.send_json(payload)

    async def _from_agent(self, content: dict) -> None:
        session = wire.session_id(content.get("session"))
        client = self.shells.get(session or "")
        if session is None or client is None:
            return  # not a session this agent was asked to open
        kind = content["type"]
        relayed: dict[str, Any] = {"type": kind, "session": session}
        if kind == wire.OUTPUT:
            if wire.decode(content.get("data")) is None:
                return
            relayed["data"] = content["data"]
        elif kind == wire.EXIT:
            del self.shells[session]
            code, reason = content.get("code"), content.get("reason")
            relayed["code"] = code if isinstance(code, int) and not isinstance(code, bool) else None
            relayed["reason"] = reason[: wire.MAX_REASON] if isinstance(reason, str) else ""
            relayed["not_here"] = content.get("not_here") is True
        await self._to_client(client, relayed)

    async def _to_client(self, client: str, payload: dict) -> None:
        # a browser far behind (output faster than it takes it) loses what does not fit, as with any
        # push, rather than the agent's socket failing for every lease
        with suppress(ChannelFull):
            await self.channel_layer.send(client, {"type": SHELL_RELAY, "payload": payload, "agent": self.channel_name})
