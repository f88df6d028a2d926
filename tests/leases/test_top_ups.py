"""Funds running out (ledger escrow): topping a lease up, the insufficient-funds grace period, the
resume after a late top-up, automatic top-ups, and the refusals of bad top-ups."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from leases import selectors, services
from leases.models import Lease, LeaseTopUp
from ledger.models import LedgerAccount, LedgerTransaction
from notifications.models import Notification, WebhookDelivery
from tests import factories as f
from tests.conftest import assert_books_balance
from tests.factories import USD
from tests.leases.test_leases import account, awarded, started_ago
from tests.notifications.test_webhooks import register

pytestmark = pytest.mark.django_db


def running(price: int = 2 * USD, hours: int = 1, seconds_ago: int = 600):  # type: ignore[no-untyped-def]
    client, provider, lease = awarded(price=price, hours=hours)
    started_ago(lease, seconds_ago)
    Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.RUNNING)
    lease.refresh_from_db()
    return client, provider, lease


def test_a_top_up_extends_the_lease_by_what_it_buys() -> None:
    client, _p, lease = running(price=2 * USD, hours=1)
    ends_at = lease.ends_at
    response = f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/top-ups/", {"amount": USD}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["amount"], body["status"], body["source"]) == (USD, "confirmed", "client")
    lease.refresh_from_db()
    assert lease.deposit == 3 * USD
    assert lease.ends_at == ends_at + timedelta(minutes=30)  # $1 at $2 an hour
    assert account(client, LedgerAccount.Kind.CLIENT_BALANCE) == 100 * USD - 3 * USD
    assert LedgerAccount.objects.get(lease=lease).balance == 3 * USD
    assert LedgerTransaction.objects.filter(lease=lease, kind=LedgerTransaction.Kind.LEASE_TOP_UP).count() == 1
    listed = f.api(client, f.CLIENT).get(f"/api/v1/leases/{lease.pk}/top-ups/").json()
    assert [t["id"] for t in listed["results"]] == [body["id"]]
    assert_books_balance()


@pytest.mark.parametrize(
    ("amount", "status", "code"),
    [
        (0, 400, "invalid_amount"),
        (-5, 400, "invalid_amount"),
        (10**16, 400, "invalid_amount"),
        ("ten", 400, "validation_error"),
        (1.5, 400, "validation_error"),
        (101 * USD, 402, "insufficient_funds"),
    ],
)
def test_bad_top_ups_are_refused_and_nothing_is_written(amount: object, status: int, code: str) -> None:
    client, _p, lease = running()
    response = f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/top-ups/", {"amount": amount}, format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert not LeaseTopUp.objects.exists()
    lease.refresh_from_db()
    assert lease.deposit == 2 * USD
    assert account(client, LedgerAccount.Kind.CLIENT_BALANCE) == 98 * USD


def test_only_the_leases_client_tops_it_up_and_only_while_it_is_active() -> None:
    client, provider, lease = running()
    stranger = f.client_user(balance=100 * USD)
    path = f"/api/v1/leases/{lease.pk}/top-ups/"
    assert f.api(stranger, f.CLIENT).post(path, {"amount": USD}, format="json").status_code == 404
    assert f.api(provider.user, f.PROVIDER).post(path, {"amount": USD}, format="json").status_code == 403
    services.lease_close(user=client, lease_id=lease.pk, roles={"client"})
    closed = f.api(client, f.CLIENT).post(path, {"amount": USD}, format="json")
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "lease_not_active"
    assert not LeaseTopUp.objects.exists()


def test_a_retried_top_up_with_the_same_idempotency_key_tops_up_once() -> None:
    client, _p, lease = running()
    api = f.api(client, f.CLIENT)
    path = f"/api/v1/leases/{lease.pk}/top-ups/"
    first = api.post(path, {"amount": USD}, format="json", HTTP_IDEMPOTENCY_KEY="top-up-1")
    again = api.post(path, {"amount": USD}, format="json", HTTP_IDEMPOTENCY_KEY="top-up-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert LeaseTopUp.objects.count() == 1
    lease.refresh_from_db()
    assert lease.deposit == 3 * USD


def _suspend(lease: Lease, *, ran: int) -> Lease:
    """Let the lease's paid time run out after its agent reported ``ran`` seconds running."""
    started_ago(lease, lease.duration_hours * 3600 + 60)
    lease.refresh_from_db()
    f.usage(lease, seconds=lease.duration_hours * 3600, run_seconds=ran)
    services.leases_close_finished()
    lease.refresh_from_db()
    return lease


def test_running_out_stops_the_lease_tells_the_client_and_a_top_up_in_the_grace_resumes_it(
    django_capture_on_commit_callbacks,
) -> None:  # type: ignore[no-untyped-def]
    client, provider, lease = running(price=2 * USD, hours=1)
    client.email = "client@example.test"
    client.save(update_fields=["email"])
    assert register(client, "http://127.0.0.1:9/hooks", ["lease.*"]).status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        lease = _suspend(lease, ran=3000)  # ten minutes of downtime in the hour
    assert lease.status == Lease.Status.INSUFFICIENT_FUNDS
    assert lease.suspended_at == lease.ends_at and lease.grace_ends_at > timezone.now()
    assert "top up" in lease.status_reason
    note = Notification.objects.get(user=client, kind="lease.insufficient_funds")
    assert "stopped but kept" in note.body
    assert any("ran out of funds" in m.subject for m in mail.outbox)
    assert WebhookDelivery.objects.filter(endpoint__user=client, event_type="lease.insufficient_funds").count() == 1
    # the agent sees it among the leases to look after (so it stops, and keeps, the workload)
    listed = f.api(provider.user, f.PROVIDER).get("/api/v1/leases/?status=insufficient_funds").json()
    assert [row["id"] for row in listed["results"]] == [lease.pk]
    # nothing accrues while it waits: the owed amount is frozen at the moment it ran out
    frozen = selectors.lease_owed(lease=lease, until=timezone.now() + timedelta(minutes=20))
    assert frozen == 2 * USD * 3000 // 3600

    top_up = services.lease_top_up(user=client, lease_id=lease.pk, amount=2 * USD)
    lease.refresh_from_db()
    assert top_up.status == LeaseTopUp.Status.CONFIRMED
    assert (lease.status, lease.suspended_at, lease.grace_ends_at) == (Lease.Status.DEPLOYING, None, None)
    assert lease.resumed_at is not None and abs((lease.resumed_at - timezone.now()).total_seconds()) < 5
    assert abs((lease.ends_at - timezone.now()).total_seconds() - 3600) < 5  # an hour from the resume
    assert WebhookDelivery.objects.filter(endpoint__user=client, event_type="lease.resumed").count() == 1
    # the agent restarts it and reports it running again
    f.api(provider.user, f.PROVIDER).post(f"/api/v1/leases/{lease.pk}/status/", {"status": "running"}, format="json")
    lease.refresh_from_db()
    assert lease.status == Lease.Status.RUNNING


def test_a_lease_not_topped_up_in_its_grace_closes_paying_only_what_ran_before_it_stopped() -> None:
    client, provider, lease = running(price=3600 * 1000, hours=1)  # $0.001 a second
    lease = _suspend(lease, ran=3000)
    before_grace = lease.grace_ends_at - timedelta(seconds=1)
    assert services.leases_close_finished(now=before_grace) == 0
    assert services.leases_close_finished(now=lease.grace_ends_at) == 1
    lease.refresh_from_db()
    assert (lease.status, lease.closed_by) == (Lease.Status.CLOSED, Lease.ClosedBy.SYSTEM)
    assert "grace" in lease.close_reason
    assert lease.paid_to_provider == 3000 * 1000  # the 600 s of downtime are not paid
    assert lease.refunded_to_client == 600 * 1000
    assert account(provider.user, LedgerAccount.Kind.PROVIDER_EARNINGS) == lease.paid_to_provider
    assert account(client, LedgerAccount.Kind.CLIENT_BALANCE) == 100 * USD - lease.paid_to_provider
    assert_books_balance()


def test_auto_top_up_keeps_the_lease_running_within_the_clients_limit() -> None:
    client, _p, lease = running(price=2 * USD, hours=1, seconds_ago=3600 - 1200)  # 20 minutes left
    api = f.api(client, f.CLIENT)
    updated = api.patch(f"/api/v1/leases/{lease.pk}/", {"auto_top_up_limit": 3 * USD}, format="json")
    assert updated.status_code == 200 and updated.json()["auto_top_up_limit"] == 3 * USD
    ends_at = lease.ends_at
    assert services.leases_warn_low_funds() == 0  # topped up instead of warned
    lease.refresh_from_db()
    assert (lease.deposit, lease.auto_topped_up) == (4 * USD, 2 * USD)  # one ordered duration's deposit
    assert lease.ends_at == ends_at + timedelta(hours=1)
    assert LeaseTopUp.objects.get().source == LeaseTopUp.Source.AUTO
    assert not Notification.objects.filter(kind="balance.low").exists()
    # the next time it runs low, only what is left of the limit is added
    assert services.leases_warn_low_funds(now=lease.ends_at - timedelta(minutes=10)) == 0
    lease.refresh_from_db()
    assert (lease.deposit, lease.auto_topped_up) == (5 * USD, 3 * USD)
    # the limit is used up: the client is warned, and then it runs out as without it
    assert services.leases_warn_low_funds(now=lease.ends_at - timedelta(minutes=10)) == 1
    assert services.leases_suspend_exhausted(now=lease.ends_at) == 1
    lease.refresh_from_db()
    assert lease.status == Lease.Status.INSUFFICIENT_FUNDS
    assert account(client, LedgerAccount.Kind.CLIENT_BALANCE) == 95 * USD


def test_auto_top_up_never_takes_more_than_the_balance_and_refuses_bad_limits() -> None:
    client, _p, lease = running(price=2 * USD, hours=1, seconds_ago=3600 - 1200)
    api = f.api(client, f.CLIENT)
    for bad in (-1, "lots", 10**16):
        response = api.patch(f"/api/v1/leases/{lease.pk}/", {"auto_top_up_limit": bad}, format="json")
        assert response.status_code == 400, (bad, response.content)
    api.patch(f"/api/v1/leases/{lease.pk}/", {"auto_top_up_limit": 50 * USD}, format="json")
    spend = LedgerAccount.objects.get(owner=client, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    services.lease_top_up(user=client, lease_id=lease.pk, amount=spend.balance - USD // 2)  # leave 50 cents
    lease.refresh_from_db()
    services.leases_warn_low_funds(now=lease.ends_at - timedelta(minutes=10))
    lease.refresh_from_db()
    assert lease.auto_topped_up == USD // 2
    assert account(client, LedgerAccount.Kind.CLIENT_BALANCE) == 0
    assert_books_balance()


def test_grace_period_setting_is_what_the_client_gets(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LEASE_GRACE_SECONDS = 120
    _c, _p, lease = running()
    lease = _suspend(lease, ran=3000)
    assert 110 <= (lease.grace_ends_at - timezone.now()).total_seconds() <= 120
    assert settings.LEASE_GRACE_SECONDS == 120
