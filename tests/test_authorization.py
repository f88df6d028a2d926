"""The authorization matrix: every endpoint of the API (read from its OpenAPI schema, so a new one
is covered the day it lands) by anonymous, the owner, another tenant of the same role, and the wrong
role. Anonymous callers get 401 except on the public endpoints; another tenant's objects do not
exist for anyone else (404); an endpoint of the other role answers 403; nothing answers 5xx."""

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from chain.models import Wallet
from core import services as accounts
from core.models import ApiToken, SshKey
from marketplace import services as market
from notifications.models import WebhookEndpoint
from notifications.services import notify
from payments.models import CardTopUp
from tests import factories as f
from trust import services as trust
from trust.models import Attestation, GpuCheck

pytestmark = pytest.mark.django_db

PUBLIC = {
    ("GET", "/api/v1/offers/"),
    ("GET", "/api/v1/gpu-models/"),
    ("POST", "/api/v1/payments/stripe/webhook/"),  # Stripe's signature, not a login
}
CLIENT_ONLY_PREFIXES = ("/api/v1/account/top-ups/", "/api/v1/account/ssh-keys/")
PROVIDER_ONLY_PREFIXES = ("/api/v1/providers/me/checks/", "/api/v1/providers/me/attestations/", "/api/v1/provider/")
# what a lease's provider reads and writes (its agent), not its client
PROVIDER_SIDE = ("/manifest/", "/status/", "/usage/", "/bids/{id}/")
# the market is open: every provider sees an open order (to bid on it), and its client's other views
OPEN_TO_PROVIDERS = {("GET", "/api/v1/orders/{id}/"), ("GET", "/api/v1/orders/{id}/bids/")}
METHODS = ("get", "post", "put", "patch", "delete")


def endpoints() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [(method.upper(), path) for path, ops in schema["paths"].items() for method in ops if method in METHODS]


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    """Alice (a client) and Pat (a provider) with one of everything, and Bob and Quinn, a client and
    a provider of their own, who must not see any of it."""
    alice, bob = f.client_user(), f.client_user()
    pat, quinn = f.provider(gpus={"h100-sxm-80gb": 8}), f.provider(gpus={"h100-sxm-80gb": 8})
    open_order = f.order(alice)
    bid = f.bid(pat, open_order, 2 * f.USD)
    awarded = f.order(alice)
    lease = market.order_accept(client=alice, order_id=awarded.pk, bid_id=f.bid(pat, awarded, 3 * f.USD).pk)
    token = ApiToken.objects.filter(user=alice).first() or accounts.token_issue(user=alice, name="x", scope="client")
    token_id = token.pk if isinstance(token, ApiToken) else token.token.pk
    check = trust.check_issue(provider=pat, gpu_model_id="h100-sxm-80gb", reason=GpuCheck.Reason.ADMIN)
    from django.utils import timezone

    attestation = Attestation.objects.create(
        provider=pat, gpu_model_id="h100-sxm-80gb", nonce="ab" * 32, issued_at=timezone.now(), expires_at=timezone.now()
    )
    ids = {
        "/api/v1/orders/{id}/": open_order.pk,
        "/api/v1/bids/{id}/": bid.pk,
        "/api/v1/leases/{id}/": lease.pk,
        "/api/v1/tokens/{id}/": token_id,
        "/api/v1/webhooks/{id}/": WebhookEndpoint.objects.create(user=alice, url="https://hooks.example.com/x").pk,
        "/api/v1/notifications/{id}/": notify(user=alice, kind="note", title="t", body="b", data={}, webhook=False).pk,
        "/api/v1/account/top-ups/{id}/": CardTopUp.objects.create(
            user=alice, payment_intent="pi_1", amount_cents=500
        ).pk,
        "/api/v1/account/ssh-keys/{id}/": SshKey.objects.create(
            user=alice, name="laptop", public_key="ssh-ed25519 AAAA", kind="ssh-ed25519", fingerprint="SHA256:x"
        ).pk,
        "/api/v1/providers/me/checks/{id}/": check.pk,
        "/api/v1/providers/me/attestations/{id}/": attestation.pk,
    }
    wallet = Wallet.objects.create(user=alice, address="0x" + "1" * 40).address
    return {
        "ids": ids,
        "bid": bid.pk,  # of the open order: a route's second id
        "wallet": wallet,
        "alice": f.api(alice, f.CLIENT),
        "bob": f.api(bob, f.CLIENT),
        "pat": f.api(pat.user, f.PROVIDER),
        "quinn": f.api(quinn.user, f.PROVIDER),
    }


def concrete(path: str, world: dict) -> str:
    for prefix, object_id in world["ids"].items():
        stem = prefix.removesuffix("{id}/")
        if path.startswith(stem + "{id}/"):
            return path.replace("{id}", str(object_id), 1).replace("{bid}", str(world["bid"]))
    return path.replace("{address}", world["wallet"]).replace("{month}", "2026-11")


def call(api: APIClient, method: str, path: str):  # type: ignore[no-untyped-def]
    return getattr(api, method.lower())(path, {}, format="json")


def test_the_matrix_covers_the_whole_api() -> None:
    found = endpoints()
    assert len(found) > 60
    assert ("POST", "/api/v1/orders/{id}/accept/") in found and ("DELETE", "/api/v1/wallets/{address}/") in found


def test_anonymous_callers_get_401_except_on_the_public_endpoints(world: dict) -> None:
    anonymous = APIClient()
    for method, path in endpoints():
        response = call(anonymous, method, concrete(path, world))
        assert response.status_code < 500, (method, path, response.status_code)
        if (method, path) in PUBLIC:
            continue
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json()["error"]["code"] in ("not_authenticated", "authentication_failed")


def test_another_tenants_objects_do_not_exist_for_anyone_else(world: dict) -> None:
    owned = [(m, p) for m, p in endpoints() if "{id}" in p or "{address}" in p]
    assert len(owned) > 25
    for method, path in owned:
        url = concrete(path, world)
        missing = concrete(
            path, {"ids": dict.fromkeys(world["ids"], 999_999), "bid": 999_999, "wallet": "0x" + "9" * 40}
        )
        for stranger in ("bob", "quinn"):
            if stranger == "quinn" and (method, path) in OPEN_TO_PROVIDERS:
                continue  # an open order is public to providers; its bids are sealed (test_live, test_bids)
            response = call(world[stranger], method, url)
            assert response.status_code in (400, 403, 404), (stranger, method, path, response.status_code)
            if response.status_code == 400:
                # the body was refused before the object was looked up: the same answer as for an id
                # that does not exist, so it tells nothing about the object
                absent = call(world[stranger], method, missing)
                assert (absent.status_code, absent.json()["error"]["code"]) == (400, response.json()["error"]["code"])


def test_the_owners_reach_their_objects(world: dict) -> None:
    """So that the 404s above mean "not yours", not "not there"."""
    for method, path in endpoints():
        if method != "GET" or "{id}" not in path:
            continue
        url = concrete(path, world)
        provider_side = path.startswith(PROVIDER_ONLY_PREFIXES) or any(part in path for part in PROVIDER_SIDE)
        owner = "pat" if provider_side else "alice"
        response = call(world[owner], method, url)
        assert response.status_code == 200, (owner, path, response.status_code, response.content[:200])


def test_endpoints_of_the_other_role_answer_403(world: dict) -> None:
    for method, path in endpoints():
        url = concrete(path, world)
        if path.startswith(PROVIDER_ONLY_PREFIXES):
            response = call(world["bob"], method, url)
            assert response.status_code == 403, ("a client", method, path, response.status_code)
        if (method != "GET" and path.startswith(CLIENT_ONLY_PREFIXES)) or (method, path) in {
            ("POST", "/api/v1/orders/"),
            ("POST", "/api/v1/orders/{id}/accept/"),
            ("POST", "/api/v1/orders/{id}/cancel/"),
        }:
            response = call(world["quinn"], method, url)
            assert response.status_code == 403, ("a provider", method, path, response.status_code)


def test_lists_never_show_another_tenants_objects(world: dict) -> None:
    lists = {
        "/api/v1/orders/": "/api/v1/orders/{id}/",
        "/api/v1/bids/": "/api/v1/bids/{id}/",
        "/api/v1/leases/": "/api/v1/leases/{id}/",
        "/api/v1/tokens/": "/api/v1/tokens/{id}/",
        "/api/v1/webhooks/": "/api/v1/webhooks/{id}/",
        "/api/v1/notifications/": "/api/v1/notifications/{id}/",
        "/api/v1/account/top-ups/": "/api/v1/account/top-ups/{id}/",
        "/api/v1/providers/me/checks/": "/api/v1/providers/me/checks/{id}/",
        "/api/v1/providers/me/attestations/": "/api/v1/providers/me/attestations/{id}/",
    }
    for listing, detail in lists.items():
        owned = world["ids"][detail]
        for stranger in ("bob", "quinn"):
            response = world[stranger].get(listing)
            if response.status_code != 200:
                assert response.status_code in (403, 404), (stranger, listing, response.status_code)
                continue
            body = response.json()
            rows = body["results"] if isinstance(body, dict) else body
            assert owned not in [row["id"] for row in rows], (stranger, listing)
