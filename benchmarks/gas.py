"""Escrow gas: every operation, batch settlement per lease, and transactions per second on Anvil.

    .venv/bin/python benchmarks/gas.py [--batches 1,10,100,1000] [--tps-count 500]

Starts a local Anvil node (``make tools`` installs it), deploys DevUSD and the escrow from the
committed artifacts, and measures:

1. the gas of each operation, as a client, the operator, a provider and the verifier use them;
2. settling batches of leases (spread over 10 providers): the first tick, when providers'
   earnings go from zero to non-zero, and the steady-state tick after it, in gas per lease
   (target: at most 15,000 a lease at 1,000);
3. how many transactions per second one sender gets mined on Anvil (signed locally, sent
   back to back, counted when the last receipt arrives).

Needs no database. Writes ``benchmarks/out/gas.json`` and prints Markdown tables.
"""

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))

from web3 import Web3  # noqa: E402

from chain import terms  # noqa: E402
from chain.compiler import load_artifact  # noqa: E402
from chain.devnode import Anvil, anvil_binary  # noqa: E402

USD = 1_000_000


class Sender:
    """Signs and sends from one account, keeping its own nonce."""

    def __init__(self, w3: Web3, account: Any) -> None:
        self.w3, self.account = w3, account
        self.nonce = w3.eth.get_transaction_count(account.address)

    def sign(self, call: Any, gas: int = 2_000_000) -> bytes:
        # A fixed gas limit: the receipt reports what was really used, and estimates made
        # before evm_increaseTime takes effect can come out short.
        params = {"from": self.account.address, "nonce": self.nonce, "gas": gas}
        tx = call.build_transaction(params)
        self.nonce += 1
        return self.account.sign_transaction(tx).raw_transaction

    def send(self, call: Any, gas: int = 2_000_000) -> Any:
        tx_hash = self.w3.eth.send_raw_transaction(self.sign(call, gas))
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1, receipt
        return receipt


def deploy(w3: Web3, sender: Sender, name: str, *args: Any) -> Any:
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = sender.send(factory.constructor(*args), gas=6_000_000)
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"]), receipt["gasUsed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,10,100,1000")
    parser.add_argument("--tps-count", type=int, default=500)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    binary = anvil_binary()
    if binary is None:
        sys.exit("needs anvil: run `make tools`")
    node = Anvil(binary)
    try:
        results = measure(node, batches, args.tps_count)
    finally:
        node.stop()
    results["date"] = datetime.now(UTC).date().isoformat()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gas.json").write_text(json.dumps(results, indent=2))

    print("| operation | gas |")
    print("| --- | --- |")
    for name, gas in results["operations"].items():
        print(f"| `{name}` | {gas:,} |")
    print()
    print("| leases in one `settle` | platform fee | first tick, gas a lease | steady tick, gas a lease |", end="")
    print(" steady tick, whole |")
    print("| --- | --- | --- | --- | --- |")
    for row in results["batches"]:
        cells = [row["leases"], row["first_per_lease"], row["steady_per_lease"], row["steady_total"]]
        print(f"| {cells[0]:,} | {row['fee_bps']} bps | " + " | ".join(f"{c:,}" for c in cells[1:]) + " |")
    print()
    tps = results["tps"]
    print(f"Transactions per second on Anvil, one sender: {tps['per_second']:.0f}", end=" ")
    print(f"({tps['count']} in {tps['seconds']:.2f} s)")


def measure(node: Anvil, batches: list[int], tps_count: int) -> dict:
    w3 = node.web3()
    owner, operator, verifier, client, provider, other = (Sender(w3, a) for a in node.accounts[:6])
    providers = [a.address for a in node.accounts[4:10]] + [
        Web3.to_checksum_address(f"0x{i:040x}") for i in range(1, 5)
    ]
    token, _ = deploy(w3, owner, "DevUSD", "Dev USD", "DUSD")
    escrow, escrow_deploy_gas = deploy(
        w3, owner, "Escrow", token.address, operator.account.address, verifier.account.address, 60
    )
    ops: dict[str, int] = {"deploy Escrow": escrow_deploy_gas}
    e = escrow.functions

    def gas(name: str, sender: Sender, call: Any) -> None:
        ops[name] = sender.send(call)["gasUsed"]

    total_leases = sum(batches) + max(batches) + 2
    owner.send(token.functions.mint(client.account.address, 10**15))
    owner.send(token.functions.mint(provider.account.address, 10**12))
    client.send(token.functions.approve(escrow.address, 2**256 - 1))
    provider.send(token.functions.approve(escrow.address, 2**256 - 1))
    gas("deposit (first)", client, e.deposit(10**14))
    gas("deposit", client, e.deposit(USD))
    gas("withdraw", client, e.withdraw(USD))
    gas("approve_operator", client, e.approve_operator(10**14))
    where = {"key": node.accounts[3].key.hex(), "chain_id": w3.eth.chain_id, "contract": escrow.address}
    deadline = w3.eth.get_block("latest")["timestamp"] + 24 * 3600

    def signed_open(lease_id: int, payee: str, price: int, deposit: int) -> Any:
        """``open_lease`` on terms the client signed (its order is the lease id here)."""
        accepted = terms.Acceptance(lease_id, payee, price, deposit, 1, deadline)
        signature = bytes.fromhex(terms.sign(accepted, **where).removeprefix("0x"))
        return e.open_lease(lease_id, lease_id, client.account.address, payee, price, deposit, 1, deadline, signature)

    gas(
        "open_lease (with the client's signed terms)",
        operator,
        signed_open(1, provider.account.address, 3_600_000, 10 * USD),
    )
    gas("top_up (client)", client, e.top_up(1, USD))
    w3.provider.make_request("evm_increaseTime", [600])
    gas("settle, 1 lease (first)", operator, e.settle([1], [USD]))
    w3.provider.make_request("evm_increaseTime", [600])
    gas("settle, 1 lease", operator, e.settle([1], [USD]))
    gas("close_lease (client)", client, e.close_lease(1, 0))
    gas(
        "open_lease (second)",
        operator,
        signed_open(2, provider.account.address, 3_600_000, USD),
    )
    w3.provider.make_request("evm_increaseTime", [600])
    gas("close_lease (operator, with the last usage)", operator, e.close_lease(2, 100_000))
    # the deadline's award, within the standing authorization the client signed with its order
    payer, payee = client.account.address, provider.account.address
    authorized = terms.Authorization(10**9 + 2, 3_600_000, 4 * 3_600_000, deadline)
    signature = bytes.fromhex(terms.sign(authorized, **where).removeprefix("0x"))
    gas(
        "open_lease_authorized",
        operator,
        e.open_lease_authorized(
            10**9 + 2, 10**9 + 2, payer, payee, 3_000_000, 6_000_000, 3_600_000, 4 * 3_600_000, deadline, signature
        ),
    )
    gas("claim", provider, e.claim())
    gas("stake", provider, e.stake(100 * USD))
    gas("request_unstake", provider, e.request_unstake(40 * USD))
    w3.provider.make_request("evm_increaseTime", [61])
    gas("unstake", provider, e.unstake())
    gas("slash", verifier, e.slash(provider.account.address, USD, other.account.address))

    rows = []
    next_id = 3  # leases 1 and 2 were opened and closed above
    # the batches without a platform fee, then the largest again with one (2.5 % to its recipient)
    for size, fee_bps in [(size, 0) for size in batches] + [(max(batches), 250)]:
        if fee_bps:
            gas("set_fee", owner, e.set_fee(fee_bps, other.account.address))
        ids = list(range(next_id, next_id + size))
        next_id += size
        # open the leases back to back, then wait for the last one
        hashes = [
            w3.eth.send_raw_transaction(
                operator.sign(
                    signed_open(lease_id, providers[i % len(providers)], 3_600_000, 10 * USD),
                    gas=300_000,
                )
            )
            for i, lease_id in enumerate(ids)
        ]
        assert all(w3.eth.wait_for_transaction_receipt(h)["status"] == 1 for h in hashes[-1:])
        w3.provider.make_request("evm_increaseTime", [600])
        first = operator.send(e.settle(ids, [USD] * size), gas=29_000_000)["gasUsed"]
        w3.provider.make_request("evm_increaseTime", [600])
        steady = operator.send(e.settle(ids, [USD] * size), gas=29_000_000)["gasUsed"]
        rows.append(
            {
                "leases": size,
                "fee_bps": fee_bps,
                "first_total": first,
                "first_per_lease": first // size,
                "steady_total": steady,
                "steady_per_lease": steady // size,
            }
        )
        print(f"  settled {size} leases, fee {fee_bps} bps: {steady // size:,} gas a lease", flush=True)
    assert total_leases >= next_id - 1

    signed = [operator.sign(e.approve_operator(i), gas=60_000) for i in range(tps_count)]  # any cheap call
    start = time.perf_counter()
    hashes = [w3.eth.send_raw_transaction(raw) for raw in signed]
    w3.eth.wait_for_transaction_receipt(hashes[-1])
    seconds = time.perf_counter() - start
    return {
        "operations": ops,
        "batches": rows,
        "tps": {"count": tps_count, "seconds": seconds, "per_second": tps_count / seconds},
    }


if __name__ == "__main__":
    main()
