"""Faults at the data's edge: the database connection cut in the middle of a request, accept racing
the deadline racing cancel, usage reports repeated and out of order."""

import threading
from datetime import timedelta

import psycopg
import pytest
import requests
from django.db import connection
from django.utils import timezone

from core import services as accounts
from core.errors import DomainError
from core.models import TokenScope
from leases import services as lease_services
from leases.models import Lease, UsageReport
from ledger.models import LedgerTransaction
from marketplace import services
from marketplace.models import Bid, Order
from tests import factories as f
from tests.factories import USD
from tests.faults.harness import assert_converged, wait_for
from tests.leases.test_usage_reports import key, lease, post, signed, start_of  # noqa: F401 - fixtures
from tests.marketplace.test_races import race

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def raw_connection() -> psycopg.Connection:
    s = connection.settings_dict
    return psycopg.connect(
        host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"], password=s["PASSWORD"], dbname=s["NAME"]
    )


def test_a_database_connection_cut_mid_request_is_a_503_that_changes_nothing(live_server) -> None:  # type: ignore[no-untyped-def]
    client = f.client_user(balance=100 * USD)
    order = f.order(client)
    bid = f.bid(f.provider(), order, 2 * USD)
    token = accounts.token_issue(user=client, name="faults", scope=TokenScope.CLIENT).secret
    entries_before = LedgerTransaction.objects.count()

    def accept() -> requests.Response:
        return requests.post(
            f"{live_server.url}/api/v1/orders/{order.pk}/accept/",
            json={"bid": bid.pk},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    answers: list[requests.Response] = []
    with raw_connection() as holder, raw_connection() as admin:
        # the order's row is locked elsewhere: the accept waits inside its transaction...
        holder.execute(f"SELECT id FROM {Order._meta.db_table} WHERE id = %s FOR UPDATE", [order.pk])
        thread = threading.Thread(target=lambda: answers.append(accept()))
        thread.start()
        waiting = wait_for(
            lambda: admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchall(),
            what="the request waiting on the lock",
        )
        # ...and its connection is cut there
        admin.execute("SELECT pg_terminate_backend(%s)", [waiting[0][0]])
        thread.join(timeout=30)
        holder.rollback()

    [answer] = answers
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "database_unavailable" and answer.headers["Retry-After"]
    order.refresh_from_db()
    assert order.status == Order.Status.OPEN and not Lease.objects.exists()  # nothing half-written
    assert LedgerTransaction.objects.count() == entries_before
    again = accept()  # the next request gets a fresh connection
    assert again.status_code == 201, again.text
    assert Lease.objects.filter(order=order).count() == 1
    assert_converged(leases=list(Lease.objects.all()))


@pytest.mark.parametrize("round_", range(6))
def test_accept_racing_the_deadline_racing_cancel_ends_in_one_outcome(round_: int) -> None:
    client = f.client_user(balance=100 * USD)
    # the deadline ten seconds from now (the award task the order's creation queues reads the clock)
    created = timezone.now() - timedelta(seconds=110)
    order = f.order(client, now=created)
    chosen = f.bid(f.provider(), order, 3 * USD, now=created)
    f.bid(f.provider(), order, 2 * USD, now=created)
    before, after = order.deadline - timedelta(milliseconds=1), order.deadline + timedelta(milliseconds=1)

    results = race(
        lambda: services.order_accept(client=client, order_id=order.pk, bid_id=chosen.pk, now=before),
        lambda: services.order_award_due(order_id=order.pk, now=after),
        lambda: services.order_cancel(client=client, order_id=order.pk),
    )

    for r in results:
        assert not isinstance(r, BaseException) or isinstance(r, DomainError), repr(r)
    order.refresh_from_db()
    leases = list(Lease.objects.filter(order=order))
    if order.status == Order.Status.CANCELLED:  # cancel came first: no lease, every bid over
        assert not leases and not Bid.objects.filter(order=order, status=Bid.Status.OPEN).exists()
        assert isinstance(results[2], Order)
    else:  # accept or the deadline came first: one lease, one winner, and the cancel refused
        assert order.status == Order.Status.AWARDED and len(leases) == 1
        assert Bid.objects.filter(order=order, status=Bid.Status.WON).count() == 1
        assert isinstance(results[2], DomainError) and results[2].code == "order_not_open"
    assert_converged(leases=leases)


def test_usage_reports_out_of_order_and_repeated_count_once(lease: Lease, key) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """One by one, out of order: a report for a period before the last one is refused, so no
    usage can be slipped in behind what was settled; a repeat is answered with the stored report.
    (An agent's backlog sent as a batch in any order is taken in period order:
    tests/leases/test_usage_reports.py.)"""
    t0 = start_of(lease)
    r1, r2 = signed(lease, key, start=t0, end=t0 + 120), signed(lease, key, start=t0 + 120, end=t0 + 240)
    r3 = signed(lease, key, start=t0 + 240, end=t0 + 360)
    assert post(lease, r2).status_code == 201
    lease_services.leases_settle()
    late = post(lease, r1)
    assert late.status_code == 409 and late.json()["error"]["code"] == "usage_overlap"
    assert post(lease, r3).status_code == 201
    assert post(lease, r2).status_code in (200, 201) and post(lease, r3).status_code in (200, 201)  # repeats
    assert UsageReport.objects.filter(lease=lease).count() == 2
    lease_services.leases_settle()
    lease_services.leases_settle()  # a repeated tick pays nothing more
    lease.refresh_from_db()
    assert lease.settled_amount == lease.price_per_hour * 240 // 3600  # r2 and r3, once each
    assert_converged(leases=[lease])
