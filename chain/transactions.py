"""Sending the operator's transactions reliably, and recording every one of them.

- Nonces come from a locked database row (the larger of it and the node's pending count), held
  only while the transaction is signed and sent, so several processes never reuse one.
- Gas is estimated (a revert surfaces here, with its reason) and given a margin; fees follow
  EIP-1559 from the latest base fee.
- Transient RPC failures (connection refused, timeouts) are retried with exponential backoff.
- A transaction not mined within the receipt timeout is replaced: the same nonce with fees
  raised by at least the 10% nodes require. Whichever version is mined wins; the others are
  recorded as replaced.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from django.db import transaction
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound

from chain.models import ChainTransaction, NonceCursor
from core.errors import Conflict, ServiceUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")


class ChainReverted(Conflict):
    """The contract refused the call; the message carries its revert reason."""

    default_code = "chain_reverted"


class ChainUnavailable(ServiceUnavailable):
    default_code = "chain_unavailable"


@dataclass(frozen=True)
class SendPolicy:
    gas_margin_percent: int = 25
    receipt_timeout: float = 60.0
    poll_interval: float = 0.1
    max_replacements: int = 3
    fee_bump_percent: int = 25
    retries: int = 4
    backoff: float = 0.5


TRANSIENT = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError)


def with_retries(call: Callable[[], T], *, policy: SendPolicy, what: str) -> T:
    for attempt in range(policy.retries + 1):
        try:
            return call()
        except TRANSIENT as exc:
            if attempt == policy.retries:
                raise ChainUnavailable(f"The chain node did not answer ({what}): {exc}") from exc
            delay = policy.backoff * 2**attempt
            logger.warning("chain: %s failed (%s); retrying in %.1fs", what, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def revert_reason(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc)
    return text.split("execution reverted:", 1)[-1].strip(" '\"") or "reverted"


def _is_revert(exc: Exception) -> bool:
    if isinstance(exc, ContractLogicError):
        return True
    return type(exc).__name__ == "TransactionFailed" or "execution reverted" in str(exc)


def _fees(w3: Web3, policy: SendPolicy) -> tuple[int, int]:
    block = with_retries(lambda: w3.eth.get_block("latest"), policy=policy, what="latest block")
    base_fee = int(block.get("baseFeePerGas") or 0)
    try:
        tip = int(with_retries(lambda: w3.eth.max_priority_fee, policy=policy, what="priority fee"))
    except (ValueError, NotImplementedError, AttributeError):  # nodes without eth_maxPriorityFeePerGas
        tip = Web3.to_wei(1, "gwei")
    tip = max(tip, 1)
    return tip, base_fee * 2 + tip


def send(
    *,
    w3: Web3,
    account: LocalAccount,
    call: Any,
    kind: str,
    reference: str = "",
    policy: SendPolicy | None = None,
    extra_gas: int = 0,
) -> ChainTransaction:
    """Sign and send ``call`` (a contract function or constructor) from ``account``; wait for it.

    ``extra_gas`` is added to the margin for calls whose cost depends on the block they land in
    (a settlement estimated in the lease's first second pays nothing, and costs less, than the
    same settlement mined a second later).

    Returns the mined transaction's record (CONFIRMED, or FAILED if it reverted on chain).
    Raises ChainReverted when the node refuses it up front, ChainUnavailable when the node
    cannot be reached or the transaction is never mined.
    """
    policy = policy or SendPolicy()
    sender = account.address
    chain_id = with_retries(lambda: w3.eth.chain_id, policy=policy, what="chain id")
    try:
        estimate = with_retries(lambda: call.estimate_gas({"from": sender}), policy=policy, what="gas estimate")
    except Exception as exc:
        if _is_revert(exc):
            raise ChainReverted(f"The escrow contract refused {kind}: {revert_reason(exc)}") from exc
        raise
    gas_limit = estimate * (100 + policy.gas_margin_percent) // 100 + extra_gas
    tip, max_fee = _fees(w3, policy)

    with transaction.atomic():
        cursor, _ = NonceCursor.objects.get_or_create(chain_id=chain_id, address=sender)
        cursor = NonceCursor.objects.select_for_update().get(pk=cursor.pk)
        pending = with_retries(lambda: w3.eth.get_transaction_count(sender, "pending"), policy=policy, what="nonce")
        nonce = max(cursor.next_nonce, pending)
        tx = call.build_transaction(
            {
                "from": sender,
                "nonce": nonce,
                "gas": gas_limit,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": tip,
                "chainId": chain_id,
            }
        )
        tx_hash = _sign_and_send(w3, account, tx, policy)
        record = ChainTransaction.objects.create(
            chain_id=chain_id,
            sender=sender,
            nonce=nonce,
            kind=kind,
            reference=reference,
            to=tx.get("to", "") or "",
            tx_hash=tx_hash,
            gas_limit=gas_limit,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tip,
        )
        cursor.next_nonce = nonce + 1
        cursor.save(update_fields=["next_nonce"])
    return _await_mined(w3=w3, account=account, record=record, tx=tx, policy=policy)


def _sign_and_send(w3: Web3, account: LocalAccount, tx: dict, policy: SendPolicy) -> str:
    signed = account.sign_transaction(tx)
    try:
        sent = with_retries(lambda: w3.eth.send_raw_transaction(signed.raw_transaction), policy=policy, what="send")
    except Exception as exc:
        if _is_revert(exc):
            raise ChainReverted(f"The escrow contract refused the transaction: {revert_reason(exc)}") from exc
        raise
    return Web3.to_hex(sent)


def _receipt(w3: Web3, tx_hash: str, policy: SendPolicy) -> Any | None:
    try:
        return with_retries(lambda: w3.eth.get_transaction_receipt(HexStr(tx_hash)), policy=policy, what="receipt")
    except TransactionNotFound:
        return None


def _await_mined(
    *, w3: Web3, account: LocalAccount, record: ChainTransaction, tx: dict, policy: SendPolicy
) -> ChainTransaction:
    candidates = [record]
    for replacement in range(policy.max_replacements + 1):
        deadline = time.monotonic() + policy.receipt_timeout
        while time.monotonic() < deadline:
            for candidate in candidates:
                receipt = _receipt(w3, candidate.tx_hash, policy)
                if receipt is not None:
                    return _finish(candidate, receipt, [c for c in candidates if c is not candidate])
            time.sleep(policy.poll_interval)
        if replacement == policy.max_replacements:
            break
        bump = 100 + policy.fee_bump_percent
        tx = {
            **tx,
            "maxFeePerGas": tx["maxFeePerGas"] * bump // 100 + 1,
            "maxPriorityFeePerGas": tx["maxPriorityFeePerGas"] * bump // 100 + 1,
        }
        try:
            new_hash = _sign_and_send(w3, account, tx, policy)
        except Exception as exc:  # noqa: BLE001 - e.g. "nonce too low": an earlier version was just mined
            logger.info("chain: replacing %s failed (%s); still waiting", record.tx_hash, exc)
            continue
        logger.warning(
            "chain: %s not mined in %.0fs; replaced by %s", candidates[-1].tx_hash, policy.receipt_timeout, new_hash
        )
        newer = ChainTransaction.objects.create(
            chain_id=record.chain_id,
            sender=record.sender,
            nonce=record.nonce,
            kind=record.kind,
            reference=record.reference,
            to=record.to,
            tx_hash=new_hash,
            gas_limit=tx["gas"],
            max_fee_per_gas=tx["maxFeePerGas"],
            max_priority_fee_per_gas=tx["maxPriorityFeePerGas"],
        )
        candidates.append(newer)
    raise ChainUnavailable(f"Transaction {record.tx_hash} ({record.kind}) was not mined; it is recorded as pending.")


def _finish(mined: ChainTransaction, receipt: Any, others: list[ChainTransaction]) -> ChainTransaction:
    mined.status = ChainTransaction.Status.CONFIRMED if receipt["status"] == 1 else ChainTransaction.Status.FAILED
    mined.gas_used = receipt["gasUsed"]
    mined.block_number = receipt["blockNumber"]
    if receipt.get("contractAddress"):
        mined.to = receipt["contractAddress"]
    mined.save(update_fields=["status", "gas_used", "block_number", "to", "updated_at"])
    for other in others:
        other.status = ChainTransaction.Status.REPLACED
        other.replaced_by = mined
        other.save(update_fields=["status", "replaced_by", "updated_at"])
    return mined
