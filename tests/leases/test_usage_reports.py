"""Signed usage reports: the marketplace checks who signed, when, and how much."""

from datetime import timedelta

import pytest
from django.utils import timezone
from eth_account import Account

from chain.models import Wallet
from leases import services
from leases.models import Lease, UsageReport
from marketplace import services as market
from protocol import usage
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.django_db
CHAIN_ID = 31337  # settings.USAGE_SIGNING_CHAIN_ID's default


@pytest.fixture
def key() -> Account:
    return Account.create()


@pytest.fixture
def lease(key) -> Lease:  # type: ignore[no-untyped-def]
    client = f.client_user(balance=100 * USD)
    provider = f.provider()
    Wallet.objects.create(user=provider.user, address=key.address)
    order = f.order(client, resources={"gpu_count": 2})
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, 4 * USD).pk)
    # the lease started ten minutes ago, and runs
    Lease.objects.filter(pk=lease.pk).update(started_at=timezone.now() - timedelta(minutes=10), status="running")
    lease.refresh_from_db()
    return lease


def start_of(lease: Lease) -> int:
    return int(lease.started_at.timestamp()) + 1


def signed(lease: Lease, key, *, start: int, end: int, gpu_seconds: int | None = None, **extra) -> dict:  # type: ignore[no-untyped-def]
    report = usage.UsageReport(
        lease=lease.pk,
        period_start=start,
        period_end=end,
        gpu_seconds=(end - start) * lease.gpu_count if gpu_seconds is None else gpu_seconds,
        run_seconds=extra.pop("run_seconds", end - start),
        restarts=extra.pop("restarts", 0),
    )
    return report.body(usage.sign(report, chain_id=extra.pop("chain_id", CHAIN_ID), key=key.key))


def post(lease: Lease, body: dict):  # type: ignore[no-untyped-def]
    return f.api(lease.provider.user, f.PROVIDER).post(f"/api/v1/leases/{lease.pk}/usage/", body, format="json")


def test_consecutive_reports_are_stored_and_both_sides_read_them(lease: Lease, key) -> None:  # type: ignore[no-untyped-def]
    t0 = start_of(lease)
    first = post(lease, signed(lease, key, start=t0, end=t0 + 60, restarts=1))
    assert first.status_code == 201, first.json()
    assert first.json()["signer"] == key.address and first.json()["gpu_seconds"] == 120
    # a gap (the container was down, or the agent) is fine; periods only have to move forward
    assert post(lease, signed(lease, key, start=t0 + 90, end=t0 + 150, gpu_seconds=100)).status_code == 201
    for api in (f.api(lease.client, f.CLIENT), f.api(lease.provider.user, f.PROVIDER)):
        listed = api.get(f"/api/v1/leases/{lease.pk}/usage/").json()
        assert [r["gpu_seconds"] for r in listed["results"]] == [120, 100]
    # nobody else reads them
    assert f.api(f.client_user(), f.CLIENT).get(f"/api/v1/leases/{lease.pk}/usage/").status_code == 404


def test_a_retried_report_is_answered_with_the_stored_one(lease: Lease, key) -> None:  # type: ignore[no-untyped-def]
    body = signed(lease, key, start=start_of(lease), end=start_of(lease) + 60)
    assert post(lease, body).status_code == 201
    again = post(lease, body)
    assert again.status_code == 200
    assert UsageReport.objects.filter(lease=lease).count() == 1


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"gpu_seconds": 121}, 400, "usage_exceeds_period"),  # 2 GPUs x 60 s = 120 at most
        ({"run_seconds": 61}, 400, "usage_exceeds_period"),
        ({"start": -700}, 400, "usage_outside_lease"),  # before the lease started
        ({"end": 3600 + 600}, 400, "usage_outside_lease"),  # an hour in the future
        ({"end": 0}, 400, "validation_error"),  # ends when it starts
        ({"chain_id": 1}, 403, "unknown_signer"),  # signed for another marketplace: recovers elsewhere
    ],
)
def test_reports_that_do_not_add_up_are_refused(lease: Lease, key, change: dict, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    t0 = start_of(lease)
    start, end = t0 + change.pop("start", 0), t0 + change.pop("end", 60)
    response = post(lease, signed(lease, key, start=start, end=end, gpu_seconds=change.pop("gpu_seconds", 0), **change))
    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    assert not UsageReport.objects.exists()


def test_overlapping_periods_are_refused(lease: Lease, key) -> None:  # type: ignore[no-untyped-def]
    t0 = start_of(lease)
    assert post(lease, signed(lease, key, start=t0, end=t0 + 60)).status_code == 201
    overlap = post(lease, signed(lease, key, start=t0 + 30, end=t0 + 90))
    assert overlap.status_code == 409 and overlap.json()["error"]["code"] == "usage_overlap"
    same_start = post(lease, signed(lease, key, start=t0, end=t0 + 30))  # another report for a stored period
    assert same_start.status_code == 409


def test_only_a_linked_key_of_the_leases_provider_may_sign(lease: Lease, key) -> None:  # type: ignore[no-untyped-def]
    t0 = start_of(lease)
    stranger = Account.create()
    refused = post(lease, signed(lease, stranger, start=t0, end=t0 + 60))
    assert refused.status_code == 403 and "not linked" in refused.json()["error"]["message"]
    tampered = signed(lease, key, start=t0, end=t0 + 60, gpu_seconds=60)
    tampered["gpu_seconds"] = 120  # the numbers changed after signing: the signature proves another report
    assert post(lease, tampered).status_code == 403
    garbage = {**tampered, "signature": "0x" + "00" * 65}
    assert post(lease, garbage).json()["error"]["code"] == "invalid_signature"
    other_provider = f.api(f.provider().user, f.PROVIDER)
    assert (
        other_provider.post(f"/api/v1/leases/{lease.pk}/usage/", signed(lease, key, start=t0, end=t0 + 60)).status_code
        == 404
    )
    assert not UsageReport.objects.exists()


def test_the_final_report_after_close_ends_when_the_lease_closed(lease: Lease, key) -> None:  # type: ignore[no-untyped-def]
    t0 = start_of(lease)
    services.lease_close(user=lease.client, lease_id=lease.pk, roles={"client"})
    lease.refresh_from_db()
    closed = int(lease.closed_at.timestamp())
    late = post(lease, signed(lease, key, start=t0, end=closed + 120))
    assert late.status_code == 400 and late.json()["error"]["code"] == "usage_outside_lease"
    assert post(lease, signed(lease, key, start=t0, end=closed)).status_code == 201


def test_a_report_carries_what_the_gpus_were_doing_beside_its_signed_facts(lease: Lease, key) -> None:  # type: ignore[no-untyped-def]
    """The GPUs' utilisation and memory (NVML) ride along for the client's chart: outside the
    signature (they decide no money), checked like any input, optional."""
    t0 = start_of(lease)
    body = signed(lease, key, start=t0, end=t0 + 60) | {"gpu_utilization_pct": 87.5, "gpu_memory_mib": 70_000}
    stored = post(lease, body)
    assert stored.status_code == 201, stored.json()
    assert (stored.json()["gpu_utilization_pct"], stored.json()["gpu_memory_mib"]) == (87.5, 70_000)
    batch = [
        {**signed(lease, key, start=t0 + 60, end=t0 + 120), "lease": lease.pk},  # without: fine
        {**signed(lease, key, start=t0 + 120, end=t0 + 180), "lease": lease.pk, "gpu_utilization_pct": None},
    ]
    answered = post_batch(lease.provider.user, batch)
    assert answered.status_code == 200 and answered.json()["rejected"] == 0, answered.json()
    for bad in (
        {"gpu_utilization_pct": 101},
        {"gpu_utilization_pct": -1},
        {"gpu_memory_mib": -5},
        {"gpu_utilization_pct": "busy"},
    ):
        refused = post(lease, signed(lease, key, start=t0 + 180, end=t0 + 240) | bad)
        assert refused.status_code == 400 and set(bad) <= set(refused.json()["error"]["fields"]), bad


def test_malformed_bodies_are_400s(lease: Lease) -> None:
    for body in ({}, {"period_start": "soon"}, {"period_start": 1, "period_end": 2, "signature": "0x12"}, []):
        response = post(lease, body)
        assert response.status_code == 400, body


# --- many reports in one request -------------------------------------------------------------------


def post_batch(user, reports: list[dict]):  # type: ignore[no-untyped-def]
    return f.api(user, f.PROVIDER).post("/api/v1/usage-reports/", {"reports": reports}, format="json")


def test_a_batch_takes_each_report_on_its_own_and_answers_in_order(lease: Lease, key) -> None:  # type: ignore[no-untyped-def]
    # a second lease of the same provider, and a backlog of reports for each, sent out of order
    order = f.order(lease.client)
    second = market.order_accept(client=lease.client, order_id=order.pk, bid_id=f.bid(lease.provider, order, USD).pk)
    Lease.objects.filter(pk=second.pk).update(started_at=lease.started_at, status="running")
    second.refresh_from_db()
    t0 = start_of(lease)
    first_period = signed(lease, key, start=t0, end=t0 + 60)
    assert post(lease, first_period).status_code == 201  # sent before; its answer was lost
    reports = [
        {"lease": lease.pk, **signed(lease, key, start=t0 + 120, end=t0 + 180)},
        {"lease": second.pk, **signed(second, key, start=t0, end=t0 + 60)},
        {"lease": lease.pk, **signed(lease, key, start=t0 + 60, end=t0 + 120)},  # the backlog, out of order
        {"lease": lease.pk, **first_period},  # a resend
        {"lease": second.pk, **signed(second, key, start=t0 + 30, end=t0 + 90)},  # overlaps the one above
        {"lease": lease.pk, **signed(lease, key, start=t0 + 180, end=t0 + 240, gpu_seconds=999)},  # too much
        {"lease": second.pk, **signed(second, Account.create(), start=t0 + 60, end=t0 + 120)},  # a stranger's key
        {"lease": 10**9, **signed(lease, key, start=t0, end=t0 + 60)},  # no such lease
    ]
    response = post_batch(lease.provider.user, reports)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["created"], body["duplicates"], body["rejected"]) == (3, 1, 4)
    assert [r["result"] for r in body["results"]] == [
        "created",
        "created",
        "created",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert [(r["lease"], r["period_start"]) for r in body["results"]] == [
        (r["lease"], r["period_start"]) for r in reports
    ]
    errors = [(r["error"]["status"], r["error"]["code"]) for r in body["results"][4:]]
    assert errors == [
        (409, "usage_overlap"),
        (400, "usage_exceeds_period"),
        (403, "unknown_signer"),
        (404, "not_found"),
    ]
    assert body["results"][3]["report"] == UsageReport.objects.get(lease=lease, signature=first_period["signature"]).pk
    assert list(UsageReport.objects.filter(lease=lease).values_list("gpu_seconds", flat=True)) == [120, 120, 120]
    assert UsageReport.objects.filter(lease=second).count() == 1
    # the whole batch again changes nothing
    again = post_batch(lease.provider.user, reports[:4]).json()
    assert (again["created"], again["duplicates"]) == (0, 4)
    assert UsageReport.objects.count() == 4


def test_a_malformed_or_oversized_batch_is_a_400_and_stores_nothing(lease: Lease, key) -> None:  # type: ignore[no-untyped-def]
    t0 = start_of(lease)
    good = {"lease": lease.pk, **signed(lease, key, start=t0, end=t0 + 60)}
    for body in ({}, {"reports": []}, {"reports": "many"}, {"reports": [good, {"lease": lease.pk}]}):
        response = f.api(lease.provider.user, f.PROVIDER).post("/api/v1/usage-reports/", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "validation_error"
    assert post_batch(lease.provider.user, [good] * (services.USAGE_BATCH_MAX + 1)).status_code == 400
    assert (
        f.api(lease.client, f.CLIENT).post("/api/v1/usage-reports/", {"reports": [good]}, format="json").status_code
        == 403
    )
    assert not UsageReport.objects.exists()
    # the same report twice in one batch: stored once
    body = post_batch(lease.provider.user, [good, good]).json()
    assert [r["result"] for r in body["results"]] == ["created", "duplicate"]
    assert body["results"][0]["report"] == body["results"][1]["report"] == UsageReport.objects.get().pk


@pytest.mark.parametrize("lease_id", ["99999999999999999999999", "9223372036854775808", "0"])
def test_a_report_for_an_id_no_lease_can_have_is_a_404(lease: Lease, key, lease_id: str) -> None:  # type: ignore[no-untyped-def]
    """Past 2^63 SQLite cannot even bind the id (the schema fuzzing found a 500 on the embedded
    defaults): an id no row can have is no lease of the provider's."""
    body = signed(lease, key, start=start_of(lease), end=start_of(lease) + 60)
    answer = f.api(lease.provider.user, f.PROVIDER).post(f"/api/v1/leases/{lease_id}/usage/", body, format="json")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert not UsageReport.objects.exists()
