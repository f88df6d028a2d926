"""A client is warned before a lease's deposit runs out: in the app, by email, and by webhook."""

from datetime import timedelta

import pytest
from django.core import mail

from core.models import User
from leases import services
from leases.models import Lease
from notifications.models import Notification
from tests import factories as f
from tests.leases.test_leases import awarded, started_ago
from tests.notifications.test_webhooks import Receiver, register

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_lease_about_to_run_out_warns_its_client_once() -> None:
    receiver = Receiver()
    try:
        client, _p, lease = awarded(hours=2)
        User.objects.filter(pk=client.pk).update(email="client@example.com")
        client.refresh_from_db()
        register(client, receiver.url, ["balance.low"])
        _c2, _p2, fresh = awarded(hours=2)
        started_ago(lease, 2 * 3600 - 30 * 60)  # half an hour left
        Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.RUNNING)

        assert services.leases_warn_low_funds() == 1
        assert services.leases_warn_low_funds() == 0  # once
        [message] = mail.outbox
        assert message.to == ["client@example.com"] and f"Lease {lease.pk} runs out of funds in" in message.subject
        [event] = receiver.events()
        assert event["type"] == "balance.low" and event["data"]["id"] == lease.pk
        assert 25 * 60 <= event["data"]["seconds_left"] <= 30 * 60

        api = f.api(client, f.CLIENT)
        [shown] = api.get("/api/v1/notifications/?unread=true").json()["results"]
        assert shown["kind"] == "balance.low" and shown["data"]["id"] == lease.pk
        assert api.post(f"/api/v1/notifications/{shown['id']}/read/").json()["read_at"] is not None
        assert api.get("/api/v1/notifications/?unread=true").json()["count"] == 0
        assert f.api(f.client_user(), f.CLIENT).post(f"/api/v1/notifications/{shown['id']}/read/").status_code == 404
        # the lease with hours left is not warned
        assert not Notification.objects.filter(data__id=fresh.pk).exists()
        fresh.refresh_from_db()
        assert fresh.low_funds_warned_at is None and fresh.ends_at - fresh.started_at == timedelta(hours=2)
    finally:
        receiver.server.shutdown()
