"""Every escrow function, its events and its revert reasons, on the in-process EVM."""

import pytest
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractLogicError

from chain.compiler import drifted_artifacts
from tests.chain.conftest import UNSTAKE_DELAY, USD, Chain

PRICE = 3_600_000  # $3.60 an hour: $0.001 a second


def reverts(reason: str):  # type: ignore[no-untyped-def]
    return pytest.raises((ContractLogicError, TransactionFailed), match=reason)


def deposit(chain: Chain, account: str, amount: int) -> None:
    chain.tx(chain.escrow.functions.deposit(amount), account)


def open_lease(chain: Chain, lease_id: int = 1, deposit_amount: int = 10 * USD, price: int = PRICE) -> None:
    deposit(chain, chain.client, deposit_amount)
    chain.tx(chain.escrow.functions.approve_operator(deposit_amount), chain.client)
    chain.tx(chain.open_call(lease_id, chain.client, chain.provider, price, deposit_amount), chain.operator)


def lease(chain: Chain, lease_id: int = 1) -> dict:
    client, provider, price, balance, settled_until, is_open, fee_bps = chain.escrow.functions.lease(lease_id).call()
    return {
        "client": client,
        "provider": provider,
        "price": price,
        "balance": balance,
        "settled": settled_until,
        "open": is_open,
        "fee_bps": fee_bps,
    }


def held(chain: Chain) -> int:
    return chain.token.functions.balanceOf(chain.escrow.address).call()


def test_artifacts_match_the_contract_sources() -> None:
    assert drifted_artifacts() == []


def test_token_has_six_decimals(chain: Chain) -> None:
    assert chain.token.functions.decimals().call() == 6


# --- deposit and withdraw ---------------------------------------------------------------------


def test_deposit_and_withdraw(chain: Chain) -> None:
    receipt = chain.tx(chain.escrow.functions.deposit(5 * USD), chain.client)
    assert chain.events(receipt, "Deposited") == [{"account": chain.client, "amount": 5 * USD}]
    assert chain.escrow.functions.balance_of(chain.client).call() == 5 * USD
    assert held(chain) == chain.escrow.functions.total_held().call() == 5 * USD
    receipt = chain.tx(chain.escrow.functions.withdraw(2 * USD), chain.client)
    assert chain.events(receipt, "Withdrawn") == [{"account": chain.client, "amount": 2 * USD}]
    assert chain.escrow.functions.balance_of(chain.client).call() == 3 * USD
    assert chain.token.functions.balanceOf(chain.client).call() == 997 * USD


def test_deposit_and_withdraw_refusals(chain: Chain) -> None:
    with reverts("amount is zero"):
        chain.tx(chain.escrow.functions.deposit(0), chain.client)
    with reverts("amount is zero"):
        chain.tx(chain.escrow.functions.withdraw(0), chain.client)
    with reverts("insufficient balance"):
        chain.tx(chain.escrow.functions.withdraw(1), chain.client)
    with reverts("insufficient"):  # the token refuses: no tokens and no allowance
        chain.tx(chain.escrow.functions.deposit(USD), chain.beneficiary)


# --- leases -----------------------------------------------------------------------------------


def test_open_lease_moves_the_deposit_out_of_the_free_balance(chain: Chain) -> None:
    deposit(chain, chain.client, 15 * USD)
    chain.tx(chain.escrow.functions.approve_operator(10 * USD), chain.client)
    receipt = chain.tx(chain.open_call(7, chain.client, chain.provider, PRICE, 10 * USD), chain.operator)
    assert chain.events(receipt, "LeaseOpened") == [
        {
            "lease_id": 7,
            "client": chain.client,
            "provider": chain.provider,
            "price_per_hour": PRICE,
            "deposit": 10 * USD,
            "fee_bps": 0,
        }
    ]
    assert lease(chain, 7)["balance"] == 10 * USD and lease(chain, 7)["open"]
    assert chain.escrow.functions.balance_of(chain.client).call() == 5 * USD
    assert chain.escrow.functions.operator_allowance(chain.client).call() == 0


@pytest.mark.parametrize(
    ("args", "sender", "reason"),
    [
        ((1, "client", "provider", PRICE, USD), "other", "not the operator"),
        ((0, "client", "provider", PRICE, USD), "operator", "lease id is zero"),
        ((1, "zero", "provider", PRICE, USD), "operator", "invalid signature"),  # the zero address signs nothing
        ((1, "client", "zero", PRICE, USD), "operator", "zero address"),
        ((1, "client", "client", PRICE, USD), "operator", "client is the provider"),
        ((1, "client", "provider", 0, USD), "operator", "price is zero"),
        ((1, "client", "provider", PRICE, 0), "operator", "deposit is zero"),
        ((1, "client", "provider", PRICE, 6 * USD), "operator", "operator allowance exceeded"),
        ((1, "other", "provider", PRICE, USD), "operator", "operator allowance exceeded"),
    ],
)
def test_open_lease_refusals(chain: Chain, args: tuple, sender: str, reason: str) -> None:
    deposit(chain, chain.client, 5 * USD)
    chain.tx(chain.escrow.functions.approve_operator(5 * USD), chain.client)
    who = {"client": chain.client, "provider": chain.provider, "other": chain.other, "zero": "0x" + "0" * 40}
    lease_id, client, provider, price, amount = args
    with reverts(reason):
        chain.tx(
            chain.open_call(lease_id, who[client], who[provider], price, amount),
            getattr(chain, sender),
        )


def test_operator_cannot_lock_more_than_the_balance_even_with_allowance(chain: Chain) -> None:
    deposit(chain, chain.client, USD)
    chain.tx(chain.escrow.functions.approve_operator(100 * USD), chain.client)
    with reverts("insufficient balance"):
        chain.tx(chain.open_call(1, chain.client, chain.provider, PRICE, 2 * USD), chain.operator)


def test_a_lease_id_is_used_once(chain: Chain) -> None:
    open_lease(chain)
    deposit(chain, chain.client, USD)
    chain.tx(chain.escrow.functions.approve_operator(USD), chain.client)
    with reverts("lease exists"):  # another order's signed terms, under a lease id taken
        chain.tx(chain.open_call(1, chain.client, chain.provider, PRICE, USD, order=2), chain.operator)


def test_settlement_is_capped_by_rate_times_elapsed(chain: Chain) -> None:
    open_lease(chain)
    start = lease(chain)["settled"]
    chain.at(start + 1800)
    receipt = chain.tx(chain.escrow.functions.settle([1], [10 * USD]), chain.operator)
    assert chain.events(receipt, "Settled") == [
        {
            "lease_id": 1,
            "provider": chain.provider,
            "amount": PRICE * 1800 // 3600,
            "fee": 0,
            "settled_until": start + 1800,
        }
    ]
    assert chain.escrow.functions.claimable(chain.provider).call() == 1_800_000
    assert lease(chain)["balance"] == 10 * USD - 1_800_000
    # less than the cap is paid as asked, and the period is still settled
    chain.at(start + 3600)
    chain.tx(chain.escrow.functions.settle([1], [1_000]), chain.operator)
    assert chain.escrow.functions.claimable(chain.provider).call() == 1_801_000
    assert lease(chain)["settled"] == start + 3600


def test_settlement_never_exceeds_the_lease_balance(chain: Chain) -> None:
    open_lease(chain, deposit_amount=USD)
    chain.at(lease(chain)["settled"] + 10 * 3600)
    assert chain.escrow.functions.settleable(1).call() == USD
    chain.tx(chain.escrow.functions.settle([1], [50 * USD]), chain.operator)
    assert chain.escrow.functions.claimable(chain.provider).call() == USD
    assert lease(chain)["balance"] == 0


def test_batch_settlement_skips_closed_leases(chain: Chain) -> None:
    for lease_id in (1, 2, 3):
        open_lease(chain, lease_id=lease_id, deposit_amount=5 * USD)
    chain.tx(chain.escrow.functions.close_lease(2, 0), chain.client)
    start = max(lease(chain, i)["settled"] for i in (1, 2, 3))
    chain.at(start + 3600)
    total = chain.escrow.functions.settle([1, 2, 3], [USD, USD, USD]).call({"from": chain.operator})
    receipt = chain.tx(chain.escrow.functions.settle([1, 2, 3], [USD, USD, USD]), chain.operator)
    assert [e["lease_id"] for e in chain.events(receipt, "Settled")] == [1, 3]
    assert total == 2 * USD


def test_settle_refusals(chain: Chain) -> None:
    open_lease(chain)
    with reverts("not the operator"):
        chain.tx(chain.escrow.functions.settle([1], [1]), chain.provider)
    with reverts("length mismatch"):
        chain.tx(chain.escrow.functions.settle([1], [1, 2]), chain.operator)


def test_the_platform_fee_is_split_off_each_settlement_at_the_rate_the_lease_opened_with(chain: Chain) -> None:
    platform = chain.beneficiary
    receipt = chain.tx(chain.escrow.functions.set_fee(250, platform), chain.owner)  # 2.5 %
    assert chain.events(receipt, "FeeChanged") == [{"fee_bps": 250, "recipient": platform}]
    open_lease(chain)
    assert lease(chain)["fee_bps"] == 250
    # raising the fee later does not touch the running lease
    chain.tx(chain.escrow.functions.set_fee(2000, platform), chain.owner)
    start = lease(chain)["settled"]
    chain.at(start + 1001)
    receipt = chain.tx(chain.escrow.functions.settle([1], [10 * USD]), chain.operator)
    paid = PRICE * 1001 // 3600  # 1_001_000
    fee = paid * 250 // 10_000  # 25_025, rounded down
    assert chain.events(receipt, "Settled")[0]["fee"] == fee
    assert chain.escrow.functions.claimable(chain.provider).call() == paid - fee
    assert chain.escrow.functions.claimable(platform).call() == fee
    # the operator's close splits its last settlement the same way; the platform claims like a provider
    chain.at(start + 1601)
    receipt = chain.tx(chain.escrow.functions.close_lease(1, 10 * USD), chain.operator)
    assert chain.events(receipt, "Settled")[0] == {
        "lease_id": 1,
        "provider": chain.provider,
        "amount": 600_000,
        "fee": 15_000,
        "settled_until": start + 1601,
    }
    assert chain.events(receipt, "LeaseClosed")[0]["paid"] == 600_000
    assert chain.escrow.functions.claimable(platform).call() == fee + 15_000
    chain.tx(chain.escrow.functions.claim(), platform)
    assert chain.token.functions.balanceOf(platform).call() == fee + 15_000
    # a lease opened now pays the new fee
    open_lease(chain, lease_id=2)
    assert lease(chain, 2)["fee_bps"] == 2000


def test_only_the_owner_sets_the_fee_within_its_limit(chain: Chain) -> None:
    with reverts("not the owner"):
        chain.tx(chain.escrow.functions.set_fee(100, chain.operator), chain.operator)
    with reverts("fee too high"):
        chain.tx(chain.escrow.functions.set_fee(2001, chain.beneficiary), chain.owner)
    with reverts("zero address"):
        chain.tx(chain.escrow.functions.set_fee(100, "0x" + "00" * 20), chain.owner)
    assert chain.escrow.functions.fee_bps().call() == 0


@pytest.mark.parametrize("party", ["client", "provider"])
def test_a_party_closing_on_its_own_pays_nothing_beyond_the_settled_usage(chain: Chain, party: str) -> None:
    """Usage, not time, pays a provider: a close that is not the operator's (which carries the last
    usage report) settles nothing, whatever amount it names and however long the lease ran."""
    open_lease(chain)
    start = lease(chain)["settled"]
    chain.at(start + 600)
    chain.tx(chain.escrow.functions.settle([1], [300_000]), chain.operator)  # the usage reported so far
    chain.at(start + 7200)  # two hours by the clock; the time cap alone would pay $7.20
    receipt = chain.tx(chain.escrow.functions.close_lease(1, 10 * USD), getattr(chain, party))
    assert chain.events(receipt, "Settled") == []
    assert chain.events(receipt, "LeaseClosed") == [
        {"lease_id": 1, "closed_by": getattr(chain, party), "paid": 0, "refunded": 10 * USD - 300_000}
    ]
    assert chain.escrow.functions.claimable(chain.provider).call() == 300_000
    assert chain.escrow.functions.balance_of(chain.client).call() == 10 * USD - 300_000
    assert not lease(chain)["open"] and lease(chain)["balance"] == 0
    assert chain.escrow.functions.settleable(1).call() == 0  # and nobody settles it afterwards
    with reverts("lease not open"):
        chain.tx(chain.escrow.functions.close_lease(1, 0), chain.client)
    with reverts("lease not open"):
        chain.tx(chain.escrow.functions.close_lease(1, 10 * USD), chain.operator)


def test_operator_close_settles_the_final_usage_amount(chain: Chain) -> None:
    open_lease(chain)
    chain.at(lease(chain)["settled"] + 3600)
    chain.tx(chain.escrow.functions.close_lease(1, 1_000_000), chain.operator)
    assert chain.escrow.functions.claimable(chain.provider).call() == 1_000_000
    assert chain.escrow.functions.balance_of(chain.client).call() == 9 * USD


def test_only_the_parties_can_close(chain: Chain) -> None:
    open_lease(chain)
    with reverts("not a party to the lease"):
        chain.tx(chain.escrow.functions.close_lease(1, 0), chain.other)
    chain.tx(chain.escrow.functions.close_lease(1, 0), chain.provider)
    assert not lease(chain)["open"]


def test_top_up(chain: Chain) -> None:
    open_lease(chain)
    deposit(chain, chain.client, 4 * USD)
    receipt = chain.tx(chain.escrow.functions.top_up(1, 2 * USD), chain.client)
    assert chain.events(receipt, "LeaseToppedUp") == [{"lease_id": 1, "amount": 2 * USD}]
    with reverts("operator allowance exceeded"):
        chain.tx(chain.escrow.functions.top_up(1, USD), chain.operator)
    chain.tx(chain.escrow.functions.approve_operator(USD), chain.client)
    chain.tx(chain.escrow.functions.top_up(1, USD), chain.operator)
    assert lease(chain)["balance"] == 13 * USD
    with reverts("not the lease's client"):
        chain.tx(chain.escrow.functions.top_up(1, USD), chain.other)
    with reverts("insufficient balance"):
        chain.tx(chain.escrow.functions.top_up(1, 2 * USD), chain.client)
    with reverts("amount is zero"):
        chain.tx(chain.escrow.functions.top_up(1, 0), chain.client)
    with reverts("lease not open"):
        chain.tx(chain.escrow.functions.top_up(99, USD), chain.client)


# --- providers ----------------------------------------------------------------------------------


def test_claim(chain: Chain) -> None:
    with reverts("nothing to claim"):
        chain.tx(chain.escrow.functions.claim(), chain.provider)
    open_lease(chain)
    chain.at(lease(chain)["settled"] + 3600)
    chain.tx(chain.escrow.functions.settle([1], [USD]), chain.operator)
    before = chain.token.functions.balanceOf(chain.provider).call()
    receipt = chain.tx(chain.escrow.functions.claim(), chain.provider)
    assert chain.events(receipt, "Claimed") == [{"provider": chain.provider, "amount": USD}]
    assert chain.token.functions.balanceOf(chain.provider).call() == before + USD
    assert chain.escrow.functions.claimable(chain.provider).call() == 0


def test_stake_unstake_after_the_delay(chain: Chain) -> None:
    chain.tx(chain.escrow.functions.stake(50 * USD), chain.provider)
    with reverts("insufficient stake"):
        chain.tx(chain.escrow.functions.request_unstake(51 * USD), chain.provider)
    receipt = chain.tx(chain.escrow.functions.request_unstake(20 * USD), chain.provider)
    available_at = chain.events(receipt, "UnstakeRequested")[0]["available_at"]
    assert available_at == chain.now() + UNSTAKE_DELAY
    with reverts("unstake delay not over"):
        chain.tx(chain.escrow.functions.unstake(), chain.provider)
    chain.at(available_at)
    receipt = chain.tx(chain.escrow.functions.unstake(), chain.provider)
    assert chain.events(receipt, "Unstaked") == [{"provider": chain.provider, "amount": 20 * USD}]
    assert chain.escrow.functions.stake_of(chain.provider).call() == 30 * USD
    with reverts("nothing to unstake"):
        chain.tx(chain.escrow.functions.unstake(), chain.provider)
    with reverts("amount is zero"):
        chain.tx(chain.escrow.functions.stake(0), chain.provider)
    with reverts("amount is zero"):
        chain.tx(chain.escrow.functions.request_unstake(0), chain.provider)


def test_slash_reaches_stake_waiting_to_be_unstaked(chain: Chain) -> None:
    chain.tx(chain.escrow.functions.stake(10 * USD), chain.provider)
    chain.tx(chain.escrow.functions.request_unstake(8 * USD), chain.provider)  # trying to run away
    receipt = chain.tx(chain.escrow.functions.slash(chain.provider, 9 * USD, chain.beneficiary), chain.verifier)
    assert chain.events(receipt, "Slashed") == [
        {"provider": chain.provider, "amount": 9 * USD, "beneficiary": chain.beneficiary}
    ]
    assert chain.escrow.functions.stake_of(chain.provider).call() == 0
    assert chain.escrow.functions.unstaking(chain.provider).call() == USD
    assert chain.escrow.functions.balance_of(chain.beneficiary).call() == 9 * USD
    # the beneficiary can take the money out
    chain.tx(chain.escrow.functions.withdraw(9 * USD), chain.beneficiary)
    assert chain.token.functions.balanceOf(chain.beneficiary).call() == 9 * USD
    with reverts("not the verifier"):
        chain.tx(chain.escrow.functions.slash(chain.provider, 1, chain.beneficiary), chain.operator)
    with reverts("nothing to slash"):
        chain.tx(chain.escrow.functions.slash(chain.other, 1, chain.beneficiary), chain.verifier)
    with reverts("zero address"):
        chain.tx(chain.escrow.functions.slash(chain.provider, 1, "0x" + "0" * 40), chain.verifier)
    with reverts("amount is zero"):
        chain.tx(chain.escrow.functions.slash(chain.provider, 0, chain.beneficiary), chain.verifier)


# --- owner: roles and pause ----------------------------------------------------------------------


def test_roles_are_the_owners_to_change(chain: Chain) -> None:
    for fn in ("set_operator", "set_verifier", "transfer_ownership"):
        with reverts("not the owner"):
            chain.tx(getattr(chain.escrow.functions, fn)(chain.other), chain.other)
    receipt = chain.tx(chain.escrow.functions.set_operator(chain.other), chain.owner)
    assert chain.events(receipt, "RoleChanged") == [{"role": "operator", "account": chain.other}]
    assert chain.escrow.functions.operator().call() == chain.other
    chain.tx(chain.escrow.functions.set_verifier(chain.other), chain.owner)
    chain.tx(chain.escrow.functions.transfer_ownership(chain.other), chain.owner)
    assert chain.escrow.functions.owner().call() == chain.other
    with reverts("zero address"):
        chain.tx(chain.escrow.functions.transfer_ownership("0x" + "0" * 40), chain.other)


def test_pause_stops_new_leases_but_never_traps_funds(chain: Chain) -> None:
    open_lease(chain)
    deposit(chain, chain.client, USD)
    chain.tx(chain.escrow.functions.approve_operator(USD), chain.client)
    with reverts("not the owner"):
        chain.tx(chain.escrow.functions.set_paused(True), chain.operator)
    chain.tx(chain.escrow.functions.set_paused(True), chain.owner)
    with reverts("paused"):
        chain.tx(chain.open_call(2, chain.client, chain.provider, PRICE, USD), chain.operator)
    chain.at(lease(chain)["settled"] + 3600)
    chain.tx(chain.escrow.functions.settle([1], [USD]), chain.operator)  # settling goes on too
    chain.tx(chain.escrow.functions.close_lease(1, 0), chain.client)
    chain.tx(chain.escrow.functions.withdraw(chain.escrow.functions.balance_of(chain.client).call()), chain.client)
    chain.tx(chain.escrow.functions.claim(), chain.provider)
    assert held(chain) == 0
    chain.tx(chain.escrow.functions.set_paused(False), chain.owner)
    deposit(chain, chain.client, USD)
    chain.tx(chain.open_call(2, chain.client, chain.provider, PRICE, USD), chain.operator)


def test_amounts_beyond_the_packed_width_are_refused(chain: Chain) -> None:
    deposit(chain, chain.client, 5 * USD)
    chain.tx(chain.escrow.functions.approve_operator(2**256 - 1), chain.client)
    with reverts("amount too large"):
        chain.tx(chain.open_call(1, chain.client, chain.provider, 2**128, USD), chain.operator)
    open_lease(chain, lease_id=2, deposit_amount=USD)
    assert lease(chain, 2)["price"] == PRICE and lease(chain, 2)["balance"] == USD  # packing round-trips
