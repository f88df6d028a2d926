"""Linking a wallet with Sign-In with Ethereum: the user proves the address by a signature."""

from datetime import timedelta

import pytest
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3

from chain.models import SiweChallenge, Wallet
from tests import factories as f

pytestmark = pytest.mark.django_db


def sign(message: str, account) -> str:  # type: ignore[no-untyped-def]
    return Web3.to_hex(account.sign_message(encode_defunct(text=message)).signature)


@pytest.fixture
def wallet():  # type: ignore[no-untyped-def]
    return Account.create()


def challenge(api, address: str) -> dict:  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/wallets/challenge/", {"address": address, "chain_id": 31337}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def link(api, message: str, signer):  # type: ignore[no-untyped-def]
    return api.post("/api/v1/wallets/", {"message": message, "signature": sign(message, signer)}, format="json")


def test_link_a_wallet_by_signing_the_challenge(wallet) -> None:  # type: ignore[no-untyped-def]
    api = f.api(f.client_user(), f.CLIENT)
    issued = challenge(api, wallet.address.lower())
    assert issued["address"] == wallet.address  # checksummed
    assert "wants you to sign in with your Ethereum account" in issued["message"]
    assert f"Nonce: {issued['nonce']}" in issued["message"] and "Chain ID: 31337" in issued["message"]
    response = link(api, issued["message"], wallet)
    assert response.status_code == 201, response.json()
    assert response.json()["address"] == wallet.address
    assert [w["address"] for w in api.get("/api/v1/wallets/").json()["results"]] == [wallet.address]
    # the same signed message cannot be used twice
    again = link(api, issued["message"], wallet)
    assert again.status_code == 409 and again.json()["error"]["code"] == "siwe_used"
    assert api.delete(f"/api/v1/wallets/{wallet.address}/").status_code == 204
    assert not Wallet.objects.exists()


def test_a_signature_by_another_key_is_refused(wallet) -> None:  # type: ignore[no-untyped-def]
    api = f.api(f.client_user(), f.CLIENT)
    issued = challenge(api, wallet.address)
    response = link(api, issued["message"], Account.create())
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_signature"
    assert not Wallet.objects.exists()


def test_an_expired_challenge_is_refused(wallet) -> None:  # type: ignore[no-untyped-def]
    api = f.api(f.client_user(), f.CLIENT)
    issued = challenge(api, wallet.address)
    SiweChallenge.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = link(api, issued["message"], wallet)
    assert response.status_code == 400 and response.json()["error"]["code"] == "siwe_expired"


def test_an_altered_message_is_refused(wallet) -> None:  # type: ignore[no-untyped-def]
    api = f.api(f.client_user(), f.CLIENT)
    issued = challenge(api, wallet.address)
    altered = issued["message"].replace("Chain ID: 31337", "Chain ID: 1")
    response = link(api, altered, wallet)
    assert response.status_code == 400 and response.json()["error"]["code"] == "siwe_altered"


def test_someone_elses_challenge_is_unknown_to_you(wallet) -> None:  # type: ignore[no-untyped-def]
    issued = challenge(f.api(f.client_user(), f.CLIENT), wallet.address)
    thief = f.api(f.client_user(), f.CLIENT)
    response = link(thief, issued["message"], wallet)
    assert response.status_code == 404


def test_one_address_belongs_to_one_account(wallet) -> None:  # type: ignore[no-untyped-def]
    first, second = f.api(f.client_user(), f.CLIENT), f.api(f.client_user(), f.CLIENT)
    for api, expected in ((first, 201), (second, 409)):
        issued = challenge(api, wallet.address)
        response = link(api, issued["message"], wallet)
        assert response.status_code == expected


@pytest.mark.parametrize(
    "body",
    [
        {"address": "0x123"},
        {"address": "not an address"},
        {"address": "0x" + "g" * 40},
        {"address": "0x" + "a" * 40, "chain_id": 0},
        {},
    ],
)
def test_bad_challenge_requests(body: dict) -> None:
    response = f.api(f.client_user(), f.CLIENT).post("/api/v1/wallets/challenge/", body, format="json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"message": "hello", "signature": "0x" + "a" * 130},
        {"message": "x", "signature": "0x1234"},
        {"message": "x"},
        {"signature": "0x" + "a" * 130},
    ],
)
def test_bad_link_requests(body: dict) -> None:
    response = f.api(f.client_user(), f.CLIENT).post("/api/v1/wallets/", body, format="json")
    assert response.status_code == 400
    assert not Wallet.objects.exists()
