"""Card top-ups against localstripe (a stateful fake Stripe server on 127.0.0.1), with signed webhooks
delivered to the live marketplace: once, twice, out of order, refunded, disputed."""

import hashlib
import hmac
import json
import time
import uuid

import pytest
import requests
from django.test import override_settings

from chain.devnode import free_port
from ledger import services as ledger
from ledger.models import LedgerAccount
from marketplace import services as market
from payments.models import CardTopUp, StripeEvent
from tests import factories as f
from tests.factories import USD
from tests.payments.fake_stripe import SECRET, pay_on_the_page, send_webhooks_to, stripe_api

pytestmark = pytest.mark.django_db(transaction=True)
CENT = 10_000  # micro-dollars


def signed(event: dict, *, secret: str = SECRET, at: int | None = None) -> tuple[bytes, str]:
    body = json.dumps(event).encode()
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={timestamp},v1={digest}"


def send(live_server, event: dict, **signing) -> requests.Response:  # type: ignore[no-untyped-def]
    body, header = signed(event, **signing)
    return requests.post(
        f"{live_server.url}/api/v1/payments/stripe/webhook/",
        data=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        timeout=10,
    )


def event(kind: str, obj: dict) -> dict:
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def balance_of(user) -> int:  # type: ignore[no-untyped-def]
    return ledger.user_account(user=user, kind=LedgerAccount.Kind.CLIENT_BALANCE).balance


def start_top_up(client, cents: int) -> dict:  # type: ignore[no-untyped-def]
    response = f.api(client, f.CLIENT).post("/api/v1/account/top-ups/", {"amount_cents": cents}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_card_payment_credits_the_balance_exactly_once(live_server, fake_stripe: str) -> None:  # type: ignore[no-untyped-def]
    hook = f"{live_server.url}/api/v1/payments/stripe/webhook/"
    send_webhooks_to(fake_stripe, hook)
    client = f.client_user(balance=0)
    started = start_top_up(client, 2500)
    assert started["client_secret"].startswith(started["payment_intent"]) and started["publishable_key"] == "pk_test_x"

    pay_on_the_page(fake_stripe, started["payment_intent"])  # Stripe then calls the webhook itself
    deadline = time.monotonic() + 15
    while CardTopUp.objects.get().status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.1)
    top_up = CardTopUp.objects.get()
    assert (top_up.status, top_up.credited) == ("succeeded", 2500 * CENT)
    assert balance_of(client) == 25 * USD

    # the same event again (Stripe retries), and a late copy under a new id: no second credit
    [recorded] = StripeEvent.objects.filter(type="payment_intent.succeeded")
    assert send(live_server, recorded.payload).json()["outcome"] == "duplicate"
    again = {**recorded.payload, "id": "evt_late_copy"}
    assert send(live_server, again).status_code == 200
    assert balance_of(client) == 25 * USD

    # a partial refund from the dashboard: the balance gives it back
    api = stripe_api(fake_stripe)
    refund = api.v1.refunds.create(params={"payment_intent": started["payment_intent"], "amount": 1000}).to_dict()
    charge = api.v1.charges.retrieve(refund["charge"]).to_dict()
    assert send(live_server, event("charge.refunded", charge)).status_code == 200
    assert send(live_server, event("charge.refunded", charge)).status_code == 200  # told twice, debited once
    top_up.refresh_from_db()
    assert (top_up.refunded, balance_of(client)) == (1000 * CENT, 15 * USD)
    listed = f.api(client, f.CLIENT).get("/api/v1/account/top-ups/").json()["results"]
    assert [(t["status"], t["credited"], t["refunded"]) for t in listed] == [("succeeded", 25 * USD, 10 * USD)]


def test_a_refund_seen_before_the_success_is_applied_after_the_credit(live_server, fake_stripe: str) -> None:  # type: ignore[no-untyped-def]
    client = f.client_user(balance=0)
    started = start_top_up(client, 4000)
    pay_on_the_page(fake_stripe, started["payment_intent"])  # no webhook configured: we deliver, out of order
    api = stripe_api(fake_stripe)
    refund = api.v1.refunds.create(params={"payment_intent": started["payment_intent"], "amount": 4000}).to_dict()
    charge = api.v1.charges.retrieve(refund["charge"]).to_dict()
    intent = api.v1.payment_intents.retrieve(started["payment_intent"]).to_dict()
    assert send(live_server, event("charge.refunded", charge)).json()["outcome"] == "credited"
    assert send(live_server, event("payment_intent.succeeded", intent)).status_code == 200
    top_up = CardTopUp.objects.get()
    assert (top_up.credited, top_up.refunded, top_up.shortfall) == (40 * USD, 40 * USD, 0)
    assert balance_of(client) == 0


def test_a_delivery_that_fails_is_applied_by_the_next_one(live_server, fake_stripe: str) -> None:  # type: ignore[no-untyped-def]
    """A payment, then a refund, each first delivered while Stripe cannot be read back: nothing is
    recorded or moved, the event's next delivery applies it, and a third is a duplicate."""
    client = f.client_user(balance=0)
    started = start_top_up(client, 2500)
    pay_on_the_page(fake_stripe, started["payment_intent"])  # no webhook configured: we deliver
    api = stripe_api(fake_stripe)
    unreachable = override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{free_port()}")

    succeeded = event("payment_intent.succeeded", api.v1.payment_intents.retrieve(started["payment_intent"]).to_dict())
    with unreachable:
        failed = send(live_server, succeeded)
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "service_unavailable"
    assert balance_of(client) == 0 and not StripeEvent.objects.exists()
    assert CardTopUp.objects.get().status == CardTopUp.Status.PENDING
    assert send(live_server, succeeded).json()["outcome"] == "credited"
    assert balance_of(client) == 25 * USD
    assert send(live_server, succeeded).json()["outcome"] == "duplicate"

    refund = api.v1.refunds.create(params={"payment_intent": started["payment_intent"], "amount": 1000}).to_dict()
    refunded = event("charge.refunded", api.v1.charges.retrieve(refund["charge"]).to_dict())
    with unreachable:
        assert send(live_server, refunded).status_code == 503
    assert balance_of(client) == 25 * USD and not StripeEvent.objects.filter(event_id=refunded["id"]).exists()
    assert send(live_server, refunded).status_code == 200
    assert balance_of(client) == 15 * USD
    assert send(live_server, refunded).json()["outcome"] == "duplicate"
    assert CardTopUp.objects.get().refunded == 10 * USD
    assert StripeEvent.objects.count() == 2


def test_a_dispute_holds_what_is_left_and_a_won_dispute_gives_it_back(live_server, fake_stripe: str) -> None:  # type: ignore[no-untyped-def]
    client = f.client_user(balance=0)
    started = start_top_up(client, 3000)
    pay_on_the_page(fake_stripe, started["payment_intent"])
    intent = stripe_api(fake_stripe).v1.payment_intents.retrieve(started["payment_intent"]).to_dict()
    send(live_server, event("payment_intent.succeeded", intent))
    assert balance_of(client) == 30 * USD
    # the client spends $20, then disputes the whole $30 charge
    order = f.order(client)
    provider = f.provider()
    market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, 2 * USD).pk)  # $16 deposit
    spent_down = balance_of(client)
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "amount": 3000,
        "status": "needs_response",
        "payment_intent": intent["id"],
    }
    send(live_server, event("charge.dispute.created", dispute))
    top_up = CardTopUp.objects.get()
    assert (top_up.disputed, top_up.shortfall) == (spent_down, 30 * USD - spent_down)
    assert balance_of(client) == 0  # never below zero: the rest is recorded as owed
    send(live_server, event("charge.dispute.closed", {**dispute, "status": "won"}))
    top_up.refresh_from_db()
    assert (top_up.disputed, top_up.shortfall, balance_of(client)) == (0, 0, spent_down)


@pytest.mark.parametrize(
    ("signing", "why"),
    [
        ({"secret": "whsec_someone_else"}, "wrong secret"),
        ({"at": 1_000_000_000}, "stale timestamp: a replay"),
    ],
)
def test_events_that_are_not_from_stripe_are_refused(live_server, fake_stripe: str, signing: dict, why: str) -> None:  # type: ignore[no-untyped-def]
    client = f.client_user(balance=0)
    started = start_top_up(client, 2500)
    forged = event("payment_intent.succeeded", {"id": started["payment_intent"], "object": "payment_intent"})
    response = send(live_server, forged, **signing)
    assert response.status_code == 400, why
    assert response.json()["error"]["code"] == "invalid_signature"
    garbage = requests.post(
        f"{live_server.url}/api/v1/payments/stripe/webhook/",
        data=b"\x00{",
        headers={"Stripe-Signature": "t=1,v1=00"},
        timeout=5,
    )
    assert garbage.status_code == 400
    assert balance_of(client) == 0 and not StripeEvent.objects.exists()


@pytest.mark.parametrize("amount", [0, -500, 499, 1_000_001, "ten", None, 12.5])
def test_top_ups_of_absurd_amounts_are_refused(fake_stripe: str, amount: object) -> None:
    response = f.api(f.client_user(), f.CLIENT).post(
        "/api/v1/account/top-ups/", {"amount_cents": amount}, format="json"
    )
    assert response.status_code == 400
    assert not CardTopUp.objects.exists()
