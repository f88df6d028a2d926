"""Demo credit: money without a card on demonstration servers (``DEMO_CREDIT_CENTS`` per account),
and who may add money off chain at all when the escrow is on chain."""

import pytest

from chain.models import ContractDeployment, Wallet
from ledger.models import LedgerAccount
from tests import factories as f
from tests.factories import USD
from tests.web.test_pages import browser, post

pytestmark = pytest.mark.django_db


def balance(user) -> int:  # type: ignore[no-untyped-def]
    row = LedgerAccount.objects.filter(owner=user, kind=LedgerAccount.Kind.CLIENT_BALANCE).first()
    return row.balance if row else 0


def test_demo_credit_is_off_unless_configured(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEMO_CREDIT_CENTS = 0
    user = f.client_user(balance=0)
    api = f.api(user, f.CLIENT)
    response = api.post("/api/v1/account/demo-credits/", {"amount_cents": 500}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "demo_credit_off"
    assert api.get("/api/v1/account/demo-credits/").json() == {"left_cents": 0}
    assert balance(user) == 0


def test_demo_credit_adds_to_the_balance_up_to_its_limit(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEMO_CREDIT_CENTS = 10_000
    user, other = f.client_user(balance=0), f.client_user(balance=0)
    api = f.api(user, f.CLIENT)
    added = api.post("/api/v1/account/demo-credits/", {"amount_cents": 7_500}, format="json")
    assert added.status_code == 201 and added.json() == {"credited_cents": 7_500, "left_cents": 2_500}
    assert balance(user) == 75 * USD
    too_much = api.post("/api/v1/account/demo-credits/", {"amount_cents": 2_501}, format="json")
    assert too_much.status_code == 400 and too_much.json()["error"]["code"] == "demo_credit_exhausted"
    assert too_much.json()["error"]["fields"]["amount_cents"] == ["At most $25.00 of demo credit is left."]
    for bad in (0, -5, "ten", None, 10**12):
        refused = api.post("/api/v1/account/demo-credits/", {"amount_cents": bad}, format="json")
        assert refused.status_code == 400 and "amount_cents" in refused.json()["error"]["fields"], bad
    assert api.post("/api/v1/account/demo-credits/", {"amount_cents": 2_500}, format="json").status_code == 201
    assert balance(user) == 100 * USD
    # the limit is per account
    assert f.api(other, f.CLIENT).get("/api/v1/account/demo-credits/").json() == {"left_cents": 10_000}
    assert f.api(f.provider().user, f.PROVIDER).post(
        "/api/v1/account/demo-credits/", {"amount_cents": 1}, format="json"
    ).status_code in (403, 401)


def test_with_the_escrow_on_chain_a_wallet_funds_its_own_balance(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEMO_CREDIT_CENTS = 10_000
    settings.ESCROW_BACKEND = "chain"
    settings.CHAIN_BACKEND = "rpc"
    settings.CHAIN_CUSTODY_KEY = ""
    walletless, with_wallet = f.client_user(balance=0), f.client_user(balance=0)
    Wallet.objects.create(user=with_wallet, address="0x" + "ab" * 20)
    refused = f.api(with_wallet, f.CLIENT).post("/api/v1/account/demo-credits/", {"amount_cents": 100}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "wallet_funded"
    no_custody = f.api(walletless, f.CLIENT).post("/api/v1/account/demo-credits/", {"amount_cents": 100}, format="json")
    assert no_custody.status_code == 400 and no_custody.json()["error"]["code"] == "payments_not_configured"
    settings.CHAIN_BACKEND = "embedded"  # the in-process chain always has its custody account
    ok = f.api(walletless, f.CLIENT).post("/api/v1/account/demo-credits/", {"amount_cents": 100}, format="json")
    assert ok.status_code == 201
    page = browser(with_wallet).get("/account/top-up/").content.decode()
    # not a dead end: how to deposit from the wallet, to which contract, and where the wallets are
    assert "deposit to the escrow contract" in page and "<code>deposit(amount)</code>" in page
    assert "0x" + "ab" * 20 in page and 'href="/account/#wallets"' in page
    ContractDeployment.objects.create(chain_id=31337, name="Escrow", address="0x" + "e5" * 20)
    ContractDeployment.objects.create(chain_id=31337, name="DevUSD", address="0x" + "d0" * 20)
    page = browser(with_wallet).get("/account/top-up/").content.decode()
    assert "0x" + "e5" * 20 in page and "(chain 31337)" in page and "0x" + "d0" * 20 in page
    assert "cents" not in page


def test_the_top_up_page_offers_demo_credit_without_card_payments(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEMO_CREDIT_CENTS = 5_000
    settings.STRIPE_SECRET_KEY = settings.STRIPE_PUBLISHABLE_KEY = ""
    user = f.client_user(balance=0)
    c = browser(user)
    page = c.get("/account/top-up/").content.decode()
    assert "Add demo credit" in page and "You can still add $50.00" in page
    for amount, problem in (
        ("abc", "An amount in dollars"),
        ("0", "More than $0"),
        ("60", "At most $50.00 of demo credit is left."),
    ):
        response = post(c, "/account/top-up/", {"amount": amount})
        assert response.status_code == 400 and problem in response.content.decode(), amount
        assert f'value="{amount}"' in response.content.decode()
    done = post(c, "/account/top-up/", {"amount": "20"})
    assert done.status_code == 302 and done["Location"] == "/account/"
    account = c.get("/account/").content.decode()
    assert "Added $20.00 of demo credit." in account and "$20.00" in account
    assert balance(user) == 20 * USD
    assert "You can still add $30.00" in c.get("/account/top-up/").content.decode()
