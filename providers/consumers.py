"""``/ws/provider/``: pushes to provider agents (new open orders, awarded and closed leases).

The agent authenticates with its provider token (``Authorization: Bearer``). Messages are hints
to act now; the REST API stays the source of truth, and an agent without the socket polls.
"""

from typing import Any

from channels.db import database_sync_to_async

from core.channels import FORBIDDEN, UNAUTHORIZED, LiveConsumer
from core.models import ApiToken, TokenScope
from core.realtime import PROVIDERS_GROUP, provider_group
from providers.models import Provider


@database_sync_to_async
def _provider_id(user: Any, token: Any) -> int | None:
    if not getattr(user, "is_authenticated", False):
        return None
    if isinstance(token, ApiToken) and token.scope not in (TokenScope.PROVIDER, TokenScope.READ_ONLY):
        return None
    return Provider.objects.filter(user=user).values_list("pk", flat=True).first()


class ProviderConsumer(LiveConsumer):
    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
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

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def decode_json(self, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None  # garbage from a client is ignored, never a crash
