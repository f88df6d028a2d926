"""``/ws/orders/<id>/``: the order page hears when bids arrive or change and when the order moves."""

from typing import Any

from core.channels import WatchConsumer
from core.errors import NotFound
from core.realtime import order_group
from marketplace import selectors


class OrderConsumer(WatchConsumer):
    """Bids are sealed: the order's client hears every bid, a provider only its own."""

    sees_every_bid = False
    provider_id: int | None = None

    def group_for(self, user: Any, object_id: int) -> str | None:
        roles = set(user.roles)
        try:
            order = selectors.order_get_visible(user=user, roles=roles, order_id=object_id)
        except NotFound:
            return None
        self.sees_every_bid = "client" in roles and order.client_id == user.pk
        provider = selectors.provider_of(user) if "provider" in roles else None
        self.provider_id = provider.pk if provider is not None else None
        return order_group(object_id)

    def may_hear(self, payload: dict) -> bool:
        bid = payload.get("bid")
        return bid is None or self.sees_every_bid or bid.get("provider_id") == self.provider_id
