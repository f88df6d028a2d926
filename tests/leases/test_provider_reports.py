"""What the provider's agent reads (the manifest) and reports (deploying, running, failed)."""

import pytest

from leases.models import Lease
from ledger.models import LedgerAccount
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


def test_the_agent_sends_the_log_tail_and_the_lease_page_shows_it(lease: Lease) -> None:
    from tests.web.test_pages import browser

    api, url = provider_api(lease), f"/api/v1/leases/{lease.pk}/logs/"
    client_api = f.api(lease.client, f.CLIENT)
    assert client_api.get(url).json() == {"text": "", "updated_at": None}
    assert "No log lines yet" in browser(lease.client).get(f"/leases/{lease.pk}/").content.decode()
    sent = api.put(url, {"text": "epoch 1 loss 0.93\n<b>epoch 2</b>\x00\n"}, format="json")
    assert sent.status_code == 200 and sent.json()["text"] == "epoch 1 loss 0.93\n<b>epoch 2</b>\n"
    assert api.put(url, {"text": "epoch 3 loss 0.41\n"}, format="json").status_code == 200  # replaces the tail
    assert client_api.get(url).json()["text"] == "epoch 3 loss 0.41\n"
    assert api.get(url).json()["text"] == "epoch 3 loss 0.41\n"
    page = browser(lease.client).get(f"/leases/{lease.pk}/logs/").content.decode()
    assert "epoch 3 loss 0.41" in page and 'class="log"' in page
    # only the lease's own provider writes; strangers see nothing
    stranger = f.api(f.provider().user, f.PROVIDER)
    assert stranger.put(url, {"text": "x"}, format="json").status_code == 404
    assert stranger.get(url).status_code == 404
    assert f.api(f.client_user(), f.CLIENT).get(url).status_code == 404
    assert client_api.put(url, {"text": "x"}, format="json").status_code == 403
    assert browser(f.client_user()).get(f"/leases/{lease.pk}/logs/").status_code == 404


def test_a_log_tail_that_is_too_long_or_not_text_is_refused_and_a_closed_lease_takes_none(lease: Lease) -> None:
    api, url = provider_api(lease), f"/api/v1/leases/{lease.pk}/logs/"
    for body, code in (
        ({"text": "x" * 64_001}, "logs_too_large"),
        ({"text": 5}, "validation_error"),
        ({}, "validation_error"),
    ):
        refused = api.put(url, body, format="json")
        assert refused.status_code == 400 and refused.json()["error"]["code"] == code, body
    assert api.put(url, {"text": "é" * 32_000}, format="json").status_code == 200  # 64,000 bytes exactly
    f.api(lease.client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
    closed = api.put(url, {"text": "late"}, format="json")
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "lease_closed"
    assert f.api(lease.client, f.CLIENT).get(url).json()["text"] == "é" * 32_000
