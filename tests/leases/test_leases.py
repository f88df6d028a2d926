"""Closing leases: the provider is paid for elapsed time, the client gets back the rest."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import Conflict
from leases import services, tasks
from leases.models import Lease
from ledger.models import LedgerAccount
from marketplace import services as market
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.django_db


def awarded(price: int = 3 * USD, hours: int = 2, gpus: int = 1):  # type: ignore[no-untyped-def]
    client = f.client_user(balance=100 * USD)
    p = f.provider()
    order = f.order(client, duration_hours=hours, resources={"gpu_count": gpus})
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(p, order, price).pk)
    return client, p, lease


def account(user, kind: str) -> int:  # type: ignore[no-untyped-def]
    row = LedgerAccount.objects.filter(owner=user, kind=kind).first()
    return row.balance if row else 0


def started_ago(lease: Lease, seconds: int) -> None:
    start = timezone.now() - timedelta(seconds=seconds)
    Lease.objects.filter(pk=lease.pk).update(started_at=start, ends_at=start + timedelta(hours=lease.duration_hours))


def test_client_close_pays_elapsed_time_and_refunds_the_rest() -> None:
    client, p, lease = awarded(price=3_600_001, hours=2)  # an awkward price: no rounded per-second rate
    started_ago(lease, 1800)  # half an hour, give or take the test's own runtime
    lease.refresh_from_db()
    f.usage(lease, seconds=1740)  # the agent reported it running; the last minute is the tail
    response = f.api(client, f.CLIENT).post(
        f"/api/v1/leases/{lease.pk}/close/", {"reason": "done early"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    lease.refresh_from_db()
    elapsed = int((lease.closed_at - lease.started_at).total_seconds())
    assert 1800 <= elapsed <= 1810
    assert body["paid_to_provider"] == 3_600_001 * elapsed // 3600
    assert body["paid_to_provider"] + body["refunded_to_client"] == lease.deposit == 7_200_002
    assert (body["status"], body["closed_by"], body["close_reason"]) == ("closed", "client", "done early")
    assert account(client, LedgerAccount.Kind.CLIENT_BALANCE) == 100 * USD - body["paid_to_provider"]
    assert account(p.user, LedgerAccount.Kind.PROVIDER_EARNINGS) == body["paid_to_provider"]
    assert LedgerAccount.objects.get(lease=lease).balance == 0


def test_downtime_is_not_paid_and_the_refund_grows_by_it() -> None:
    client, p, lease = awarded(price=3600 * 1000, hours=2)  # $0.001 a second
    started_ago(lease, 1200)
    lease.refresh_from_db()
    f.usage(lease, seconds=600, run_seconds=600)
    f.usage(lease, seconds=540, run_seconds=240, after=600)  # down 5 of those 9 minutes, and still down
    body = f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/").json()
    assert body["paid_to_provider"] == 840 * 1000  # 600 + 240 s ran; no tail after a period that ended down
    assert body["refunded_to_client"] == body["deposit"] - 840 * 1000
    assert account(p.user, LedgerAccount.Kind.PROVIDER_EARNINGS) == 840 * 1000


def test_without_usage_reports_nothing_is_earned() -> None:
    client, _p, lease = awarded()
    started_ago(lease, 900)
    body = f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/").json()
    assert (body["paid_to_provider"], body["refunded_to_client"]) == (0, body["deposit"])


def test_provider_can_close_too_and_capacity_is_released() -> None:
    _client, p, lease = awarded(gpus=4)
    response = f.api(p.user, f.PROVIDER).post(f"/api/v1/leases/{lease.pk}/close/")
    assert response.status_code == 200 and response.json()["closed_by"] == "provider"
    assert p.gpus.get().reserved == 0


def test_closing_twice_is_409_and_pays_once() -> None:
    client, p, lease = awarded()
    api = f.api(client, f.CLIENT)
    assert api.post(f"/api/v1/leases/{lease.pk}/close/").status_code == 200
    again = api.post(f"/api/v1/leases/{lease.pk}/close/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "lease_closed"
    assert (
        account(client, LedgerAccount.Kind.CLIENT_BALANCE) + account(p.user, LedgerAccount.Kind.PROVIDER_EARNINGS)
        == 100 * USD
    )


def test_other_tenants_cannot_see_or_close_a_lease() -> None:
    client, p, lease = awarded()
    for stranger in (f.api(f.client_user(), f.CLIENT), f.api(f.provider().user, f.PROVIDER)):
        assert stranger.get(f"/api/v1/leases/{lease.pk}/").status_code == 404
        assert stranger.post(f"/api/v1/leases/{lease.pk}/close/").status_code == 404
        assert stranger.get("/api/v1/leases/").json()["count"] == 0
    assert f.api(client, f.CLIENT).get("/api/v1/leases/").json()["count"] == 1
    assert f.api(p.user, f.PROVIDER).get(f"/api/v1/leases/{lease.pk}/").status_code == 200


def test_a_lease_whose_time_ran_out_waits_out_its_grace_then_closes_with_the_whole_deposit_paid() -> None:
    client, _p, lease = awarded(price=2 * USD, hours=1)
    started_ago(lease, 3700)
    lease.refresh_from_db()
    f.usage(lease, seconds=3600)
    assert tasks.close_finished_leases() == 0  # not closed yet: stopped, and kept for a top-up
    lease.refresh_from_db()
    assert lease.status == Lease.Status.INSUFFICIENT_FUNDS
    assert lease.suspended_at == lease.ends_at
    assert lease.grace_ends_at is not None
    assert 1790 <= (lease.grace_ends_at - timezone.now()).total_seconds() <= 1800
    assert services.leases_close_finished(now=lease.grace_ends_at - timedelta(seconds=1)) == 0
    assert services.leases_close_finished(now=lease.grace_ends_at) == 1
    lease.refresh_from_db()
    assert (lease.status, lease.closed_by) == (Lease.Status.CLOSED, Lease.ClosedBy.SYSTEM)
    assert (lease.paid_to_provider, lease.refunded_to_client) == (2 * USD, 0)
    assert tasks.close_finished_leases() == 0
    with pytest.raises(Conflict):
        services.lease_close(user=client, lease_id=lease.pk, roles={"client"})


def test_lease_shows_accrual_while_running() -> None:
    client, _p, lease = awarded(price=3600 * 1000, hours=2)
    started_ago(lease, 600)
    lease.refresh_from_db()
    f.usage(lease, seconds=540)  # reported running up to a minute ago: the last minute is the tail
    body = f.api(client, f.CLIENT).get(f"/api/v1/leases/{lease.pk}/").json()
    assert 600 * 1000 <= body["accrued"] <= 605 * 1000
    assert body["remaining_deposit"] == body["deposit"] - body["accrued"]
    assert body["price_per_gpu_hour"] == 3600 * 1000


def test_account_and_ledger_endpoints() -> None:
    client, p, lease = awarded(price=3 * USD, hours=2)
    api = f.api(client, f.CLIENT)
    summary = api.get("/api/v1/account/").json()
    assert summary == {
        "username": client.username,
        "roles": ["client"],
        "currency": "USD",
        "unit": "micro_usd",
        "balance": 94 * USD,
        "in_escrow": 6 * USD,
        "earnings": 0,
    }
    entries = api.get("/api/v1/account/ledger/").json()["results"]
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in entries] == [
        ("lease_fund", -6 * USD, 94 * USD),
        ("deposit", 100 * USD, 100 * USD),
    ]
    assert api.get("/api/v1/account/ledger/?kind=deposit").json()["count"] == 1
    for query in ("kind=", "account=", "kind=junk"):  # given, it must be one of the values
        refused = api.get(f"/api/v1/account/ledger/?{query}")
        assert refused.status_code == 400 and query.split("=")[0] in refused.json()["error"]["fields"], query
    assert api.get(f"/api/v1/account/ledger/?lease={lease.pk}").json()["count"] == 1
    # a lease id is a whole number the ids can hold: past SQLite's integer range this was a 500
    for query in ("lease=99999999999999999999999", "lease=-99999999999999999999999", "lease=1.5", "lease=0"):
        refused = api.get(f"/api/v1/account/ledger/?{query}")
        assert refused.status_code == 400 and "lease" in refused.json()["error"]["fields"], query
    assert f.api(p.user, f.PROVIDER).get("/api/v1/account/ledger/").json()["count"] == 0
