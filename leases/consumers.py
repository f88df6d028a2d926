"""``/ws/leases/<id>/``: the lease page hears when the lease changes (state, endpoints, top-ups)."""

from typing import Any

from core.channels import WatchConsumer
from core.realtime import lease_group
from leases import selectors


class LeaseConsumer(WatchConsumer):
    def group_for(self, user: Any, object_id: int) -> str | None:
        visible = selectors.leases_visible_to(user=user, roles=set(user.roles)).filter(pk=object_id).exists()
        return lease_group(object_id) if visible else None
