"""Clients without a wallet (they pay by card) with the escrow on chain: the marketplace's custody
account holds their money in the contract and is their leases' client there. Run on the in-process
EVM (the token's owner mints what custody lacks, as on any development chain) and on Anvil (custody
must be sent tokens first, as in production)."""

import pytest
from eth_account import Account

from chain.models import ChainTransaction, Wallet
from chain.transactions import ChainReverted
from leases import tasks
from leases.escrow import chain as escrow
from leases.models import Lease, LeaseTopUp
from ledger import services as ledger
from ledger.deposits import chain_deposits_apply
from ledger.models import LedgerAccount
from marketplace import services as market
from payments.services import CARD_SOURCE
from tests import factories as f
from tests.chain.mined import mined
from tests.chain.test_wallets import challenge, link
from tests.factories import USD
from tests.leases.test_escrow_on_chain import advance, ledger_balance, wallet_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def custody_chain(request, chain, settings):  # type: ignore[no-untyped-def]
    """The chain with a custody account: its own on the in-process EVM, Anvil's account 4 on Anvil."""
    if chain.custody is None:
        from chain.adapter import escrow_client

        settings.CHAIN_CUSTODY_KEY = request.getfixturevalue("anvil").accounts[4].key.hex()
        chain = escrow_client()
    assert chain.custody_address is not None
    return chain


def send_custody_tokens(chain, amount: int) -> None:  # type: ignore[no-untyped-def]
    """What the marketplace's treasury does off the platform: buy tokens for the custody account."""
    if chain.treasury is None:
        mined(chain.token.functions.mint(chain.custody_address, amount), chain.w3.eth.accounts[0])


def card_paid_client(amount: int):  # type: ignore[no-untyped-def]
    user = f.client_user(balance=0)
    ledger.deposit(user=user, amount=amount, key=f"card:{user.pk}", source=CARD_SOURCE)
    return user


def provider_with_wallet(chain):  # type: ignore[no-untyped-def]
    provider = f.provider()
    Wallet.objects.create(user=provider.user, address=wallet_of(chain, 6))
    return provider


def test_a_card_paid_lease_is_funded_through_custody_and_its_refund_comes_back(
    custody_chain, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    chain = custody_chain
    send_custody_tokens(chain, 50 * USD)
    client_user, provider = card_paid_client(50 * USD), provider_with_wallet(chain)
    assert escrow.reconcile() == [f"custody: escrow holds 0, clients without a wallet are owed {50 * USD}"]
    tasks.sync_chain()  # the periodic sync puts the card money in the escrow
    assert chain.balance_of(chain.custody_address) == 50 * USD
    assert escrow.reconcile() == []

    order = f.order(client_user, duration_hours=2, max_price_per_hour=10 * USD)
    bid = f.bid(provider, order, 3 * USD)
    api = f.api(client_user, f.CLIENT)
    with django_capture_on_commit_callbacks(execute=True):
        accepted = api.post(f"/api/v1/orders/{order.pk}/accept/", {"bid": bid.pk}, format="json")
    assert accepted.status_code == 201, accepted.json()
    lease = Lease.objects.get()
    assert lease.status == Lease.Status.FUNDED, lease.close_reason
    on_chain = chain.lease(lease.pk)
    assert lease.deposit == 6 * USD
    assert (on_chain.client, on_chain.balance) == (chain.custody_address, 6 * USD)
    assert chain.balance_of(chain.custody_address) == ledger_balance(client_user) == 44 * USD
    assert escrow.reconcile() == []
    # custody allowed the operator exactly this deposit, which the lease used up: the operator's key
    # alone cannot lock the card-paid money anyone else holds in custody
    assert chain.operator_allowance(chain.custody_address) == 0
    # the terms the contract holds the lease to are recorded, and the statement shows them
    terms = api.get(f"/api/v1/leases/{lease.pk}/statement/").json()["terms"]
    assert terms == {
        "price_per_hour": 3 * USD,
        "deposit": 6 * USD,
        "duration_hours": 2,
        "platform_fee_bps": 0,
        "payer": chain.custody_address,
        "payee": wallet_of(chain, 6),
        "held_in_custody": True,
        "open_tx_hash": lease.open_tx_hash,
    }
    csv = api.get(f"/api/v1/leases/{lease.pk}/statement/?format=csv").content.decode()
    assert f"escrow_payer_custody,{chain.custody_address}" in csv and f"escrow_payee,{wallet_of(chain, 6)}" in csv
    page = " ".join(client_page(client_user).get("/account/").content.decode().split())
    assert "The marketplace holds this money for you." in page and "exactly its deposit" in page
    from chain import terms as t

    other = t.Acceptance(
        order.pk + 1, wallet_of(chain, 7), 1, 1, 1, chain.w3.eth.get_block("latest")["timestamp"] + 600
    )
    custody_signed = t.sign(other, key=chain.custody.key.hex(), chain_id=chain.chain_id, contract=chain.escrow.address)
    with pytest.raises(ChainReverted, match="operator allowance exceeded"):  # even on terms custody signed
        chain.open_lease(
            lease_id=999,
            order_id=other.order,
            client=chain.custody_address,
            provider=other.provider,
            price_per_hour=1,
            deposit=1,
            duration_hours=1,
            deadline=other.deadline,
            signature=custody_signed,
        )

    # a top-up of a card-paid lease comes from custody too, allowed for exactly its amount
    with django_capture_on_commit_callbacks(execute=True):
        topped = api.post(f"/api/v1/leases/{lease.pk}/top-ups/", {"amount": 3 * USD}, format="json")
    assert topped.status_code == 202, topped.json()
    assert LeaseTopUp.objects.get().status == LeaseTopUp.Status.CONFIRMED
    assert chain.lease(lease.pk).balance == 9 * USD
    assert chain.operator_allowance(chain.custody_address) == 0
    assert escrow.reconcile() == []

    advance(chain, 600)
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/v1/leases/{lease.pk}/close/")
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED
    assert lease.paid_to_provider + lease.refunded_to_client == 9 * USD
    assert lease.paid_to_provider == chain.claimable(wallet_of(chain, 6))
    assert ledger_balance(client_user) == chain.balance_of(chain.custody_address) == 50 * USD - lease.paid_to_provider
    assert escrow.reconcile() == []


def test_a_card_refund_leaves_custody_at_the_next_sync(custody_chain) -> None:  # type: ignore[no-untyped-def]
    chain = custody_chain
    send_custody_tokens(chain, 20 * USD)
    client_user = card_paid_client(20 * USD)
    assert escrow.custody_sync() == 20 * USD
    assert escrow.custody_sync() == 0  # once
    # the card holder got $5 back: the ledger takes it from the balance, custody gives it back
    balance = ledger.user_account(user=client_user, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    ledger.post(
        key="refund",
        kind="withdrawal",
        legs=[(balance, -5 * USD), (ledger.external_account(name=CARD_SOURCE), 5 * USD)],
    )
    assert escrow.reconcile() == [f"custody: escrow holds {20 * USD}, clients without a wallet are owed {15 * USD}"]
    assert escrow.custody_sync() == -5 * USD
    assert chain.balance_of(chain.custody_address) == 15 * USD
    assert chain.token.functions.balanceOf(chain.custody_address).call() >= 5 * USD
    assert escrow.reconcile() == []
    kinds = set(ChainTransaction.objects.filter(sender=chain.custody_address).values_list("kind", flat=True))
    assert {"custody_deposit", "custody_withdraw"} <= kinds


def test_the_custody_events_are_not_taken_for_a_users_deposits(custody_chain) -> None:  # type: ignore[no-untyped-def]
    from chain.indexer import index_events
    from chain.models import ChainEvent

    chain = custody_chain
    send_custody_tokens(chain, 7 * USD)
    card_paid_client(7 * USD)
    escrow.custody_sync()
    index_events(client=chain, confirmations=0)
    assert chain_deposits_apply() == 0
    assert not ChainEvent.objects.filter(name="Deposited", applied_at__isnull=True).exists()


def test_without_tokens_for_custody_the_lease_is_not_funded_and_the_client_keeps_its_money(
    settings, anvil, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import on_anvil

    settings.ESCROW_BACKEND = "chain"
    settings.CHAIN_CUSTODY_KEY = anvil.accounts[4].key.hex()
    chain = on_anvil(settings, anvil)
    client_user, provider = card_paid_client(10 * USD), provider_with_wallet(chain)
    order = f.order(client_user, duration_hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        market.order_accept(client=client_user, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    lease = Lease.objects.get()
    assert lease.status == Lease.Status.CLOSED and "send it tokens" in lease.close_reason
    assert ledger_balance(client_user) == 10 * USD and not chain.lease(lease.pk).open


def test_a_first_wallet_waits_until_custody_holds_nothing_for_the_client(settings) -> None:  # type: ignore[no-untyped-def]
    settings.ESCROW_BACKEND = "chain"
    client_user = card_paid_client(USD)
    api = f.api(client_user, f.CLIENT)
    wallet = Account.create()
    refused = link(api, challenge(api, wallet.address)["message"], wallet)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "balance_in_custody"
    assert not Wallet.objects.exists()
    balance = ledger.user_account(user=client_user, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    ledger.post(key="spent", kind="withdrawal", legs=[(balance, -USD), (ledger.external_account(name="x"), USD)])
    assert link(api, challenge(api, wallet.address)["message"], wallet).status_code == 201
    settings.ESCROW_BACKEND = "ledger"  # with the escrow in the ledger there is no custody: never refused
    other = f.api(card_paid_client(USD), f.CLIENT)
    second = Account.create()
    assert link(other, challenge(other, second.address)["message"], second).status_code == 201


def client_page(user):  # type: ignore[no-untyped-def]
    from django.test import Client

    page = Client()
    page.force_login(user)
    return page
