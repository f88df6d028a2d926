"""A transaction a test sends itself, waited for: on a node that mines in the background (Anvil), a
read right after ``transact`` may not see it yet."""

from typing import Any


def mined(call: Any, sender: str) -> Any:
    """Send ``call`` (a bound contract function) from ``sender``; its receipt, once it succeeded."""
    receipt = call.w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))
    assert receipt["status"] == 1, receipt
    return receipt
