"""Property test over generated lease timelines (ledger escrow): usage reports with downtime,
outages of the agent, settlement ticks at random moments, and a close. Whatever happens, money is
conserved, the provider is never paid for downtime or beyond its caps, and the client is never
charged beyond the deposit."""

from datetime import timedelta

import pytest
from django.conf import settings as settings_
from django.db.models import Sum
from django.test import override_settings
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from leases import services
from leases.models import Lease
from ledger.models import LedgerAccount, LedgerEntry
from tests import factories as f
from tests.conftest import assert_books_balance
from tests.factories import USD
from tests.leases.test_leases import awarded

pytestmark = pytest.mark.django_db

TAIL = 120  # settings.USAGE_TAIL_SECONDS

step = st.one_of(
    # period length, and how much of it the workload ran (all of it and none of it are common)
    st.tuples(st.just("report"), st.integers(1, 900), st.one_of(st.just(100), st.just(0), st.integers(0, 100))),
    st.tuples(st.just("outage"), st.integers(1, 1800), st.just(0)),  # the agent sends nothing for a while
    st.tuples(st.just("tick"), st.just(0), st.just(0)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    price=st.integers(1, 5_000_000),  # up to the order's maximum
    hours=st.integers(1, 3),
    steps=st.lists(step, max_size=12),
    close_after=st.integers(0, 600),
    fee_bps=st.sampled_from([0, 1, 250, 2000]),
)
def test_money_is_conserved_and_downtime_is_never_paid(
    price: int, hours: int, steps: list, close_after: int, fee_bps: int
) -> None:
    with override_settings(PLATFORM_FEE_BPS=fee_bps):
        client, provider, lease = awarded(price=price, hours=hours)
    Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.RUNNING)
    lease.refresh_from_db()
    start = lease.started_at.replace(microsecond=0)
    offset, ran = 0, 0
    ticks: list[int] = []
    for kind, length, percent in steps:
        if kind == "report":
            run = length * percent // 100
            f.usage(lease, seconds=length, run_seconds=run, after=offset)
            offset, ran = offset + length, ran + run
        elif kind == "outage":
            offset += length
        else:
            ticks.append(offset)
            services.leases_settle(now=start + timedelta(seconds=offset, milliseconds=500))
    close_at = start + timedelta(seconds=offset + close_after, milliseconds=500)
    Lease.objects.filter(pk=lease.pk).update(started_at=start)
    lease = services.lease_close_by(lease_id=lease.pk, closed_by=Lease.ClosedBy.CLIENT, reason="done", now=close_at)

    elapsed = min(offset + close_after, hours * 3600)
    time_cap = price * elapsed // 3600
    usage_cap = price * (ran + TAIL) // 3600
    assert lease.paid_to_provider + lease.refunded_to_client == lease.deposit
    assert 0 <= lease.paid_to_provider <= min(time_cap, usage_cap, lease.deposit)
    assert lease.paid_to_provider >= min(price * ran // 3600, time_cap)  # what it reported, within the cap, is paid
    # the fee is cut from each payment, rounded down: never more than the rate of the whole
    most = lease.paid_to_provider * fee_bps // 10_000
    assert most - len(ticks) - 1 <= lease.platform_fee <= most
    assert_paid_and_charged_exactly(client, provider, lease)


running_out = st.one_of(
    step,
    st.tuples(st.just("outage"), st.integers(600, 4000), st.just(0)),  # long enough to run out of time
    st.tuples(st.just("top_up"), st.integers(1, 3_000_000), st.just(0)),  # micro-dollars from the balance
    st.tuples(st.just("sweep"), st.just(0), st.just(0)),  # suspends leases out of time, closes after the grace
    st.tuples(st.just("auto"), st.integers(0, 5_000_000), st.just(0)),  # the client sets an auto top-up limit
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    price=st.integers(3600, 5_000_000),
    steps=st.lists(running_out, max_size=20),
    close_after=st.integers(0, 600),
    ending=st.sampled_from(["close", "run_out", "run_out_then_top_up", "run_out_past_the_grace"]),
)
def test_money_is_conserved_through_top_ups_exhaustion_and_grace(
    price: int, steps: list, close_after: int, ending: str
) -> None:
    client, provider, lease = awarded(price=price, hours=1)
    Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.RUNNING)
    lease.refresh_from_db()
    start = lease.started_at.replace(microsecond=0)
    Lease.objects.filter(pk=lease.pk).update(started_at=start, ends_at=start + timedelta(hours=1))
    lease.refresh_from_db()
    offset, ran, topped_up = 0, 0, 0

    def at(seconds: int):  # type: ignore[no-untyped-def]
        return start + timedelta(seconds=seconds, milliseconds=500)

    for kind, amount, percent in steps:
        lease.refresh_from_db()
        if lease.status == Lease.Status.CLOSED:
            break
        suspended = lease.status == Lease.Status.INSUFFICIENT_FUNDS
        if kind == "report":
            # the agent stopped a suspended workload: its reports show it not running
            run = 0 if suspended else amount * percent // 100
            f.usage(lease, seconds=amount, run_seconds=run, after=offset)
            offset, ran = offset + amount, ran + run
        elif kind == "outage":
            offset += amount
        elif kind == "tick":
            services.leases_settle(now=at(offset))
        elif kind == "top_up":
            services.lease_top_up(user=client, lease_id=lease.pk, amount=amount, now=at(offset))
            topped_up += amount
        elif kind == "auto":
            services.lease_auto_top_up_set(user=client, lease_id=lease.pk, limit=amount)
        else:
            services.leases_close_finished(now=at(offset))
            services.leases_warn_low_funds(now=at(offset))
    lease.refresh_from_db()
    if ending != "close" and lease.status != Lease.Status.CLOSED:
        # the paid time runs out (an automatic top-up, if allowed, may extend it once more)
        offset = max(offset, int((lease.ends_at - start).total_seconds()) + 1)
        services.leases_close_finished(now=at(offset))
        lease.refresh_from_db()
        event(f"ran out: {lease.status}")
        if lease.status == Lease.Status.INSUFFICIENT_FUNDS and ending == "run_out_then_top_up":
            offset += close_after  # within the grace
            services.lease_top_up(user=client, lease_id=lease.pk, amount=price, now=at(offset))
            topped_up += price
            f.usage(lease, seconds=300, run_seconds=300, after=offset)
            offset, ran = offset + 300, ran + 300
        elif lease.status == Lease.Status.INSUFFICIENT_FUNDS and ending == "run_out_past_the_grace":
            f.usage(lease, seconds=600, run_seconds=0, after=offset)  # the stopped workload reports nothing run
            offset += settings_.LEASE_GRACE_SECONDS
            services.leases_close_finished(now=at(offset))
    lease.refresh_from_db()
    event(f"{ending}: {lease.status}")
    if lease.status != Lease.Status.CLOSED:
        lease = services.lease_close_by(
            lease_id=lease.pk, closed_by=Lease.ClosedBy.CLIENT, reason="done", now=at(offset + close_after)
        )

    auto = lease.auto_topped_up
    assert lease.deposit == price + topped_up + auto  # every top-up, and nothing else, is in the deposit
    assert lease.paid_to_provider + lease.refunded_to_client == lease.deposit
    assert 0 <= lease.paid_to_provider <= min(price * (ran + TAIL) // 3600, lease.deposit)
    assert_paid_and_charged_exactly(client, provider, lease)


def assert_paid_and_charged_exactly(client, provider, lease: Lease) -> None:  # type: ignore[no-untyped-def]
    """The provider earned what the lease paid less the platform's fee, the client was charged
    that and nothing more."""
    earnings = LedgerAccount.objects.get(owner=provider.user, kind=LedgerAccount.Kind.PROVIDER_EARNINGS).balance
    fees = LedgerEntry.objects.filter(
        account__kind=LedgerAccount.Kind.PLATFORM_FEES, transaction__lease=lease
    ).aggregate(total=Sum("amount"))["total"]
    assert earnings + (fees or 0) == lease.paid_to_provider
    assert (fees or 0) == lease.platform_fee
    assert LedgerAccount.objects.get(lease=lease).balance == 0
    balance = LedgerAccount.objects.get(owner=client, kind=LedgerAccount.Kind.CLIENT_BALANCE).balance
    assert balance == 100 * USD - lease.paid_to_provider
    assert_books_balance()
