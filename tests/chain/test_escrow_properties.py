"""Property test: any sequence of escrow operations conserves tokens and respects the caps."""

import time
from typing import Any

from eth_tester.exceptions import TransactionFailed
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from web3.exceptions import ContractLogicError

from tests.chain.conftest import UNSTAKE_DELAY, USD, Chain

amounts = st.integers(min_value=1, max_value=40 * USD)
prices = st.integers(min_value=1, max_value=20 * USD)
seconds = st.integers(min_value=0, max_value=3 * 3600)
lease_ids = st.integers(min_value=1, max_value=6)


def make_machine(chain: Chain, snapshot: Any) -> type[RuleBasedStateMachine]:
    wallets = [chain.client, chain.other, chain.provider, chain.beneficiary]
    clients = [chain.client, chain.other]

    class EscrowMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            chain.tester.revert_to_snapshot(snapshot)
            self.supply = chain.token.functions.totalSupply().call()
            self.next_id = 1
            self.leases: dict[int, dict] = {}  # lease id -> {price, opened, paid, funded, fee_bps}
            self.fee_bps = 0
            # eth-tester stamps new blocks with the wall clock: start our clock safely after it
            self.clock = max(chain.now(), int(time.time())) + 5

        # --- helpers ------------------------------------------------------------------------
        def send(self, fn: Any, sender: str) -> Any | None:
            self.clock += 1
            chain.at(self.clock)
            try:
                return chain.tx(fn, sender)
            except (ContractLogicError, TransactionFailed):
                return None  # a refusal is fine; the invariants must hold either way

        def record_settlements(self, receipt: Any) -> None:
            if receipt is None:
                return
            for event in chain.events(receipt, "Settled"):
                lease = self.leases[event["lease_id"]]
                # the fee a lease was opened with, whatever the fee is now
                assert event["fee"] == event["amount"] * lease["fee_bps"] // 10_000
                lease["paid"] += event["amount"]
                lease["settled_until"] = event["settled_until"]

        # --- rules --------------------------------------------------------------------------
        @initialize(first=st.tuples(prices, amounts), second=st.tuples(prices, amounts))
        def two_leases(self, first: tuple[int, int], second: tuple[int, int]) -> None:
            """Every run starts with two funded leases, so settlements and closes have work."""
            for who, (price, amount) in zip(clients, (first, second), strict=True):
                self.open_lease(who, price, amount, funded=True)

        @rule(who=st.sampled_from(clients), amount=amounts)
        def deposit(self, who: str, amount: int) -> None:
            self.send(chain.escrow.functions.deposit(amount), who)

        @rule(who=st.sampled_from(wallets), amount=amounts)
        def withdraw(self, who: str, amount: int) -> None:
            self.send(chain.escrow.functions.withdraw(amount), who)

        @rule(who=st.sampled_from(clients), price=prices, amount=amounts, funded=st.booleans())
        def open_lease(self, who: str, price: int, amount: int, funded: bool) -> None:
            if funded:  # usually the client deposits first; sometimes the operator overreaches
                self.send(chain.escrow.functions.deposit(amount), who)
            self.send(chain.escrow.functions.approve_operator(amount), who)
            receipt = self.send(chain.open_call(self.next_id, who, chain.provider, price, amount), chain.operator)
            if receipt is not None:
                self.leases[self.next_id] = {
                    "price": price,
                    "opened": self.clock,
                    "paid": 0,
                    "funded": amount,
                    "fee_bps": self.fee_bps,
                }
            self.next_id += 1

        @rule(elapsed=seconds)
        def wait(self, elapsed: int) -> None:
            self.clock += elapsed

        # Lease ids are drawn blind (some were never opened): what hypothesis draws must not
        # depend on what the chain did, or its replays would diverge.
        @rule(batch=st.lists(st.tuples(lease_ids, amounts), min_size=1, max_size=4))
        def settle(self, batch: list[tuple[int, int]]) -> None:
            ids, asked = [i for i, _ in batch], [a for _, a in batch]
            self.record_settlements(self.send(chain.escrow.functions.settle(ids, asked), chain.operator))

        @rule(lease_id=lease_ids, by=st.sampled_from(["client", "provider", "operator", "other"]), final=amounts)
        def close(self, lease_id: int, by: str, final: int) -> None:
            receipt = self.send(chain.escrow.functions.close_lease(lease_id, final), getattr(chain, by))
            if receipt is not None and by != "operator":  # a party's own close pays no usage: none reported
                assert chain.events(receipt, "Settled") == []
                assert [e["paid"] for e in chain.events(receipt, "LeaseClosed")] == [0]
            self.record_settlements(receipt)

        @rule(who=st.sampled_from([chain.provider, chain.beneficiary]))
        def claim(self, who: str) -> None:
            self.send(chain.escrow.functions.claim(), who)

        @rule(fee_bps=st.integers(min_value=0, max_value=2500))
        def set_fee(self, fee_bps: int) -> None:
            if self.send(chain.escrow.functions.set_fee(fee_bps, chain.beneficiary), chain.owner) is not None:
                self.fee_bps = fee_bps

        @rule(amount=amounts)
        def stake(self, amount: int) -> None:
            self.send(chain.escrow.functions.stake(amount), chain.provider)

        @rule(amount=amounts)
        def request_unstake(self, amount: int) -> None:
            self.send(chain.escrow.functions.request_unstake(amount), chain.provider)

        @rule()
        def unstake_later(self) -> None:
            self.clock += UNSTAKE_DELAY
            self.send(chain.escrow.functions.unstake(), chain.provider)

        @rule(amount=amounts)
        def slash(self, amount: int) -> None:
            self.send(chain.escrow.functions.slash(chain.provider, amount, chain.beneficiary), chain.verifier)

        # --- invariants ---------------------------------------------------------------------
        @invariant()
        def escrow_holds_what_it_accounts_for(self) -> None:
            held = chain.token.functions.balanceOf(chain.escrow.address).call()
            assert held == chain.escrow.functions.total_held().call()

        def teardown(self) -> None:
            """Every token is somewhere: a wallet, or one of the escrow's accounts."""
            e = chain.escrow.functions
            held = chain.token.functions.balanceOf(chain.escrow.address).call()
            owed = sum(e.balance_of(a).call() for a in wallets)
            owed += sum(e.claimable(a).call() + e.stake_of(a).call() + e.unstaking(a).call() for a in wallets)
            owed += sum(e.lease(i).call()[3] for i in range(1, self.next_id))
            assert owed == held
            in_wallets = sum(chain.token.functions.balanceOf(a).call() for a in wallets)
            assert in_wallets + held == self.supply

        @invariant()
        def no_provider_is_paid_beyond_its_cap(self) -> None:
            for lease in self.leases.values():
                until = lease.get("settled_until", lease["opened"])
                assert lease["paid"] <= lease["price"] * (until - lease["opened"]) // 3600
                assert lease["paid"] <= lease["funded"]

    return EscrowMachine


def test_any_sequence_conserves_tokens_and_respects_caps(_deployed) -> None:  # type: ignore[no-untyped-def]
    chain, snapshot = _deployed
    machine = make_machine(chain, snapshot)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
