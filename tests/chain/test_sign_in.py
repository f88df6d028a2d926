"""Signing in with a linked wallet (Sign-In with Ethereum) from the login page's script, and
unlinking a wallet from the account page."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from eth_account import Account

from chain.models import SiweChallenge, Wallet
from tests import factories as f
from tests.chain.test_wallets import sign
from tests.conftest import clear_our_cache

pytestmark = pytest.mark.django_db

CHALLENGE, LOGIN = "/accounts/ethereum/challenge/", "/accounts/ethereum/login/"


@pytest.fixture(autouse=True)
def _fresh_counters():  # type: ignore[no-untyped-def]
    clear_our_cache()
    yield
    clear_our_cache()


def browser(address: str = "198.51.100.20") -> Client:
    """A browser that went through the login page (it holds the CSRF cookie), checks enforced."""
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=address)
    assert client.get("/accounts/login/").status_code == 200
    return client


def post(client: Client, path: str, body: object) -> tuple[int, dict]:
    response = client.post(
        path,
        json.dumps(body),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )
    return response.status_code, response.json()


def linked_user(wallet):  # type: ignore[no-untyped-def]
    user = f.client_user()
    Wallet.objects.create(user=user, address=wallet.address)
    return user


def ask(client: Client, address: str) -> str:
    status, body = post(client, CHALLENGE, {"address": address, "chain_id": 1})
    assert status == 201, body
    return body["message"]


def test_a_linked_wallet_signs_in_to_its_account() -> None:
    wallet = Account.create()
    user = linked_user(wallet)
    client = browser()
    message = ask(client, wallet.address.lower())
    assert "Sign in to GPU Market with this wallet." in message and wallet.address in message
    status, body = post(client, LOGIN, {"message": message, "signature": sign(message, wallet), "next": "/account/"})
    assert (status, body) == (200, {"redirect": "/account/"})
    assert client.session["_auth_user_id"] == str(user.pk)
    assert user.username in client.get("/dashboard/").content.decode()
    # the signed message is spent: sent again, from anywhere, it signs nobody in
    again = browser("198.51.100.21")
    ask(again, wallet.address)
    status, body = post(again, LOGIN, {"message": message, "signature": sign(message, wallet)})
    assert status == 404 and body["error"]["code"] == "siwe_unknown_nonce"
    assert "_auth_user_id" not in again.session


def test_next_must_stay_on_this_site() -> None:
    wallet = Account.create()
    linked_user(wallet)
    client = browser()
    message = ask(client, wallet.address)
    body = {"message": message, "signature": sign(message, wallet), "next": "https://evil.example/"}
    assert post(client, LOGIN, body) == (200, {"redirect": "/dashboard/"})


def test_a_wallet_no_account_has_linked_signs_nobody_in() -> None:
    wallet = Account.create()
    client = browser()
    message = ask(client, wallet.address)
    status, body = post(client, LOGIN, {"message": message, "signature": sign(message, wallet)})
    assert status == 404 and body["error"]["code"] == "wallet_not_linked"
    assert "link the wallet on your account page" in body["error"]["message"]
    assert "_auth_user_id" not in client.session
    assert SiweChallenge.objects.get().used_at is not None  # spent all the same


def test_a_challenge_another_browser_asked_for_is_refused() -> None:
    """Login CSRF: an attacker signs a challenge for its own linked wallet and has a victim's
    browser post it: the victim's session never asked for that nonce."""
    attacker_wallet = Account.create()
    linked_user(attacker_wallet)
    attacker, victim = browser("198.51.100.22"), browser("198.51.100.23")
    message = ask(attacker, attacker_wallet.address)
    ask(victim, Account.create().address)  # the victim's own pending challenge does not help either
    status, body = post(victim, LOGIN, {"message": message, "signature": sign(message, attacker_wallet)})
    assert status == 404 and body["error"]["code"] == "siwe_unknown_nonce"
    assert "_auth_user_id" not in victim.session


def test_link_and_sign_in_challenges_are_not_interchangeable() -> None:
    wallet = Account.create()
    user = f.client_user()
    api = f.api(user, f.CLIENT)
    link_message = api.post("/api/v1/wallets/challenge/", {"address": wallet.address}, format="json").json()["message"]
    client = browser()
    ask(client, wallet.address)
    Wallet.objects.create(user=user, address=wallet.address)
    status, body = post(client, LOGIN, {"message": link_message, "signature": sign(link_message, wallet)})
    assert status == 404 and body["error"]["code"] == "siwe_unknown_nonce"
    # and a sign-in challenge cannot link a wallet
    Wallet.objects.all().delete()
    sign_in_message = ask(browser("198.51.100.24"), wallet.address)
    linked = api.post(
        "/api/v1/wallets/", {"message": sign_in_message, "signature": sign(sign_in_message, wallet)}, format="json"
    )
    assert linked.status_code == 404 and linked.json()["error"]["code"] == "siwe_unknown_nonce"
    assert not Wallet.objects.exists()


@pytest.mark.parametrize("fault", ["another key", "expired", "altered"])
def test_a_bad_signature_or_message_signs_nobody_in(fault: str) -> None:
    wallet = Account.create()
    linked_user(wallet)
    client = browser()
    message = ask(client, wallet.address)
    signer = Account.create() if fault == "another key" else wallet
    if fault == "expired":
        SiweChallenge.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    if fault == "altered":
        message = message.replace("Sign in to GPU Market", "Sign in to GPU Markets")
    status, body = post(client, LOGIN, {"message": message, "signature": sign(message, signer)})
    expected = {"another key": "invalid_signature", "expired": "siwe_expired", "altered": "siwe_altered"}[fault]
    assert status == 400 and body["error"]["code"] == expected
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (CHALLENGE, {"address": "0x1234"}, "address"),
        (CHALLENGE, {"address": "0x" + "1" * 40, "chain_id": "one"}, "chain_id"),
        (CHALLENGE, {"address": "0x" + "1" * 40, "chain_id": 0}, "chain_id"),
        (CHALLENGE, [], None),
        (LOGIN, {"message": "hello", "signature": "0x" + "a" * 130}, "message"),
        (LOGIN, {"message": 7, "signature": "0x"}, "message"),
        (LOGIN, {}, "message"),
        (LOGIN, "not an object", None),
    ],
)
def test_bad_input_is_a_400_in_the_error_shape(path: str, body: object, field: str | None) -> None:
    client = browser()
    status, answer = post(client, path, body)
    assert status == 400, answer
    assert set(answer["error"]) == {"code", "message", "fields"}
    if field is not None:
        assert field in answer["error"]["fields"]
    assert not SiweChallenge.objects.exists()
    garbled = client.post(
        path, b"{not json", content_type="application/json", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value
    )
    assert garbled.status_code == 400 and garbled.json()["error"]["code"] == "malformed_request"
    assert client.get(path).status_code == 405


def test_both_steps_need_the_csrf_token() -> None:
    client = browser()
    for path in (CHALLENGE, LOGIN):
        refused = client.post(path, json.dumps({"address": "0x" + "1" * 40}), content_type="application/json")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert not SiweChallenge.objects.exists()


def test_failures_count_toward_the_address_lockout(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOGIN_FAILURES_PER_ADDRESS = 2
    wallet = Account.create()
    linked_user(wallet)
    client = browser("198.51.100.30")
    for _ in range(2):
        message = ask(client, wallet.address)
        assert post(client, LOGIN, {"message": message, "signature": sign(message, Account.create())})[0] == 400
    status, body = post(client, CHALLENGE, {"address": wallet.address})
    assert status == 429 and body["error"]["code"] == "too_many_attempts"
    # even the right signature is not checked while locked: no oracle
    assert post(client, LOGIN, {"message": "x", "signature": "y"})[0] == 429
    # and a password login from that address is locked too
    password = Client(REMOTE_ADDR="198.51.100.30").post("/accounts/login/", {"username": "a", "password": "b"})
    assert password.status_code == 429
    # another address is not
    assert post(browser("198.51.100.31"), CHALLENGE, {"address": wallet.address})[0] == 201


def test_one_address_may_ask_for_a_bounded_number_of_challenges(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SIWE_CHALLENGES_PER_ADDRESS = 3
    client = browser("198.51.100.40")
    codes = [post(client, CHALLENGE, {"address": Account.create().address})[0] for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    assert SiweChallenge.objects.count() == 3


def test_unlink_a_wallet_from_the_account_page() -> None:
    wallet = Account.create()
    user, other = linked_user(wallet), f.client_user()
    page = Client()
    page.force_login(other)
    # someone else's wallet: nothing happens, and the page says so
    answer = page.post(f"/account/wallets/{wallet.address}/unlink/", follow=True)
    assert answer.status_code == 200 and "No such wallet." in answer.content.decode()
    page.force_login(user)
    answer = page.post(f"/account/wallets/{wallet.address}/unlink/", follow=True)
    assert f"Wallet {wallet.address} unlinked." in answer.content.decode()
    assert not Wallet.objects.exists()
    assert page.get(f"/account/wallets/{wallet.address}/unlink/").status_code == 405
    bad = page.post("/account/wallets/0xnot-an-address/unlink/", follow=True)
    assert bad.status_code == 200 and "Invalid address." in bad.content.decode()


def test_long_expired_challenges_are_forgotten() -> None:
    from chain import tasks, wallets

    now = timezone.now()
    for user in (None, f.client_user()):
        wallets.siwe_challenge(user=user, address=Account.create().address, domain="d", uri="https://d/", chain_id=1)
    old, recent = SiweChallenge.objects.order_by("id")
    SiweChallenge.objects.filter(pk=old.pk).update(expires_at=now - timedelta(hours=1, seconds=1))
    SiweChallenge.objects.filter(pk=recent.pk).update(expires_at=now - timedelta(minutes=59))
    assert wallets.challenges_purge(now=now) == 1
    assert list(SiweChallenge.objects.values_list("pk", flat=True)) == [recent.pk]
    assert tasks.purge_challenges() == 0  # the task runs the same, with the clock
