"""An in-process EVM with the token and the escrow deployed, reset between tests."""

from dataclasses import dataclass
from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from chain.evm import deploy, embedded_web3, eth_tester_of

USD = 1_000_000
UNSTAKE_DELAY = 7 * 24 * 3600


@dataclass
class Chain:
    w3: Web3
    token: Contract
    escrow: Contract
    owner: str
    operator: str
    verifier: str
    client: str
    provider: str
    other: str
    beneficiary: str

    @property
    def tester(self) -> Any:
        return eth_tester_of(self.w3)

    def tx(self, fn: Any, sender: str) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))
        assert receipt["status"] == 1
        return receipt

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    def at(self, timestamp: int) -> None:
        """Make the next block's timestamp exactly ``timestamp``."""
        self.tester.time_travel(timestamp)

    def fund(self, account: str, amount: int) -> None:
        self.tx(self.token.functions.mint(account, amount), self.owner)
        self.tx(self.token.functions.approve(self.escrow.address, 2**256 - 1), account)

    def open_call(
        self, lease_id: int, client: str, provider: str, price: int, deposit: int, *, order: int | None = None
    ) -> Any:
        """``open_lease`` on terms ``client`` signed (its key is the in-process chain's, public):
        for order ``order`` (the lease id unless given), a deadline an hour away."""
        from chain import terms
        from chain.evm import embedded_key

        keys = {address: embedded_key(i) for i, address in enumerate(self.w3.eth.accounts)}
        accepted = terms.Acceptance(
            order if order is not None else lease_id, provider, price, deposit, 1, self.now() + 3600
        )
        if client in keys:
            signature = terms.sign(
                accepted, key=keys[client], chain_id=self.w3.eth.chain_id, contract=self.escrow.address
            )
        else:  # nobody's key: a signature that recovers to no one
            signature = "0x" + "11" * 65
        return self.escrow.functions.open_lease(
            lease_id,
            accepted.order,
            client,
            provider,
            price,
            deposit,
            1,
            accepted.deadline,
            bytes.fromhex(signature.removeprefix("0x")),
        )

    def events(self, receipt: Any, name: str) -> list[dict]:
        event = getattr(self.escrow.events, name)()
        return [dict(e["args"]) for e in event.process_receipt(receipt, errors=DISCARD)]


@pytest.fixture(scope="session")
def _deployed() -> tuple[Chain, Any]:
    w3 = embedded_web3()
    a = w3.eth.accounts
    token = deploy(w3, "DevUSD", "Dev USD", "DUSD", sender=a[0])
    escrow = deploy(w3, "Escrow", token.address, a[1], a[2], UNSTAKE_DELAY, sender=a[0])
    chain = Chain(w3, token, escrow, a[0], a[1], a[2], a[3], a[4], a[5], a[6])
    for account in (chain.client, chain.provider, chain.other):
        chain.fund(account, 1_000 * USD)
    return chain, chain.tester.take_snapshot()


@pytest.fixture
def chain(_deployed: tuple[Chain, Any]) -> Chain:
    deployed, snapshot = _deployed
    deployed.tester.revert_to_snapshot(snapshot)
    return deployed
