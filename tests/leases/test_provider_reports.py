"""What the provider's agent reads (the manifest) and reports (deploying, running, failed)."""

import pytest

from leases.models import Lease, LedgerAccount
from marketplace import services as market
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.django_db


@pytest.fixture
def lease() -> Lease:
    client = f.client_user(balance=100 * USD)
    provider = f.provider()
    order = f.order(
        client,
        workload={
            "env": [{"name": "HF_TOKEN", "value": "hf_secret", "secret": True}, {"name": "MODE", "value": "train"}],
            "ports": [8888],
        },
    )
    return market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, 2 * USD).pk)


def provider_api(lease: Lease):  # type: ignore[no-untyped-def]
    return f.api(lease.provider.user, f.PROVIDER)


def test_the_provider_reads_the_manifest_with_secrets(lease: Lease) -> None:
    response = provider_api(lease).get(f"/api/v1/leases/{lease.pk}/manifest/")
    assert response.status_code == 200
    body = response.json()
    assert body["env"] == {"HF_TOKEN": "hf_secret", "MODE": "train"}
    assert (body["image"], body["gpu_model"], body["gpu_count"]) == ("ghcr.io/acme/trainer:1.4", "h100-sxm-80gb", 1)
    assert body["ports"] == [{"port": 8888, "protocol": "tcp"}]
    # nobody else: not the client, not another provider
    assert f.api(lease.client, f.CLIENT).get(f"/api/v1/leases/{lease.pk}/manifest/").status_code == 403
    assert f.api(f.provider().user, f.PROVIDER).get(f"/api/v1/leases/{lease.pk}/manifest/").status_code == 404


def test_deploying_then_running_with_endpoints(lease: Lease) -> None:
    api = provider_api(lease)
    assert (
        api.post(f"/api/v1/leases/{lease.pk}/status/", {"status": "deploying"}, format="json").json()["status"]
        == "deploying"
    )
    running = api.post(
        f"/api/v1/leases/{lease.pk}/status/", {"status": "running", "endpoints": ["203.0.113.7:31888"]}, format="json"
    )
    assert running.status_code == 200
    seen_by_client = f.api(lease.client, f.CLIENT).get(f"/api/v1/leases/{lease.pk}/").json()
    assert (seen_by_client["status"], seen_by_client["endpoints"]) == ("running", ["203.0.113.7:31888"])
    back = api.post(f"/api/v1/leases/{lease.pk}/status/", {"status": "deploying"}, format="json")
    assert back.status_code == 409 and back.json()["error"]["code"] == "illegal_transition"


def test_a_failed_deployment_refunds_the_client_in_full(lease: Lease) -> None:
    api = provider_api(lease)
    response = api.post(
        f"/api/v1/leases/{lease.pk}/status/", {"status": "failed", "reason": "image pull failed"}, format="json"
    )
    assert response.status_code == 200
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED and "image pull failed" in lease.close_reason
    assert (lease.paid_to_provider, lease.refunded_to_client) == (0, lease.deposit)
    assert LedgerAccount.objects.get(owner=lease.client, kind=LedgerAccount.Kind.CLIENT_BALANCE).balance == 100 * USD
    assert api.get(f"/api/v1/leases/{lease.pk}/manifest/").status_code == 409
    again = api.post(f"/api/v1/leases/{lease.pk}/status/", {"status": "running"}, format="json")
    assert again.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"status": "closed"},
        {"status": "failed"},
        {"status": "running", "endpoints": ["no-port"]},
        {"status": "running", "endpoints": ["host:1; rm -rf /"]},
        {"status": "running", "endpoints": [f"h:{i}" for i in range(17)]},
        {},
    ],
)
def test_bad_reports_are_400(lease: Lease, body: dict) -> None:
    response = provider_api(lease).post(f"/api/v1/leases/{lease.pk}/status/", body, format="json")
    assert response.status_code == 400
    lease.refresh_from_db()
    assert lease.status == Lease.Status.FUNDED
