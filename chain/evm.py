"""An in-process EVM (py-evm through eth-tester) and contract deployment from the artifacts.

This is the embedded chain backend: what ``make run`` and most tests use, with no node to run.
"""

from typing import Any

from eth_account import Account
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.main import get_default_account_keys
from web3 import Web3
from web3.contract import Contract
from web3.providers.eth_tester import EthereumTesterProvider

from chain.compiler import load_artifact

# The in-process chain's accounts are the same in every process: the demo gives two of them to
# the demo client and the demo provider as their wallets (unlocked: it is a development chain).
DEMO_CLIENT_ACCOUNT = 5
# ... and one to the marketplace's custody account (see chain.adapter).
CUSTODY_ACCOUNT = 4
DEMO_PROVIDER_ACCOUNT = 6


def embedded_account(index: int) -> str:
    """The address of the in-process chain's account ``index``, without starting a chain."""
    return Account.from_key(get_default_account_keys(quantity=index + 1)[index].to_bytes()).address


def embedded_key(index: int) -> str:
    """The private key (hex) of the in-process chain's account ``index``: public, development only."""
    return get_default_account_keys(quantity=index + 1)[index].to_hex()


def embedded_web3() -> Web3:
    """A fresh chain with ten funded accounts, blocks mined on every transaction."""
    tester = EthereumTester(backend=PyEVMBackend())
    return Web3(EthereumTesterProvider(tester))


def eth_tester_of(w3: Web3) -> EthereumTester:
    return w3.provider.ethereum_tester  # type: ignore[attr-defined]  # the embedded chain's provider has one


def contract_at(w3: Web3, name: str, address: str) -> Contract:
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(name)["abi"])


def deploy(w3: Web3, name: str, *args: Any, sender: str, artifact: dict | None = None) -> Contract:
    artifact = artifact or load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx_hash = factory.constructor(*args).transact({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        raise RuntimeError(f"deploying {name} failed")
    address = receipt["contractAddress"]
    assert address is not None  # a contract creation's receipt names the contract
    return w3.eth.contract(address=address, abi=artifact["abi"])
