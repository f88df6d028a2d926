"""The indexer records every escrow event once, only past the confirmation depth."""

import pytest
from eth_account import Account

from chain.adapter import EscrowClient, deploy_contracts
from chain.evm import embedded_web3, eth_tester_of
from chain.indexer import index_events
from chain.models import ChainEvent, IndexerCursor
from tests.chain.conftest import USD
from tests.chain.mined import mined
from tests.chain.test_adapter import signed_open

pytestmark = pytest.mark.django_db(transaction=True)


def _setup():  # type: ignore[no-untyped-def]
    w3 = embedded_web3()
    owner, operator, verifier, client, provider = (
        Account.from_key(k.to_bytes()) for k in eth_tester_of(w3).backend.account_keys[:5]
    )
    escrow, token = deploy_contracts(
        w3=w3, owner=owner, operator=operator.address, verifier=verifier.address, token_address=None, unstake_delay=60
    )
    adapter = EscrowClient(w3=w3, operator=operator, escrow=escrow, token=token)
    accounts = w3.eth.accounts
    mined(token.functions.mint(client.address, 100 * USD), accounts[0])
    mined(token.functions.approve(escrow.address, 2**256 - 1), accounts[3])
    mined(escrow.functions.deposit(30 * USD), accounts[3])
    mined(escrow.functions.approve_operator(30 * USD), accounts[3])
    return w3, adapter, client, provider


def test_events_are_recorded_once_with_their_arguments() -> None:
    w3, adapter, client, provider = _setup()
    signed_open(adapter, client, lease_id=5, provider=provider.address, price_per_hour=3_600_000, deposit=10 * USD)
    adapter.close_lease(lease_id=5, final_amount=0)
    assert index_events(client=adapter, confirmations=0) == 5
    names = list(ChainEvent.objects.values_list("name", flat=True))
    assert names == ["Deposited", "OperatorApproved", "LeaseOpened", "Settled", "LeaseClosed"]
    opened = ChainEvent.objects.get(name="LeaseOpened")
    assert opened.args == {
        "lease_id": 5,
        "client": client.address,
        "provider": provider.address,
        "price_per_hour": 3_600_000,
        "deposit": 10 * USD,
        "fee_bps": 0,
    }
    assert opened.tx_hash.startswith("0x") and opened.block_hash.startswith("0x")
    # a rerun finds nothing new, and the cursor sits past the head
    assert index_events(client=adapter, confirmations=0) == 0
    assert ChainEvent.objects.count() == 5
    assert IndexerCursor.objects.get().next_block == w3.eth.block_number + 1


def test_events_wait_for_confirmations() -> None:
    w3, adapter, _client, _provider = _setup()
    head = w3.eth.block_number
    assert index_events(client=adapter, confirmations=2) == 0  # deposit/approve are in the last two blocks
    assert IndexerCursor.objects.get().next_block == head - 1
    eth_tester_of(w3).mine_blocks(2)
    assert index_events(client=adapter, confirmations=2) == 2
    assert list(ChainEvent.objects.values_list("name", flat=True)) == ["Deposited", "OperatorApproved"]


def test_a_rewound_cursor_does_not_duplicate() -> None:
    _w3, adapter, _client, _provider = _setup()
    index_events(client=adapter, confirmations=0)
    IndexerCursor.objects.update(next_block=0)
    assert index_events(client=adapter, confirmations=0, chunk=3) == 0
    assert ChainEvent.objects.count() == 2
