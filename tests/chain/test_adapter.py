"""The escrow adapter on both backends: the in-process EVM and a real Anvil node."""

import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connections
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from chain.adapter import EscrowClient, deploy_contracts
from chain.devnode import Anvil
from chain.evm import embedded_web3, eth_tester_of
from chain.models import ChainTransaction, ContractDeployment
from chain.transactions import ChainReverted, SendPolicy
from tests.chain.conftest import USD

PRICE = 3_600_000


def keys_for(w3: Web3, backend: str, anvil: Anvil | None) -> list[LocalAccount]:
    if backend == "embedded":
        return [Account.from_key(k.to_bytes()) for k in eth_tester_of(w3).backend.account_keys[:6]]
    assert anvil is not None
    return anvil.accounts[:6]


def funded_escrow(w3: Web3, accounts: list[LocalAccount], *, deposit: int) -> tuple[object, object]:
    """Deploy; the client (accounts[3]) deposits ``deposit`` with its own key and lets the
    operator lock it, as it would from its wallet."""
    owner, operator, verifier, client = accounts[:4]
    escrow_contract, token = deploy_contracts(
        w3=w3, owner=owner, operator=operator.address, verifier=verifier.address, token_address=None, unstake_delay=3600
    )
    _sign(w3, owner, token.functions.mint(client.address, 100 * USD))
    _sign(w3, client, token.functions.approve(escrow_contract.address, 2**256 - 1))
    _sign(w3, client, escrow_contract.functions.deposit(deposit))
    _sign(w3, client, escrow_contract.functions.approve_operator(deposit))
    return escrow_contract, token


@pytest.fixture(params=["embedded", "anvil"])
def escrow(request: pytest.FixtureRequest) -> Iterator[tuple[EscrowClient, list[LocalAccount]]]:
    if request.param == "embedded":
        w3, anvil = embedded_web3(), None
    else:
        anvil = request.getfixturevalue("anvil")
        w3 = anvil.web3()
    accounts = keys_for(w3, request.param, anvil)
    escrow_contract, token = funded_escrow(w3, accounts, deposit=50 * USD)
    policy = SendPolicy(receipt_timeout=30, poll_interval=0.05)  # generous: a loaded machine is slow, not wrong
    yield EscrowClient(w3=w3, operator=accounts[1], escrow=escrow_contract, token=token, policy=policy), accounts


def signed_open(
    adapter: EscrowClient, client: LocalAccount, *, lease_id: int, provider: str, price_per_hour: int, deposit: int
) -> ChainTransaction:
    """Open a lease as the marketplace does: on terms the client signed (here with its own key)."""
    from chain import terms

    accepted = terms.Acceptance(lease_id, provider, price_per_hour, deposit, 1, int(time.time()) + 3600)
    signature = terms.sign(accepted, key=client.key.hex(), chain_id=adapter.chain_id, contract=adapter.escrow.address)
    return adapter.open_lease(
        lease_id=lease_id,
        order_id=lease_id,
        client=client.address,
        provider=provider,
        price_per_hour=price_per_hour,
        deposit=deposit,
        duration_hours=1,
        deadline=accepted.deadline,
        signature=signature,
    )


def _sign(w3: Web3, account: LocalAccount, call) -> None:  # type: ignore[no-untyped-def]
    tx = call.build_transaction({"from": account.address, "nonce": w3.eth.get_transaction_count(account.address)})
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    )
    assert receipt["status"] == 1


@pytest.mark.django_db(transaction=True)
def test_open_settle_close_are_recorded_transactions(escrow) -> None:  # type: ignore[no-untyped-def]
    adapter, (_owner, operator, _verifier, client, provider, _other) = escrow
    opened = signed_open(adapter, client, lease_id=1, provider=provider.address, price_per_hour=PRICE, deposit=10 * USD)
    assert opened.status == ChainTransaction.Status.CONFIRMED
    assert opened.gas_used and opened.block_number is not None and opened.reference == "lease:1"
    assert opened.sender == operator.address and opened.gas_limit > opened.gas_used
    lease = adapter.lease(1)
    assert (lease.client, lease.provider, lease.balance, lease.open) == (
        client.address,
        provider.address,
        10 * USD,
        True,
    )
    assert adapter.balance_of(client.address) == 40 * USD

    settled = adapter.settle(amounts={1: 10 * USD})
    assert settled.status == ChainTransaction.Status.CONFIRMED
    paid = adapter.claimable(provider.address)
    assert paid <= PRICE * 60 // 3600  # a few seconds passed at most; the cap held
    closed = adapter.close_lease(lease_id=1, final_amount=0)
    assert closed.status == ChainTransaction.Status.CONFIRMED
    assert adapter.balance_of(client.address) == 50 * USD - paid
    assert not adapter.lease(1).open
    nonces = list(
        ChainTransaction.objects.filter(sender=operator.address).order_by("nonce").values_list("nonce", flat=True)
    )
    assert nonces == sorted(set(nonces)) and len(nonces) == 3
    assert set(ContractDeployment.objects.values_list("name", flat=True)) == {"DevUSD", "Escrow"}


@pytest.mark.django_db(transaction=True)
def test_a_refused_call_raises_with_the_revert_reason_and_records_nothing(escrow) -> None:  # type: ignore[no-untyped-def]
    adapter, (_owner, _operator, _verifier, client, provider, _other) = escrow
    before = ChainTransaction.objects.count()
    with pytest.raises(ChainReverted, match="operator allowance exceeded"):
        signed_open(adapter, client, lease_id=1, provider=provider.address, price_per_hour=PRICE, deposit=60 * USD)
    with pytest.raises(ChainReverted, match="lease not open"):
        adapter.close_lease(lease_id=42, final_amount=0)
    assert ChainTransaction.objects.count() == before


@pytest.mark.postgres  # threads writing at once: SQLite's in-memory test database locks
@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_never_share_a_nonce(anvil: Anvil) -> None:
    w3 = anvil.web3()
    _owner, operator, _verifier, client, provider = anvil.accounts[:5]
    escrow_contract, token = funded_escrow(w3, anvil.accounts, deposit=50 * USD)
    errors: list[BaseException] = []

    def open_one(lease_id: int) -> None:
        try:
            adapter = EscrowClient(w3=anvil.web3(), operator=operator, escrow=escrow_contract, token=token)
            signed_open(
                adapter, client, lease_id=lease_id, provider=provider.address, price_per_hour=PRICE, deposit=USD
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    rows = ChainTransaction.objects.filter(sender=operator.address, kind="open_lease")
    assert rows.count() == 6 and all(r.status == ChainTransaction.Status.CONFIRMED for r in rows)
    assert len(set(rows.values_list("nonce", flat=True))) == 6
    assert escrow_contract.functions.balance_of(client.address).call() == 44 * USD


@pytest.mark.django_db(transaction=True)
def test_a_stuck_transaction_is_replaced_with_a_higher_fee(anvil: Anvil) -> None:
    w3 = anvil.web3()
    _owner, operator, _verifier, client, provider = anvil.accounts[:5]
    escrow_contract, token = funded_escrow(w3, anvil.accounts, deposit=10 * USD)
    adapter = EscrowClient(
        w3=w3,
        operator=operator,
        escrow=escrow_contract,
        token=token,
        policy=SendPolicy(receipt_timeout=1.0, poll_interval=0.05, max_replacements=3),
    )
    w3.provider.make_request("evm_setAutomine", [False])
    miner = threading.Timer(2.5, lambda: anvil.web3().provider.make_request("evm_mine", []))
    miner.start()
    try:
        mined = signed_open(adapter, client, lease_id=9, provider=provider.address, price_per_hour=PRICE, deposit=USD)
    finally:
        miner.cancel()
        w3.provider.make_request("evm_setAutomine", [True])
    versions = list(ChainTransaction.objects.filter(reference="lease:9").order_by("id"))
    assert len(versions) >= 2 and len({v.nonce for v in versions}) == 1
    assert mined.status == ChainTransaction.Status.CONFIRMED
    assert [v.status for v in versions if v.pk != mined.pk] == [ChainTransaction.Status.REPLACED] * (len(versions) - 1)
    assert int(versions[-1].max_fee_per_gas) > int(versions[0].max_fee_per_gas)
    assert escrow_contract.functions.lease(9).call()[5] is True


@pytest.mark.django_db(transaction=True)
def test_chain_deploy_then_the_rpc_backend_finds_the_contracts(anvil: Anvil, settings) -> None:  # type: ignore[no-untyped-def]
    import io

    from django.core.management import call_command

    from chain.adapter import escrow_client

    operator = anvil.accounts[1]
    settings.CHAIN_BACKEND = "rpc"
    settings.CHAIN_RPC_URL = anvil.url
    settings.CHAIN_OPERATOR_KEY = operator.key.hex()
    settings.CHAIN_DEPLOYER_KEY = anvil.accounts[0].key.hex()
    settings.CHAIN_ESCROW_ADDRESS = settings.CHAIN_TOKEN_ADDRESS = ""
    settings.PLATFORM_FEE_BPS = 150
    out = io.StringIO()
    call_command("chain_deploy", stdout=out)
    assert "CHAIN_ESCROW_ADDRESS=0x" in out.getvalue()
    adapter = escrow_client()
    assert adapter.escrow.functions.operator().call() == operator.address
    assert adapter.escrow.functions.owner().call() == anvil.accounts[0].address
    assert adapter.token.functions.decimals().call() == 6
    # the fee from the settings, to the owner unless a recipient is set
    assert adapter.escrow.functions.fee_bps().call() == 150
    assert adapter.escrow.functions.fee_recipient().call() == anvil.accounts[0].address


@pytest.mark.django_db(transaction=True)
def test_the_owner_changes_the_platform_fee_from_the_command_line(anvil: Anvil, settings) -> None:  # type: ignore[no-untyped-def]
    import io

    from django.core.management import CommandError, call_command

    from tests.conftest import on_anvil

    adapter = on_anvil(settings, anvil)
    owner, operator, recipient = anvil.accounts[0], anvil.accounts[1], anvil.accounts[7]
    out = io.StringIO()
    call_command("chain_set_fee", "300", "--owner-key", owner.key.hex(), "--recipient", recipient.address, stdout=out)
    assert "300 bps" in out.getvalue()
    assert adapter.escrow.functions.fee_bps().call() == 300
    assert adapter.escrow.functions.fee_recipient().call() == recipient.address
    with pytest.raises(CommandError, match="0 to 2000"):
        call_command("chain_set_fee", "2001", "--owner-key", owner.key.hex(), stdout=io.StringIO())
    with pytest.raises(CommandError, match="not the owner"):
        call_command("chain_set_fee", "10", "--owner-key", operator.key.hex(), stdout=io.StringIO())
    with pytest.raises(CommandError, match="not an address"):
        call_command("chain_set_fee", "10", "--owner-key", owner.key.hex(), "--recipient", "nope", stdout=io.StringIO())
    assert adapter.escrow.functions.fee_bps().call() == 300
