"""Property test over generated lease timelines (ledger escrow): usage reports with downtime,
outages of the agent, settlement ticks at random moments, and a close. Whatever happens, money is
conserved, the provider is never paid for downtime or beyond its caps, and the client is never
charged beyond the deposit."""

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leases import services
from leases.models import Lease, LedgerAccount
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
)
def test_money_is_conserved_and_downtime_is_never_paid(price: int, hours: int, steps: list, close_after: int) -> None:
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
    lease = services._close(lease_id=lease.pk, closed_by=Lease.ClosedBy.CLIENT, reason="done", now=close_at)

    elapsed = min(offset + close_after, hours * 3600)
    time_cap = price * elapsed // 3600
    usage_cap = price * (ran + TAIL) // 3600
    assert lease.paid_to_provider + lease.refunded_to_client == lease.deposit
    assert 0 <= lease.paid_to_provider <= min(time_cap, usage_cap, lease.deposit)
    assert lease.paid_to_provider >= min(price * ran // 3600, time_cap)  # what it reported, within the cap, is paid
    earnings = LedgerAccount.objects.get(owner=provider.user, kind=LedgerAccount.Kind.PROVIDER_EARNINGS).balance
    assert earnings == lease.paid_to_provider
    assert LedgerAccount.objects.get(lease=lease).balance == 0
    balance = LedgerAccount.objects.get(owner=client, kind=LedgerAccount.Kind.CLIENT_BALANCE).balance
    assert balance == 100 * USD - lease.paid_to_provider  # charged what was paid, nothing more
    assert_books_balance()
