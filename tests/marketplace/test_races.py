"""Races with real threads against PostgreSQL: exactly one lease per order, money exact."""

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from core.errors import DomainError
from leases.models import Lease
from ledger import services as ledger
from ledger.models import LedgerTransaction
from marketplace import services
from marketplace.models import Bid, Order
from tests import factories as f
from tests.conftest import assert_books_balance
from tests.factories import USD

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at the same instant in threads; return each result or raised error."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except BaseException as exc:
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def assert_only_domain_errors(results: list[Any]) -> None:
    for r in results:
        assert not isinstance(r, BaseException) or isinstance(r, DomainError), repr(r)


@pytest.mark.parametrize("round_", range(8))
def test_accept_racing_the_deadline_makes_exactly_one_lease(round_: int) -> None:
    client = f.client_user()
    # the deadline ten seconds from now: the races below name their own times, but the award task the
    # order's creation queues reads the clock, and a busy machine took over a second to get there
    created = timezone.now() - timedelta(seconds=110)
    order = f.order(client, now=created)
    chosen = f.bid(f.provider(), order, 3 * USD, now=created)
    cheapest = f.bid(f.provider(), order, 2 * USD, now=created)
    before, after = order.deadline - timedelta(milliseconds=1), order.deadline + timedelta(milliseconds=1)

    results = race(
        lambda: services.order_accept(client=client, order_id=order.pk, bid_id=chosen.pk, now=before),
        lambda: services.order_award_due(order_id=order.pk, now=after),
    )

    assert_only_domain_errors(results)
    leases = list(Lease.objects.filter(order=order))
    assert len(leases) == 1
    accept_result, award_result = results
    if isinstance(accept_result, Lease):  # the client got there first
        assert leases[0].bid_id == chosen.pk and award_result is None
    else:  # the deadline won: the best bid, and the accept was refused as not open
        assert leases[0].bid_id == cheapest.pk and isinstance(accept_result, DomainError)
        assert accept_result.code == "order_not_open"
    assert Order.objects.get(pk=order.pk).status == Order.Status.AWARDED
    assert Bid.objects.filter(order=order, status=Bid.Status.WON).count() == 1
    assert_books_balance()


def test_two_accepts_of_different_bids_make_one_lease() -> None:
    client = f.client_user()
    order = f.order(client)
    b1, b2 = f.bid(f.provider(), order, USD), f.bid(f.provider(), order, 2 * USD)
    for _ in range(3):
        results = race(
            lambda: services.order_accept(client=client, order_id=order.pk, bid_id=b1.pk),
            lambda: services.order_accept(client=client, order_id=order.pk, bid_id=b2.pk),
            lambda: services.order_accept(client=client, order_id=order.pk, bid_id=b1.pk),
        )
        assert_only_domain_errors(results)
    assert Lease.objects.filter(order=order).count() == 1
    assert sum(isinstance(r, Lease) for r in results) <= 1
    assert_books_balance()


def test_one_provider_cannot_be_awarded_the_same_gpus_twice() -> None:
    client_a, client_b = f.client_user(), f.client_user()
    p = f.provider(gpus={"h100-sxm-80gb": 4})
    oa = f.order(client_a, resources={"gpu_count": 4})
    ob = f.order(client_b, resources={"gpu_count": 4})
    ba, bb = f.bid(p, oa, USD), f.bid(p, ob, USD)
    results = race(
        lambda: services.order_accept(client=client_a, order_id=oa.pk, bid_id=ba.pk),
        lambda: services.order_accept(client=client_b, order_id=ob.pk, bid_id=bb.pk),
    )
    assert_only_domain_errors(results)
    assert Lease.objects.count() == 1
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(refused) == 1 and refused[0].code in ("insufficient_capacity", "bid_insufficient_capacity")
    assert p.gpus.get().reserved == 4
    assert_books_balance()


def test_bids_racing_the_award_never_leave_an_open_bid_behind() -> None:
    client = f.client_user()
    order = f.order(client)
    first = f.bid(f.provider(), order, 3 * USD)
    late = [f.provider() for _ in range(4)]
    results = race(
        lambda: services.order_accept(client=client, order_id=order.pk, bid_id=first.pk),
        *[lambda p=p: services.bid_place(user=p.user, order_id=order.pk, price_per_hour=USD) for p in late],
    )
    assert_only_domain_errors(results)
    assert isinstance(results[0], Lease)
    assert not Bid.objects.filter(order=order, status=Bid.Status.OPEN).exists()


def test_one_client_funding_two_leases_at_once_cannot_overspend() -> None:
    client = f.client_user(balance=10 * USD)
    o1 = f.order(client, duration_hours=1, max_price_per_hour=8 * USD)
    o2 = f.order(client, duration_hours=1, max_price_per_hour=8 * USD)
    b1, b2 = f.bid(f.provider(), o1, 6 * USD), f.bid(f.provider(), o2, 6 * USD)
    results = race(
        lambda: services.order_accept(client=client, order_id=o1.pk, bid_id=b1.pk),
        lambda: services.order_accept(client=client, order_id=o2.pk, bid_id=b2.pk),
    )
    assert_only_domain_errors(results)
    assert Lease.objects.count() == 1
    assert [r.code for r in results if isinstance(r, DomainError)] == ["insufficient_funds"]
    assert_books_balance()


def test_the_same_deposit_key_posts_once() -> None:
    user = f.user(client=True)
    results = race(*[lambda: ledger.deposit(user=user, amount=7, key="same-key") for _ in range(6)])
    assert_only_domain_errors(results)
    assert LedgerTransaction.objects.filter(idempotency_key="same-key").count() == 1
    assert_books_balance()


def test_the_database_is_postgresql() -> None:
    assert connection.vendor == "postgresql"
