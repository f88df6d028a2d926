"""A hostile token calls back into the escrow from inside a transfer: nothing can be taken twice."""

from pathlib import Path

import pytest
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractLogicError

from chain.evm import deploy
from tests.chain.conftest import USD, Chain

HOSTILE = Path(__file__).parent / "contracts" / "ReentrantToken.vy"


@pytest.fixture
def hostile(chain: Chain):  # type: ignore[no-untyped-def]
    from vyper.cli.vyper_compile import compile_files

    compiled = next(iter(compile_files([str(HOSTILE)], ["abi", "bytecode"]).values()))
    token = deploy(chain.w3, "ReentrantToken", sender=chain.owner, artifact=compiled)
    escrow = deploy(chain.w3, "Escrow", token.address, chain.operator, chain.verifier, 3600, sender=chain.owner)
    for account in (chain.client, chain.other):
        chain.tx(token.functions.mint(account, 10 * USD), chain.owner)
        chain.tx(token.functions.approve(escrow.address, 10 * USD), account)
        chain.tx(escrow.functions.deposit(10 * USD), account)
    return token, escrow


@pytest.mark.parametrize("reentry", [1, 2], ids=["withdraw-again", "claim-during-withdraw"])
def test_reentrant_withdraw_is_refused_and_nothing_moves(chain: Chain, hostile, reentry: int) -> None:  # type: ignore[no-untyped-def]
    token, escrow = hostile
    chain.tx(token.functions.arm(escrow.address, reentry), chain.owner)
    with pytest.raises((ContractLogicError, TransactionFailed)):
        chain.tx(escrow.functions.withdraw(10 * USD), chain.client)
    assert token.functions.balanceOf(escrow.address).call() == 20 * USD
    assert escrow.functions.balance_of(chain.client).call() == 10 * USD
    assert escrow.functions.total_held().call() == 20 * USD
    # disarmed, the honest withdrawal works and takes exactly what was deposited
    chain.tx(token.functions.disarm(), chain.owner)
    chain.tx(escrow.functions.withdraw(10 * USD), chain.client)
    assert token.functions.balanceOf(chain.client).call() == 10 * USD
    assert token.functions.balanceOf(escrow.address).call() == 10 * USD
    assert escrow.functions.balance_of(chain.other).call() == 10 * USD
