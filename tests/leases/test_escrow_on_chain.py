"""Leases with the escrow on chain (ESCROW_BACKEND=chain) on the in-process EVM, end to end:
deposit from a wallet → ledger balance → accept → funded on chain → close → paid and refunded
by the chain, with the ledger equal to the chain's balances."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chain import adapter as chain_adapter
from chain.evm import eth_tester_of
from chain.indexer import index_events
from chain.models import Wallet
from leases import services, tasks
from leases.escrow import chain as escrow
from leases.models import Lease, LeaseTopUp
from ledger.deposits import chain_deposits_apply
from ledger.models import LedgerAccount
from tests import factories as f
from tests.chain.mined import mined
from tests.conftest import on_anvil
from tests.factories import USD

pytestmark = pytest.mark.django_db(transaction=True)


def advance(client: chain_adapter.EscrowClient, seconds: int) -> None:
    """Let ``seconds`` pass on the chain."""
    if hasattr(client.w3.provider, "ethereum_tester"):
        eth_tester_of(client.w3).time_travel(client.w3.eth.get_block("latest")["timestamp"] + seconds)
    else:
        client.w3.provider.make_request("evm_increaseTime", [seconds])
        client.w3.provider.make_request("evm_mine", [])


def wallet_of(client: chain_adapter.EscrowClient, index: int) -> str:
    return client.w3.eth.accounts[index]


def fund_from_wallet(client: chain_adapter.EscrowClient, address: str, *, amount: int, allow: int) -> None:
    """What the client does in its own wallet: buy tokens, deposit them, let the operator lock them."""
    owner = client.w3.eth.accounts[0]
    mined(client.token.functions.mint(address, amount), owner)
    mined(client.token.functions.approve(client.escrow.address, 2**256 - 1), address)
    mined(client.escrow.functions.deposit(amount), address)
    mined(client.escrow.functions.approve_operator(allow), address)


def key_of(client: chain_adapter.EscrowClient, address: str) -> str:
    """The key of one of the chain's development accounts (the in-process chain's, or Anvil's)."""
    from eth_account import Account

    from chain.devnode import MNEMONIC
    from chain.evm import embedded_key

    index = client.w3.eth.accounts.index(address)
    if hasattr(client.w3.provider, "ethereum_tester"):
        return embedded_key(index)
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key.hex()


def signed(client: chain_adapter.EscrowClient, user, order, bid) -> dict:  # type: ignore[no-untyped-def]
    """What the client's wallet adds to its Accept: its signature of the bid's terms, where the API
    asks for one (on Anvil; the in-process chain's demo wallets are signed for by the marketplace)."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    typed = f.api(user, f.CLIENT).get(f"/api/v1/orders/{order.pk}/bids/{bid.pk}/terms/").json()["typed_data"]
    if typed is None:
        return {}
    wallet = Wallet.objects.filter(user=user).values_list("address", flat=True).first()
    signature = Account.sign_message(encode_typed_data(full_message=typed), key_of(client, wallet)).signature
    return {"signature": "0x" + signature.hex().removeprefix("0x"), "deadline": typed["message"]["deadline"]}


def ledger_balance(user) -> int:  # type: ignore[no-untyped-def]
    row = LedgerAccount.objects.filter(owner=user, kind=LedgerAccount.Kind.CLIENT_BALANCE).first()
    return row.balance if row else 0


def setup_parties(chain, *, allow: int):  # type: ignore[no-untyped-def]
    client_user = f.client_user(balance=0)
    provider = f.provider()
    Wallet.objects.create(user=client_user, address=wallet_of(chain, 5))
    Wallet.objects.create(user=provider.user, address=wallet_of(chain, 6))
    fund_from_wallet(chain, wallet_of(chain, 5), amount=100 * USD, allow=allow)
    index_events(client=chain, confirmations=0)
    assert chain_deposits_apply() == 1
    assert ledger_balance(client_user) == 100 * USD == chain.balance_of(wallet_of(chain, 5))
    return client_user, provider


def test_award_funds_the_lease_on_chain_and_close_books_what_the_chain_paid(
    chain, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    client_user, provider = setup_parties(chain, allow=100 * USD)
    order = f.order(client_user, duration_hours=2, max_price_per_hour=10 * USD)
    bid = f.bid(provider, order, 3_600_000)
    api = f.api(client_user, f.CLIENT)
    with django_capture_on_commit_callbacks(execute=True):
        accepted = api.post(
            f"/api/v1/orders/{order.pk}/accept/",
            {"bid": bid.pk, **signed(chain, client_user, order, bid)},
            format="json",
        )
    assert accepted.status_code == 201 and accepted.json()["status"] == "funding"
    lease = Lease.objects.get()
    assert lease.status == Lease.Status.FUNDED and lease.open_tx_hash.startswith("0x")
    on_chain = chain.lease(lease.pk)
    assert (on_chain.open, on_chain.balance, on_chain.price_per_hour) == (True, lease.deposit, 3_600_000)
    assert ledger_balance(client_user) == chain.balance_of(wallet_of(chain, 5)) == 100 * USD - lease.deposit

    # let half an hour pass on the chain and in the accrual, then close as the client
    advance(chain, 1800)
    Lease.objects.filter(pk=lease.pk).update(started_at=timezone.now() - timedelta(seconds=1800))
    lease.refresh_from_db()
    f.usage(lease, seconds=1740)  # the provider's agent reported it running
    with django_capture_on_commit_callbacks(execute=True):
        closing = api.post(f"/api/v1/leases/{lease.pk}/close/")
    assert closing.status_code == 200 and closing.json()["status"] == "closing"
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED and lease.close_tx_hash.startswith("0x")
    # the ledger holds exactly what the chain did
    assert lease.paid_to_provider == chain.claimable(wallet_of(chain, 6)) > 0
    assert lease.paid_to_provider <= 3_600_000 * 1900 // 3600
    assert ledger_balance(client_user) == chain.balance_of(wallet_of(chain, 5)) == 100 * USD - lease.paid_to_provider
    earnings = LedgerAccount.objects.get(owner=provider.user, kind=LedgerAccount.Kind.PROVIDER_EARNINGS).balance
    assert earnings == lease.paid_to_provider
    assert (
        f.api(client_user, f.CLIENT).get(f"/api/v1/leases/{lease.pk}/").json()["close_tx_hash"] == lease.close_tx_hash
    )


def test_a_lease_the_escrow_refuses_is_closed_and_its_deposit_returned(
    chain, django_capture_on_commit_callbacks, receiver
) -> None:  # type: ignore[no-untyped-def]
    client_user, provider = setup_parties(chain, allow=USD)  # the client let the operator lock only $1
    for user, scope in ((client_user, f.CLIENT), (provider.user, f.PROVIDER)):
        f.api(user, scope).post("/api/v1/webhooks/", {"url": receiver.url, "events": ["lease.*"]}, format="json")
    order = f.order(client_user, duration_hours=2)
    bid = f.bid(provider, order, 3 * USD)
    with django_capture_on_commit_callbacks(execute=True):
        f.api(client_user, f.CLIENT).post(
            f"/api/v1/orders/{order.pk}/accept/",
            {"bid": bid.pk, **signed(chain, client_user, order, bid)},
            format="json",
        )
    lease = Lease.objects.get()
    assert lease.status == Lease.Status.CLOSED
    assert "operator allowance exceeded" in lease.close_reason
    assert lease.refunded_to_client == lease.deposit and lease.paid_to_provider == 0
    assert ledger_balance(client_user) == 100 * USD == chain.balance_of(wallet_of(chain, 5))
    assert provider.gpus.get().reserved == 0
    assert not chain.lease(lease.pk).open
    # both sides hear that it closed, and why (it used to close without a word)
    closed = [e["data"] for e in receiver.events() if e["type"] == "lease.closed"]
    assert [(c["id"], c["status"], c["refunded_to_client"]) for c in closed] == [
        (lease.pk, "closed", lease.deposit)
    ] * 2
    assert "operator allowance exceeded" in closed[0]["close_reason"]


def test_a_crash_after_the_chain_confirmed_is_repaired_by_the_sync(chain) -> None:  # type: ignore[no-untyped-def]
    client_user, provider = setup_parties(chain, allow=100 * USD)
    order = f.order(client_user)
    from marketplace import services as market

    bid = f.bid(provider, order, USD)
    lease = market.order_accept(
        client=client_user, order_id=order.pk, bid_id=bid.pk, **signed(chain, client_user, order, bid)
    )
    # the escrow took the deposit, but the worker died before the database recorded it
    Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.FUNDING, open_tx_hash="")
    response = f.api(client_user, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "lease_funding"
    tasks.sync_chain()  # the periodic sync retries; the contract says "lease exists", and it is ours
    lease.refresh_from_db()
    assert lease.status == Lease.Status.FUNDED and lease.open_tx_hash.startswith("0x")
    assert chain.lease(lease.pk).balance == lease.deposit
    assert ledger_balance(client_user) == chain.balance_of(wallet_of(chain, 5))


def test_deposits_of_unlinked_wallets_wait_until_the_wallet_is_linked(chain) -> None:  # type: ignore[no-untyped-def]
    client_user = f.client_user(balance=0)
    fund_from_wallet(chain, wallet_of(chain, 7), amount=5 * USD, allow=0)
    index_events(client=chain, confirmations=0)
    assert chain_deposits_apply() == 0
    Wallet.objects.create(user=client_user, address=wallet_of(chain, 7))
    assert chain_deposits_apply() == 1
    assert chain_deposits_apply() == 0  # once
    assert ledger_balance(client_user) == 5 * USD


def test_reconcile_finds_no_difference_after_a_lease_and_reports_one_when_the_books_are_off(
    chain, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    import io

    from django.core.management import CommandError, call_command

    from ledger import services as ledger

    client_user, provider = setup_parties(chain, allow=100 * USD)
    order = f.order(client_user, duration_hours=1)
    bid = f.bid(provider, order, 3_600_000)
    api = f.api(client_user, f.CLIENT)
    with django_capture_on_commit_callbacks(execute=True):
        api.post(
            f"/api/v1/orders/{order.pk}/accept/",
            {"bid": bid.pk, **signed(chain, client_user, order, bid)},
            format="json",
        )
    advance(chain, 600)
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/v1/leases/{Lease.objects.get().pk}/close/")
    out = io.StringIO()
    call_command("chain_reconcile", stdout=out)
    assert "agree" in out.getvalue()
    assert escrow.reconcile() == []
    # money that appears in the ledger but not on chain is reported
    ledger.deposit(user=client_user, amount=USD, key="off-the-books")
    with pytest.raises(CommandError, match="1 differences"):
        call_command("chain_reconcile", stdout=io.StringIO())


def test_commands_never_start_a_second_in_process_chain(settings) -> None:  # type: ignore[no-untyped-def]
    import io

    from django.core.management import CommandError, call_command

    settings.ESCROW_BACKEND = "chain"
    settings.CHAIN_BACKEND = "embedded"
    chain_adapter._embedded.clear()
    for command in ("chain_reconcile", "chain_index"):
        with pytest.raises(CommandError, match="inside the Celery worker"):
            call_command(command, stdout=io.StringIO())
    assert "client" not in chain_adapter._embedded


def test_an_unreachable_chain_leaves_the_lease_funding_until_it_is_back(settings, anvil) -> None:  # type: ignore[no-untyped-def]
    from celery.exceptions import Retry

    from chain.devnode import free_port
    from chain.transactions import ChainUnavailable
    from marketplace import services as market

    settings.ESCROW_BACKEND = "chain"
    settings.CHAIN_RPC_RETRIES = 1
    client = on_anvil(settings, anvil)
    client_user, provider = setup_parties(client, allow=100 * USD)
    order = f.order(client_user)
    bid = f.bid(provider, order, USD)
    terms = signed(client, client_user, order, bid)  # the client signed while the node answered

    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"  # the node goes away
    with pytest.raises(Retry, match="chain node did not answer"):
        # the award itself commits; its task finds no node and Celery schedules a retry
        market.order_accept(client=client_user, order_id=order.pk, bid_id=bid.pk, **terms)
    lease = Lease.objects.get()
    assert lease.status == Lease.Status.FUNDING and not lease.open_tx_hash
    with pytest.raises(ChainUnavailable):
        tasks.sync_chain()
    assert Lease.objects.get().status == Lease.Status.FUNDING

    settings.CHAIN_RPC_URL = anvil.url  # the node is back: the periodic sync finishes the job, once
    tasks.sync_chain()
    tasks.sync_chain()
    lease.refresh_from_db()
    assert lease.status == Lease.Status.FUNDED
    assert client.lease(lease.pk).balance == lease.deposit
    assert ledger_balance(client_user) == client.balance_of(wallet_of(client, 5))
    assert escrow.reconcile() == []


def ran_for(chain, lease: Lease, seconds: int) -> None:  # type: ignore[no-untyped-def]
    """The lease has been running for ``seconds``, on the chain's clock and in the database."""
    advance(chain, seconds)
    Lease.objects.filter(pk=lease.pk).update(
        started_at=timezone.now() - timedelta(seconds=seconds), status=Lease.Status.RUNNING
    )
    lease.refresh_from_db()


def test_the_settlement_tick_pays_on_chain_and_the_ledger_follows(chain, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    client_user, provider, lease = funded_lease(chain, django_capture_on_commit_callbacks, allow=100 * USD)
    ran_for(chain, lease, 1200)
    f.usage(lease, seconds=600)

    assert services.leases_settle() == 1
    lease.refresh_from_db()
    provider_wallet = wallet_of(chain, 6)
    assert lease.settled_amount == 600_000 == chain.claimable(provider_wallet)
    assert LedgerAccount.objects.get(lease=lease).balance == chain.lease(lease.pk).balance == lease.deposit - 600_000
    assert services.leases_settle() == 0  # nothing new: nothing sent

    # the same events indexed later (a worker that lost the receipt) change nothing
    index_events(client=chain, confirmations=0)
    assert escrow.chain_settlements_apply() == 0

    advance(chain, 300)  # the chain pays a close at most the rate since the last settlement
    with django_capture_on_commit_callbacks(execute=True):
        f.api(client_user, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED
    assert lease.paid_to_provider == chain.claimable(provider_wallet) > 600_000  # settled, then the tail
    assert lease.paid_to_provider + lease.refunded_to_client == lease.deposit
    assert ledger_balance(client_user) == chain.balance_of(wallet_of(chain, 5))
    assert escrow.reconcile() == []

    # the provider claims from its wallet; the earnings view follows the indexed claim
    mined(chain.escrow.functions.claim(), provider_wallet)
    index_events(client=chain, confirmations=0)
    earnings = f.api(provider.user, f.PROVIDER).get("/api/v1/provider/earnings/").json()
    assert (earnings["earned"], earnings["claimed"], earnings["claimable"]) == (
        lease.paid_to_provider,
        lease.paid_to_provider,
        0,
    )
    assert chain.claimable(provider_wallet) == 0 and escrow.reconcile() == []


def test_the_platform_fee_the_escrow_fixed_for_a_lease_is_split_off_in_the_books_as_on_chain(
    chain, settings, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    settings.PLATFORM_FEE_BPS = 0  # the escrow's fee is the one that counts
    platform = wallet_of(chain, 8)  # the platform's own address, linked to no user
    mined(chain.escrow.functions.set_fee(500, platform), chain.w3.eth.accounts[0])
    client_user, provider, lease = funded_lease(chain, django_capture_on_commit_callbacks, allow=100 * USD)
    assert lease.platform_fee_bps == 500 == chain.lease(lease.pk).fee_bps
    ran_for(chain, lease, 1200)
    f.usage(lease, seconds=601)

    assert services.leases_settle() == 1
    lease.refresh_from_db()
    provider_wallet = wallet_of(chain, 6)
    assert (lease.settled_amount, lease.platform_fee) == (601_000, 30_050)
    assert chain.claimable(provider_wallet) == 601_000 - 30_050
    assert chain.claimable(platform) == 30_050
    assert LedgerAccount.objects.get(kind=LedgerAccount.Kind.PLATFORM_FEES).balance == 30_050

    advance(chain, 300)
    with django_capture_on_commit_callbacks(execute=True):
        f.api(client_user, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED
    assert lease.platform_fee == chain.claimable(platform) > 30_050  # the close's settlement paid it too
    assert lease.paid_to_provider - lease.platform_fee == chain.claimable(provider_wallet)
    assert escrow.reconcile() == []

    # the platform claims its fees like a provider; the books still agree with the chain
    mined(chain.escrow.functions.claim(), platform)
    index_events(client=chain, confirmations=0)
    assert chain.claimable(platform) == 0 and escrow.reconcile() == []
    earnings = f.api(provider.user, f.PROVIDER).get("/api/v1/provider/earnings/").json()
    assert (earnings["earned"], earnings["platform_fees"]) == (
        lease.paid_to_provider - lease.platform_fee,
        lease.platform_fee,
    )


def funded_lease(chain, django_capture_on_commit_callbacks, *, allow: int):  # type: ignore[no-untyped-def]
    client_user, provider = setup_parties(chain, allow=allow)
    order = f.order(client_user, duration_hours=2, max_price_per_hour=10 * USD)
    bid = f.bid(provider, order, 3_600_000)
    with django_capture_on_commit_callbacks(execute=True):
        f.api(client_user, f.CLIENT).post(
            f"/api/v1/orders/{order.pk}/accept/",
            {"bid": bid.pk, **signed(chain, client_user, order, bid)},
            format="json",
        )
    lease = Lease.objects.get()
    assert lease.status == Lease.Status.FUNDED
    return client_user, provider, lease


def test_a_top_up_reaches_the_escrow_and_resumes_a_lease_out_of_funds(
    chain, django_capture_on_commit_callbacks, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    client_user, _provider, lease = funded_lease(chain, django_capture_on_commit_callbacks, allow=100 * USD)
    Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.RUNNING, ends_at=timezone.now())
    services.leases_close_finished()
    lease.refresh_from_db()
    assert lease.status == Lease.Status.INSUFFICIENT_FUNDS
    api = f.api(client_user, f.CLIENT)
    queued: list[tuple[str, int]] = []
    monkeypatch.setattr(escrow, "_enqueue", lambda task, object_id: queued.append((task.name, object_id)))
    pending = api.post(f"/api/v1/leases/{lease.pk}/top-ups/", {"amount": 2 * USD}, format="json")
    assert pending.status_code == 202 and pending.json()["status"] == "pending"
    # reserved in the ledger, not yet in the contract: the books still reconcile, and nothing closes meanwhile
    assert escrow.reconcile() == []
    closing = api.post(f"/api/v1/leases/{lease.pk}/close/")
    assert closing.status_code == 409 and closing.json()["error"]["code"] == "lease_topping_up"
    again = api.post(f"/api/v1/leases/{lease.pk}/top-ups/", {"amount": USD}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "top_up_pending"
    assert services.leases_close_finished(now=timezone.now() + timedelta(hours=1)) == 0  # grace over, top-up on its way
    top_up = LeaseTopUp.objects.get()
    assert queued == [("leases.tasks.top_up_lease_on_chain", top_up.pk)]
    escrow.tasks.top_up_lease_on_chain(top_up.pk)  # the worker picks it up
    top_up.refresh_from_db()
    lease.refresh_from_db()
    assert top_up.status == LeaseTopUp.Status.CONFIRMED and top_up.tx_hash.startswith("0x")
    assert lease.status == Lease.Status.DEPLOYING and lease.deposit == 9_200_000
    assert chain.lease(lease.pk).balance == lease.deposit == LedgerAccount.objects.get(lease=lease).balance
    assert ledger_balance(client_user) == chain.balance_of(wallet_of(chain, 5))
    escrow.tasks.top_up_lease_on_chain(top_up.pk)  # a retried task sends nothing twice
    assert chain.lease(lease.pk).balance == lease.deposit
    assert escrow.reconcile() == []


def test_a_top_up_the_escrow_refuses_goes_back_to_the_balance(chain, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    # the client let the operator lock only the first deposit: the contract refuses the top-up
    client_user, _provider, lease = funded_lease(chain, django_capture_on_commit_callbacks, allow=7_200_000)
    with django_capture_on_commit_callbacks(execute=True):
        response = f.api(client_user, f.CLIENT).post(
            f"/api/v1/leases/{lease.pk}/top-ups/", {"amount": USD}, format="json"
        )
    assert response.status_code == 202
    top_up = LeaseTopUp.objects.get()
    assert top_up.status == LeaseTopUp.Status.FAILED and "allowance" in top_up.failure_reason
    lease.refresh_from_db()
    assert lease.deposit == 7_200_000 == chain.lease(lease.pk).balance == LedgerAccount.objects.get(lease=lease).balance
    assert ledger_balance(client_user) == chain.balance_of(wallet_of(chain, 5)) == 100 * USD - 7_200_000
    assert escrow.reconcile() == []


# --- a lease closed in the contract by one of its parties -----------------------------------------


@pytest.mark.parametrize("closer", ["provider", "client"])
def test_a_party_closing_in_the_contract_is_paid_only_what_was_settled_and_the_books_follow(
    chain, settings, django_capture_on_commit_callbacks, receiver, closer
) -> None:  # type: ignore[no-untyped-def]
    """The provider (or the client) calls ``close_lease`` from its own wallet, not through us: the
    chain pays nothing beyond the settled usage, the sync books the close as the chain made it,
    both sides hear of it, and the ledger equals the chain."""
    client_user, provider, lease = funded_lease(chain, django_capture_on_commit_callbacks, allow=100 * USD)
    f.api(client_user, f.CLIENT).post("/api/v1/webhooks/", {"url": receiver.url, "events": ["lease.*"]}, format="json")
    ran_for(chain, lease, 1200)
    f.usage(lease, seconds=600)
    assert services.leases_settle() == 1  # the tick paid the reported usage
    advance(chain, 1800)  # half an hour more, unreported: the time cap would pay it, usage does not
    sender = wallet_of(chain, 6 if closer == "provider" else 5)
    mined(chain.escrow.functions.close_lease(lease.pk, 10 * USD), sender)
    assert not chain.lease(lease.pk).open
    assert chain.claimable(wallet_of(chain, 6)) == 600_000  # no more than the settlement paid

    settings.CHAIN_CONFIRMATIONS = 0  # the close is in the newest block
    tasks.sync_chain()
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED and lease.closed_by == closer
    assert lease.close_reason == f"closed in the escrow contract by the {closer}"
    assert (lease.paid_to_provider, lease.refunded_to_client) == (600_000, lease.deposit - 600_000)
    assert lease.close_tx_hash.startswith("0x") and lease.closed_at is not None
    assert provider.gpus.get().reserved == 0
    assert ledger_balance(client_user) == chain.balance_of(wallet_of(chain, 5)) == 100 * USD - 600_000
    assert escrow.reconcile() == []
    closed = [e["data"] for e in receiver.events() if e["type"] == "lease.closed"]
    assert [(c["id"], c["close_reason"]) for c in closed] == [(lease.pk, lease.close_reason)]
    # the same event indexed again, and the next syncs, book nothing twice
    tasks.sync_chain()
    assert escrow.chain_closes_apply() == 0 and escrow.reconcile() == []
    # the client's own close now is the close of a closed lease, not the chain's refusal
    late = f.api(client_user, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
    assert late.status_code == 409 and late.json()["error"]["code"] == "lease_closed"


def test_a_close_through_the_marketplace_after_a_close_in_the_contract_books_the_chains(
    chain, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    """The provider closed in the contract; before any sync saw it, the client closes in the web UI.
    The closing task finds the lease closed on chain and books that close: no 409 from the chain,
    no lease stuck in ``closing``."""
    client_user, _provider, lease = funded_lease(chain, django_capture_on_commit_callbacks, allow=100 * USD)
    ran_for(chain, lease, 600)
    f.usage(lease, seconds=600)
    mined(chain.escrow.functions.close_lease(lease.pk, 0), wallet_of(chain, 6))
    with django_capture_on_commit_callbacks(execute=True):
        closing = f.api(client_user, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
    assert closing.status_code == 200 and closing.json()["status"] == "closing"
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED and lease.closed_by == Lease.ClosedBy.PROVIDER
    assert (lease.paid_to_provider, lease.refunded_to_client) == (0, lease.deposit)
    assert ledger_balance(client_user) == chain.balance_of(wallet_of(chain, 5)) == 100 * USD
    assert escrow.reconcile() == []
    page = f.api(client_user, f.CLIENT).get(f"/api/v1/leases/{lease.pk}/").json()
    assert (page["status"], page["closed_by"], page["paid_to_provider"]) == ("closed", "provider", 0)


def test_our_close_whose_receipt_was_lost_is_booked_once_from_the_indexed_event(
    chain, settings, django_capture_on_commit_callbacks, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    client_user, _provider, lease = funded_lease(chain, django_capture_on_commit_callbacks, allow=100 * USD)
    ran_for(chain, lease, 600)
    f.usage(lease, seconds=600)
    monkeypatch.setattr(escrow, "_enqueue", lambda task, object_id: None)  # the closing task is lost
    f.api(client_user, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSING
    # the operator's transaction went through, then the worker died before booking it
    chain.close_lease(lease_id=lease.pk, final_amount=lease.close_requested_amount or 0)
    settings.CHAIN_CONFIRMATIONS = 0
    tasks.sync_chain()
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED and lease.closed_by == Lease.ClosedBy.CLIENT
    assert lease.close_reason == "closed by the client"  # ours: the reason it was asked with
    assert lease.paid_to_provider == chain.claimable(wallet_of(chain, 6)) > 0
    assert escrow.reconcile() == []


def test_a_top_up_the_client_sends_to_the_contract_itself_is_booked_once(
    chain, settings, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    """``top_up`` is open to the lease's client: from its wallet it adds to the deposit without us.
    The sync books it as a top-up (the lease runs longer, the balance follows the chain); the
    operator's own top-up, indexed too, is not booked a second time."""
    client_user, _provider, lease = funded_lease(chain, django_capture_on_commit_callbacks, allow=100 * USD)
    Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):  # through the marketplace: the operator sends it
        made = f.api(client_user, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/top-ups/", {"amount": USD}, format="json")
    assert made.status_code == 202, made.json()  # accepted: the escrow confirms it
    lease.refresh_from_db()
    deposit, ends_at = lease.deposit, lease.ends_at
    mined(chain.escrow.functions.top_up(lease.pk, 2 * USD), wallet_of(chain, 5))  # from its wallet
    settings.CHAIN_CONFIRMATIONS = 0
    tasks.sync_chain()
    tasks.sync_chain()
    lease.refresh_from_db()
    assert lease.deposit == deposit + 2 * USD == chain.lease(lease.pk).balance
    assert lease.ends_at == ends_at + timedelta(seconds=2 * USD * 3600 // lease.price_per_hour)
    top_ups = list(LeaseTopUp.objects.filter(lease=lease).order_by("id").values_list("source", "amount", "status"))
    assert top_ups == [("client", USD, "confirmed"), ("wallet", 2 * USD, "confirmed")]
    assert ledger_balance(client_user) == chain.balance_of(wallet_of(chain, 5))
    assert escrow.reconcile() == []


# --- the terms a client with a wallet signs -------------------------------------------------------


def _sign_typed(typed: dict, key: str) -> str:
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    return "0x" + Account.sign_message(encode_typed_data(full_message=typed), key).signature.hex().removeprefix("0x")


def test_an_accept_without_the_clients_signature_of_those_terms_is_refused_and_writes_nothing(chain, settings) -> None:  # type: ignore[no-untyped-def]
    """A client whose wallet the marketplace cannot sign for (any real wallet) signs what it accepts;
    a missing, altered, expired, foreign or malformed signature is a 400 naming the field."""
    from eth_account import Account

    wallet, stranger = Account.create(), Account.create()
    client_user, provider = f.client_user(balance=100 * USD), f.provider()
    Wallet.objects.create(user=client_user, address=wallet.address)
    Wallet.objects.create(user=provider.user, address=wallet_of(chain, 6))
    order = f.order(client_user, duration_hours=2, max_price_per_hour=10 * USD)
    other = f.provider()
    Wallet.objects.create(user=other.user, address=wallet_of(chain, 7))
    cheap, dear = f.bid(provider, order, USD), f.bid(other, order, 2 * USD)
    api = f.api(client_user, f.CLIENT)
    typed = api.get(f"/api/v1/orders/{order.pk}/bids/{cheap.pk}/terms/").json()["typed_data"]
    assert typed["primaryType"] == "Acceptance"
    assert typed["message"] == {
        "order": order.pk,
        "provider": wallet_of(chain, 6),
        "pricePerHour": USD,
        "deposit": 2 * USD,
        "durationHours": 2,
        "deadline": typed["message"]["deadline"],
    }
    assert typed["domain"]["chainId"] == chain.chain_id and typed["domain"]["verifyingContract"] == chain.escrow.address
    deadline = typed["message"]["deadline"]
    good = _sign_typed(typed, wallet.key.hex())
    for body, field in (
        ({"bid": cheap.pk}, "signature"),  # not signed at all
        ({"bid": dear.pk, "signature": good, "deadline": deadline}, "signature"),  # another bid's terms
        ({"bid": cheap.pk, "signature": good, "deadline": deadline + 1}, "signature"),  # another deadline
        ({"bid": cheap.pk, "signature": _sign_typed(typed, stranger.key.hex()), "deadline": deadline}, "signature"),
        ({"bid": cheap.pk, "signature": "0x" + "11" * 65, "deadline": deadline}, "signature"),
        ({"bid": cheap.pk, "signature": "0x1234", "deadline": deadline}, "signature"),  # not 65 bytes
        ({"bid": cheap.pk, "signature": good, "deadline": 1}, "deadline"),  # long expired
    ):
        refused = api.post(f"/api/v1/orders/{order.pk}/accept/", body, format="json")
        assert refused.status_code == 400, (body, refused.json())
        assert field in refused.json()["error"]["fields"], refused.json()
    assert not Lease.objects.exists() and order.bids.filter(status="open").count() == 2  # nothing written
    accepted = api.post(
        f"/api/v1/orders/{order.pk}/accept/", {"bid": cheap.pk, "signature": good, "deadline": deadline}, format="json"
    )
    assert accepted.status_code == 201, accepted.json()
    lease = Lease.objects.get()
    assert lease.signed_terms == {
        "kind": "acceptance",
        "signer": wallet.address,
        "payee": wallet_of(chain, 6),
        "signature": good,
        "deadline": deadline,
    }


def test_the_deadline_award_opens_within_the_standing_authorization_or_not_at_all(
    chain, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from marketplace import services as market

    client_user, provider = setup_parties(chain, allow=100 * USD)
    needs_signing = not hasattr(chain.w3.provider, "ethereum_tester")  # the demo wallets are signed for
    api = f.api(client_user, f.CLIENT)
    unsigned = f.order(client_user, duration_hours=1, max_price_per_hour=3 * USD)
    f.bid(provider, unsigned, 2 * USD)
    order = f.order(client_user, duration_hours=1, max_price_per_hour=3 * USD)
    f.bid(provider, order, 2 * USD)
    typed = api.get(f"/api/v1/orders/{order.pk}/authorization/").json()["typed_data"]
    if needs_signing:
        assert typed["primaryType"] == "Authorization"
        assert typed["message"]["maxPricePerHour"] == 3 * USD and typed["message"]["maxDeposit"] == 3 * USD
        signature = _sign_typed(typed, key_of(chain, wallet_of(chain, 5)))
        short = api.post(
            f"/api/v1/orders/{order.pk}/authorization/", {"signature": signature, "expiry": 1}, format="json"
        )
        assert short.status_code == 400 and "expiry" in short.json()["error"]["fields"]
        forged = api.post(
            f"/api/v1/orders/{order.pk}/authorization/",
            {"signature": signature, "expiry": typed["message"]["expiry"] + 1},
            format="json",
        )
        assert forged.status_code == 400 and "signature" in forged.json()["error"]["fields"]
        kept = api.post(
            f"/api/v1/orders/{order.pk}/authorization/",
            {"signature": signature, "expiry": typed["message"]["expiry"]},
            format="json",
        )
        assert kept.status_code == 200 and kept.json()["max_price_per_hour"] == 3 * USD, kept.json()
    else:
        assert typed is None
    unsigned.refresh_from_db()
    order.refresh_from_db()
    later = max(unsigned.deadline, order.deadline) + timedelta(seconds=1)  # the bid windows are over
    with django_capture_on_commit_callbacks(execute=True):
        market.order_award_due(order_id=unsigned.pk, now=later)
        market.order_award_due(order_id=order.pk, now=later)
    unsigned.refresh_from_db()
    if needs_signing:  # nobody may open a lease the client did not authorize
        assert unsigned.status == "expired" and "no standing authorization" in unsigned.status_reason
    lease = Lease.objects.get(order=order)
    assert lease.status == Lease.Status.FUNDED, lease.close_reason
    assert chain.lease(lease.pk).price_per_hour == 2 * USD
    assert escrow.reconcile() == []


def test_a_bid_of_a_provider_without_a_wallet_cannot_be_signed_and_says_why(chain) -> None:  # type: ignore[no-untyped-def]
    from eth_account import Account

    client_user, provider = f.client_user(balance=100 * USD), f.provider()  # the provider linked no wallet
    Wallet.objects.create(user=client_user, address=Account.create().address)
    order = f.order(client_user)
    bid = f.bid(provider, order, USD)
    api = f.api(client_user, f.CLIENT)
    assert api.get(f"/api/v1/orders/{order.pk}/bids/{bid.pk}/terms/").json() == {"typed_data": None}
    refused = api.post(f"/api/v1/orders/{order.pk}/accept/", {"bid": bid.pk}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "provider_without_wallet"
    assert not Lease.objects.exists()


def test_the_operator_cannot_open_what_the_client_did_not_sign_on_either_chain(chain) -> None:  # type: ignore[no-untyped-def]
    """The same attacks as ``tests/chain/test_signed_terms.py``, through the operator's own client, on
    the in-process EVM and on Anvil: another payee, a higher price or deposit, a replay."""
    from chain import terms as t
    from chain.transactions import ChainReverted

    client_wallet, provider_wallet, operators = wallet_of(chain, 5), wallet_of(chain, 6), wallet_of(chain, 7)
    fund_from_wallet(chain, client_wallet, amount=20 * USD, allow=20 * USD)
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 600
    accepted = t.Acceptance(77, provider_wallet, USD, 2 * USD, 2, deadline)
    signature = t.sign(
        accepted, key=key_of(chain, client_wallet), chain_id=chain.chain_id, contract=chain.escrow.address
    )
    terms = {
        "order_id": 77,
        "client": client_wallet,
        "provider": provider_wallet,
        "price_per_hour": USD,
        "deposit": 2 * USD,
        "duration_hours": 2,
        "deadline": deadline,
        "signature": signature,
    }
    for changed in ({"provider": operators}, {"price_per_hour": 2 * USD}, {"deposit": 20 * USD}):
        with pytest.raises(ChainReverted, match="not signed by the client"):
            chain.open_lease(lease_id=9001, **{**terms, **changed})
    chain.open_lease(lease_id=9001, **terms)
    assert (chain.lease(9001).client, chain.lease(9001).balance) == (client_wallet, 2 * USD)
    with pytest.raises(ChainReverted, match="order already opened"):
        chain.open_lease(lease_id=9002, **terms)
