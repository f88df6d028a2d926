"""The settlement tick with the ledger as escrow: providers are paid for reported usage while leases
run, and closing pays the rest; the books stay exact (every test ends with them balanced)."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from core.errors import Conflict
from core.money import usd_decimal
from leases import services, tasks
from leases.models import Lease
from ledger.models import LedgerAccount
from tests import factories as f
from tests.leases.test_leases import account, awarded, started_ago
from tests.marketplace.test_races import race

pytestmark = pytest.mark.django_db
RATE = 3600 * 1000  # $0.001 a second


def running(seconds_ago: int) -> Lease:
    _client, _p, lease = awarded(price=RATE, hours=2)
    started_ago(lease, seconds_ago)
    Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.RUNNING)
    lease.refresh_from_db()
    return lease


def test_the_tick_pays_reported_usage_once_and_close_pays_the_rest() -> None:
    lease = running(1200)
    f.usage(lease, seconds=600)
    assert tasks.settle_leases() == 1
    lease.refresh_from_db()
    assert lease.settled_amount == 600 * 1000
    assert account(lease.provider.user, LedgerAccount.Kind.PROVIDER_EARNINGS) == 600 * 1000
    assert LedgerAccount.objects.get(lease=lease).balance == lease.deposit - 600 * 1000
    assert services.leases_settle() == 0  # nothing new was reported: nothing paid twice

    f.usage(lease, seconds=300, run_seconds=100, after=600)  # mostly down, and it ended down
    assert services.leases_settle() == 1
    lease.refresh_from_db()
    assert lease.settled_amount == 700 * 1000

    closed = services.lease_close(user=lease.client, lease_id=lease.pk, roles={"client"})
    assert closed.paid_to_provider == 700 * 1000  # no tail: the last report ended with the workload down
    assert closed.refunded_to_client == closed.deposit - 700 * 1000
    assert LedgerAccount.objects.get(lease=lease).balance == 0


def test_the_tick_never_pays_the_tail_that_a_later_report_could_take_back() -> None:
    lease = running(700)
    f.usage(lease, seconds=600)  # ran to the end of its period, 100 s ago
    services.leases_settle()
    lease.refresh_from_db()
    assert lease.settled_amount == 600 * 1000  # the last 100 s wait for their report
    closed = services.lease_close(user=lease.client, lease_id=lease.pk, roles={"client"})
    assert 700 * 1000 <= closed.paid_to_provider <= 705 * 1000  # closing pays them as the tail


def test_no_usage_no_settlement_and_closed_leases_are_left_alone() -> None:
    idle = running(900)
    done = running(900)
    f.usage(done, seconds=300)
    services.lease_close(user=done.client, lease_id=done.pk, roles={"client"})
    assert services.leases_settle() == 0
    idle.refresh_from_db()
    assert idle.settled_amount == 0


def test_a_lease_settled_to_its_deposit_closes_with_nothing_left() -> None:
    lease = running(3 * 3600)  # past its two hours
    f.usage(lease, seconds=2 * 3600)
    services.leases_settle(now=timezone.now() - timedelta(seconds=1))
    lease.refresh_from_db()
    assert lease.settled_amount == lease.deposit
    assert tasks.close_finished_leases() == 0  # out of funds: its grace period starts
    grace_over = timezone.now() + timedelta(seconds=settings.LEASE_GRACE_SECONDS + 1)
    assert services.leases_close_finished(now=grace_over) == 1
    lease.refresh_from_db()
    assert (lease.paid_to_provider, lease.refunded_to_client) == (lease.deposit, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(4))
def test_a_close_racing_the_tick_pays_exactly_once(round_: int) -> None:
    lease = running(1200)
    f.usage(lease, seconds=900)
    results = race(
        lambda: services.leases_settle(),
        lambda: services.lease_close(user=lease.client, lease_id=lease.pk, roles={"client"}),
    )
    assert not any(isinstance(r, Exception) and not isinstance(r, Conflict) for r in results), results
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED
    earned = account(lease.provider.user, LedgerAccount.Kind.PROVIDER_EARNINGS)
    assert earned == lease.paid_to_provider and 900 * 1000 <= earned <= 1020 * 1000  # reported, plus the tail
    assert lease.paid_to_provider + lease.refunded_to_client == lease.deposit
    assert LedgerAccount.objects.get(lease=lease).balance == 0


def test_a_lease_that_fails_after_settlements_keeps_them_and_refunds_the_rest() -> None:
    lease = running(1200)
    f.usage(lease, seconds=600)
    services.leases_settle()
    failed = services.lease_report_status(
        user=lease.provider.user, lease_id=lease.pk, status="failed", reason="the GPU fell off the bus"
    )
    assert failed.status == Lease.Status.CLOSED
    assert (failed.paid_to_provider, failed.refunded_to_client) == (600 * 1000, failed.deposit - 600 * 1000)


def test_the_provider_sees_accrued_earned_and_claimable() -> None:
    lease = running(1200)
    f.usage(lease, seconds=600)
    services.leases_settle()
    f.usage(lease, seconds=300, after=600)  # reported since the tick: accrued, not settled yet
    api = f.api(lease.provider.user, f.PROVIDER)
    body = api.get("/api/v1/provider/earnings/").json()
    assert (body["earned"], body["accrued"], body["claimed"], body["claimable"]) == (600_000, 300_000, 0, 600_000)
    [row] = body["leases"]
    assert (row["lease"], row["settled"], row["status"]) == (lease.pk, 600_000, "running")
    assert 900_000 <= row["owed"] <= 1_020_000  # with the tail since the last report
    assert f.api(lease.client, f.CLIENT).get("/api/v1/provider/earnings/").status_code == 403


def test_a_platform_fee_is_fixed_when_the_lease_opens_and_split_off_every_payment(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PLATFORM_FEE_BPS = 250  # 2.5 %
    lease = running(1001)
    settings.PLATFORM_FEE_BPS = 2000  # a later change does not reach a running lease
    assert lease.platform_fee_bps == 250
    f.usage(lease, seconds=601)  # worth 601_000
    services.leases_settle()
    lease.refresh_from_db()
    fee = 601_000 * 250 // 10_000  # 15_025, rounded down in the provider's favour
    assert (lease.settled_amount, lease.platform_fee) == (601_000, fee)
    assert account(lease.provider.user, LedgerAccount.Kind.PROVIDER_EARNINGS) == 601_000 - fee
    assert LedgerAccount.objects.get(kind=LedgerAccount.Kind.PLATFORM_FEES).balance == fee

    f.usage(lease, seconds=400, after=601)
    closed = services.lease_close(user=lease.client, lease_id=lease.pk, roles={"client"})
    assert 1_001_000 <= closed.paid_to_provider <= 1_005_000  # with the tail since the last report
    assert closed.platform_fee == fee + (closed.paid_to_provider - 601_000) * 250 // 10_000
    earnings = f.api(lease.provider.user, f.PROVIDER).get("/api/v1/provider/earnings/").json()
    assert earnings["earned"] == closed.paid_to_provider - closed.platform_fee
    assert earnings["platform_fees"] == closed.platform_fee
    [row] = earnings["leases"]
    assert (row["owed"], row["platform_fee_bps"], row["platform_fee"]) == (
        closed.paid_to_provider,
        250,
        closed.platform_fee,
    )
    # the client pays the same either way: the fee comes out of the provider's side
    assert closed.paid_to_provider + closed.refunded_to_client == closed.deposit
    statement = f.api(lease.client, f.CLIENT).get(f"/api/v1/leases/{lease.pk}/statement/").json()
    assert (statement["platform_fee_bps"], statement["platform_fee"]) == (250, closed.platform_fee)
    csv = f.api(lease.client, f.CLIENT).get(f"/api/v1/leases/{lease.pk}/statement/?format=csv").content.decode()
    assert f"of_which_platform_fee_250_bps,,,,,{usd_decimal(closed.platform_fee)},,{closed.platform_fee}" in csv
