"""Reputation: a score from a provider's checks, uptime and leases, kept current by the worker and
after every check; shown in offers and bids, used to break price ties, and a filter for clients
(orders that take bids only from reliable providers, offers above a reliability)."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from leases.models import Lease
from marketplace import selectors as market_selectors
from providers import services as providers
from providers.models import Provider, UptimeDay
from tests import factories as f
from tests.factories import USD
from tests.trust.test_consequences import failed_check, lease_on, passed_check, small_challenges  # noqa: F401
from trust import services
from trust.reputation import Record, score
from trust.tasks import update_reputations

DAY = 86_400


def test_a_newcomer_scores_half_and_a_record_moves_it_either_way() -> None:
    assert score(Record()) == 500
    spotless = Record(checks_passed=30, online_seconds=30 * DAY, window_seconds=30 * DAY, leases_completed=40)
    assert score(spotless) > 950
    one_failure = Record(
        checks_passed=4, checks_failed=1, online_seconds=30 * DAY, window_seconds=30 * DAY, leases_completed=5
    )
    assert score(one_failure) < 700
    assert score(Record(online_seconds=0, window_seconds=30 * DAY)) < score(
        Record(window_seconds=30 * DAY, online_seconds=30 * DAY)
    )
    assert score(Record(leases_failed=50)) < score(Record()) < score(Record(leases_completed=50))
    assert (
        0
        <= score(Record(checks_failed=10**6, leases_failed=10**6, window_seconds=10**9))
        <= score(Record(checks_passed=10**6, leases_completed=10**6, online_seconds=10**9, window_seconds=10**9))
        <= 1000
    )


@pytest.mark.django_db
def test_heartbeats_count_as_uptime_only_when_they_come_close_together(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PROVIDER_OFFLINE_AFTER_SECONDS = 300
    provider = f.provider()
    today = timezone.now().date()
    for gap in (60, 120, 400, 30):  # the 400 s gap was downtime
        Provider.objects.filter(pk=provider.pk).update(last_heartbeat_at=timezone.now() - timedelta(seconds=gap))
        provider.refresh_from_db()
        providers.provider_heartbeat(provider=provider)
    assert 209 <= UptimeDay.objects.get(provider=provider, day=today).online_seconds <= 211


@pytest.mark.django_db
def test_checks_leases_and_uptime_make_the_score_and_a_failure_takes_it_down_at_once(
    django_capture_on_commit_callbacks,
) -> None:  # type: ignore[no-untyped-def]
    good, bad = f.provider(), f.provider()
    Provider.objects.filter(pk__in=[good.pk, bad.pk]).update(created_at=timezone.now() - timedelta(days=40))
    for provider in (good, bad):
        UptimeDay.objects.bulk_create(
            UptimeDay(provider=provider, day=timezone.now().date() - timedelta(days=d), online_seconds=DAY)
            for d in range(30)
        )
    client = f.client_user()
    for _ in range(3):
        passed_check(good, "h100-sxm-80gb", at=timezone.now())
        lease = lease_on(good, client, "h100-sxm-80gb", ran=60)
        Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.CLOSED, closed_at=timezone.now())
    update_reputations.delay().get()  # the worker's periodic task
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.reputation > 800 and 600 < bad.reputation < 800  # full uptime, no record otherwise
    page = Client()
    page.force_login(good.user)
    record = " ".join(page.get("/provider/").content.decode().split())
    assert f"reliability {round(good.reputation / 10)} %" in record
    assert "GPU checks 3 passed, 0 failed" in record and "leases 3 completed, 0 broken off" in record

    lease = lease_on(bad, client, "h100-sxm-80gb", ran=60)
    with django_capture_on_commit_callbacks(execute=True):
        failed_check(bad, "h100-sxm-80gb")
    bad.refresh_from_db()
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED
    assert bad.reputation < 500  # a failed check and a lease it broke, without waiting for the worker
    assert services.reputations_update() == 0  # nothing else changed


@pytest.mark.django_db
def test_an_order_can_take_bids_only_from_reliable_providers(django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    reliable, newcomer = f.provider(reputation=900), f.provider()
    client = f.client_user()
    order = f.order(client, min_reputation=800)
    assert f.api(client, f.CLIENT).get(f"/api/v1/orders/{order.pk}/").json()["min_reputation"] == 800

    refused = f.api(newcomer.user, f.PROVIDER).post(
        f"/api/v1/orders/{order.pk}/bids/", {"price_per_hour": USD_1}, format="json"
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_eligible"
    assert "reputation of at least 800" in refused.json()["error"]["message"]
    feed = f.api(newcomer.user, f.PROVIDER).get("/api/v1/provider/orders/").json()["results"]
    assert order.pk not in [o["id"] for o in feed]
    assert order.pk in [
        o["id"] for o in f.api(reliable.user, f.PROVIDER).get("/api/v1/provider/orders/").json()["results"]
    ]

    bid = f.bid(reliable, order, USD_1)
    Provider.objects.filter(pk=reliable.pk).update(reputation=700)  # fell since it bid
    [candidate] = market_selectors.award_candidates(order=order, now=timezone.now())
    assert (candidate.bid_id, candidate.ineligible_reason) == (bid.pk, "reputation_too_low")

    bad = f.api(client, f.CLIENT).post("/api/v1/orders/", f.spec_payload(min_reputation=1001), format="json")
    assert bad.status_code == 400 and "min_reputation" in bad.json()["error"]["fields"]


@pytest.mark.django_db
def test_offers_filter_by_reputation_in_the_api_and_by_reliability_on_the_page() -> None:
    reliable, newcomer = f.provider(reputation=920), f.provider()
    api = f.api(f.client_user(), f.CLIENT)
    ids = [o["provider"]["id"] for o in api.get("/api/v1/offers/?min_reputation=900").json()["results"]]
    assert ids == [reliable.pk]
    assert api.get("/api/v1/offers/?min_reputation=1001").status_code == 400
    page = Client()
    html = page.get("/offers/?min_reliability=90").content.decode()
    assert reliable.name in html and newcomer.name not in html
    assert newcomer.name in page.get("/offers/").content.decode()


USD_1 = 1_000_000


@pytest.mark.django_db
def test_a_deploy_the_clients_workload_failed_counts_against_the_provider_only_if_it_ran_elsewhere() -> None:
    from marketplace import services as market
    from trust.selectors import reputation_records

    provider, other = f.provider(), f.provider()
    client = f.client_user()
    agent = f.api(provider.user, f.PROVIDER)

    def fail(cause: str, reason: str) -> Lease:
        order = f.order(client)
        lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
        answer = agent.post(
            f"/api/v1/leases/{lease.pk}/status/", {"status": "failed", "reason": reason, "cause": cause}, format="json"
        )
        assert answer.status_code == 200, answer.json()
        assert (answer.json()["failure_cause"], answer.json()["status"]) == (cause, "closed")
        assert answer.json()["status_reason"] == "" and reason in answer.json()["close_reason"]  # said once
        return Lease.objects.get(pk=lease.pk)

    fail("workload", "the image cannot be pulled: manifest unknown")
    fail("provider", "the GPUs are gone")
    record = reputation_records(provider_ids=[provider.pk])[provider.pk]
    assert (record.leases_completed, record.leases_failed) == (0, 1)  # the workload's failure counts neither way

    # the same image, command and arguments then ran on another provider: the workload was fine
    order = f.order(client)
    elsewhere = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(other, order, USD).pk)
    f.usage(elsewhere, seconds=60)
    record = reputation_records(provider_ids=[provider.pk])[provider.pk]
    assert (record.leases_completed, record.leases_failed) == (0, 2)


@pytest.mark.django_db
def test_only_a_failure_has_a_cause_and_only_a_known_one() -> None:
    from marketplace import services as market

    provider, client = f.provider(), f.client_user()
    order = f.order(client)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    agent = f.api(provider.user, f.PROVIDER)
    for body, field in (
        ({"status": "running", "cause": "workload"}, "cause"),
        ({"status": "failed", "reason": "x", "cause": "the client"}, "cause"),
    ):
        answer = agent.post(f"/api/v1/leases/{lease.pk}/status/", body, format="json")
        assert answer.status_code == 400 and field in answer.json()["error"]["fields"]
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.FUNDED  # nothing written
    # an agent that says nothing of the cause blames the provider, as before
    answer = agent.post(f"/api/v1/leases/{lease.pk}/status/", {"status": "failed", "reason": "x"}, format="json")
    assert answer.json()["failure_cause"] == "provider"
