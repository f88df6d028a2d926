"""``/ws/orders/<id>/``: the order page hears when bids arrive or change and when the order moves."""

from typing import Any

from core.channels import WatchConsumer
from core.errors import NotFound
from core.realtime import order_group
from marketplace import selectors


class OrderConsumer(WatchConsumer):
    def group_for(self, user: Any, object_id: int) -> str | None:
        try:
            selectors.order_get_visible(user=user, roles=set(user.roles), order_id=object_id)
        except NotFound:
            return None
        return order_group(object_id)
