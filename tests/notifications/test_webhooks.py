"""Webhooks for integrators: registration, signed deliveries to a real HTTP receiver, retries."""

import json
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from marketplace import services as market
from notifications import services, signing
from notifications.models import WebhookDelivery
from tests import factories as f
from tests.factories import USD
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def register(user, url: str, events: list[str], scope=f.CLIENT):  # type: ignore[no-untyped-def]
    return f.api(user, scope).post("/api/v1/webhooks/", {"url": url, "events": events}, format="json")


def test_a_signed_event_reaches_the_receiver_once(receiver: Receiver) -> None:
    client = f.client_user(balance=100 * USD)
    created = register(client, receiver.url, ["order.*"])
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in f.api(client, f.CLIENT).get(f"/api/v1/webhooks/{created.json()['id']}/").json()

    order = f.order(client)
    [(headers, body)] = receiver.received
    assert signing.verify(body, headers[signing.HEADER], secret)  # authentic and fresh
    event = json.loads(body)
    assert (event["type"], event["data"]["id"], event["data"]["status"]) == ("order.created", order.pk, "open")
    assert headers["GPUMarket-Event-Id"] == event["id"] and headers["GPUMarket-Event-Type"] == "order.created"
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(body.replace(b"open", b"paid"), headers[signing.HEADER], secret)
    with pytest.raises(signing.SignatureError, match="outside the tolerance"):
        signing.verify(body, headers[signing.HEADER], secret, now=event["created"] + 600)  # a replay later on

    log = f.api(client, f.CLIENT).get(f"/api/v1/webhooks/{created.json()['id']}/deliveries/").json()["results"]
    assert [(d["event_type"], d["status"], d["attempts"], d["last_status_code"]) for d in log] == [
        ("order.created", "succeeded", 1, 200)
    ]


def test_the_lease_story_reaches_both_sides(receiver: Receiver) -> None:
    client = f.client_user(balance=100 * USD)
    provider = f.provider()
    register(client, receiver.url, ["lease.*", "order.awarded"])
    register(provider.user, receiver.url, ["lease.closed"], scope=f.PROVIDER)
    order = f.order(client)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, 2 * USD).pk)
    f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
    types = [e["type"] for e in receiver.events()]
    assert sorted(types) == ["lease.closed", "lease.closed", "lease.funded", "order.awarded"]
    closed = next(e for e in receiver.events() if e["type"] == "lease.closed")["data"]
    assert closed["paid_to_provider"] + closed["refunded_to_client"] == closed["deposit"]


def test_failures_are_retried_with_backoff_then_given_up(receiver: Receiver) -> None:
    client = f.client_user()
    endpoint = register(client, receiver.url, ["order.created"]).json()
    receiver.answers = [500, 503]
    f.order(client)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.next_attempt_at - timezone.now() > timedelta(seconds=50)  # a minute later, not at once
    assert services.webhooks_send_due() == 0  # not due yet

    later = timezone.now() + timedelta(minutes=2)
    services.webhooks_send_due(now=later)  # 503
    services.webhooks_send_due(now=later + timedelta(minutes=10))  # 200
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 3, 200)
    ids = {json.loads(body)["id"] for _, body in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1  # the same event id each time: receivers dedupe

    receiver.answers = [500] * 20
    f.api(client, f.CLIENT).post(f"/api/v1/webhooks/{endpoint['id']}/ping/")
    ping = WebhookDelivery.objects.get(event_type="webhook.ping")
    moment = timezone.now()
    for _ in range(10):
        moment += timedelta(days=2)
        services.webhooks_send_due(now=moment)
    ping.refresh_from_db()
    assert (ping.status, ping.attempts) == ("failed", 8)


def test_a_rolled_secret_signs_from_then_on(receiver: Receiver) -> None:
    client = f.client_user()
    endpoint = register(client, receiver.url, ["order.created"]).json()
    rolled = f.api(client, f.CLIENT).post(f"/api/v1/webhooks/{endpoint['id']}/roll-secret/").json()["secret"]
    assert rolled != endpoint["secret"]
    f.order(client)
    headers, body = receiver.received[-1]
    signing.verify(body, headers[signing.HEADER], rolled)
    with pytest.raises(signing.SignatureError):
        signing.verify(body, headers[signing.HEADER], endpoint["secret"])


def test_endpoints_are_private_to_their_owner(receiver: Receiver) -> None:
    owner, stranger = f.client_user(), f.client_user()
    endpoint = register(owner, receiver.url, ["order.created"]).json()
    api = f.api(stranger, f.CLIENT)
    assert api.get(f"/api/v1/webhooks/{endpoint['id']}/").status_code == 404
    assert api.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries/").status_code == 404
    assert api.delete(f"/api/v1/webhooks/{endpoint['id']}/").status_code == 404
    assert api.get("/api/v1/webhooks/").json()["count"] == 0
    f.order(stranger)  # the stranger's events never reach the owner's endpoint
    assert receiver.received == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://example.com/x", "events": ["order.created"]}, "webhook_target_refused"),
        ({"url": "not a url", "events": ["order.created"]}, "webhook_target_refused"),
        ({"url": "https://user:pw@example.com/", "events": ["order.created"]}, "webhook_target_refused"),
        ({"url": "http://127.0.0.1:9/x", "events": ["payment.stolen"]}, "validation_error"),
        ({"url": "http://127.0.0.1:9/x", "events": []}, "validation_error"),
        ({"url": "http://127.0.0.1:9/x"}, "validation_error"),
    ],
)
def test_bad_registrations_are_400s(body: dict, code: str) -> None:
    response = f.api(f.client_user(), f.CLIENT).post("/api/v1/webhooks/", body, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == code


@override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=False)
@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks",  # not https
        "https://127.0.0.1/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[::1]/hooks",
        "https://localhost/hooks",
    ],
)
def test_private_and_loopback_targets_are_refused_in_production(url: str) -> None:
    response = f.api(f.client_user(), f.CLIENT).post(
        "/api/v1/webhooks/", {"url": url, "events": ["order.created"]}, format="json"
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "webhook_target_refused"


def test_a_target_that_became_private_is_refused_at_delivery(receiver: Receiver) -> None:
    client = f.client_user()
    register(client, receiver.url, ["order.created"])
    with override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=False):
        f.order(client)
    delivery = WebhookDelivery.objects.get()
    assert delivery.last_error.startswith("refused:") and receiver.received == []
