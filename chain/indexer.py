"""Reading the escrow's events into the database, from a stored cursor.

Each run reads blocks from the cursor up to ``latest - confirmations`` in chunks, decodes every
log the escrow emitted, stores it once per (transaction hash, log index) and moves the cursor,
all in one database transaction per chunk: a crash or a rerun never loses or doubles an event.
Waiting for confirmations keeps shallow reorganisations out; the events feed the ledger mirror
and ``chain_reconcile``.
"""

import functools
from typing import Any

from django.db import transaction
from web3 import Web3
from web3.exceptions import MismatchedABI

from chain.adapter import EscrowClient
from chain.models import ChainEvent, IndexerCursor
from chain.transactions import with_retries

CHUNK_BLOCKS = 2_000
SAFE_INTEGER = 2**53


def _plain(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < SAFE_INTEGER else str(value)
    if isinstance(value, bytes):
        return Web3.to_hex(value)
    return value


def _event_names(escrow: Any) -> dict[bytes, str]:
    """The escrow's events by their topic (the hash of the signature)."""
    names = {}
    for abi in escrow.abi:
        if abi["type"] == "event":
            signature = f"{abi['name']}({','.join(i['type'] for i in abi['inputs'])})"
            names[bytes(Web3.keccak(text=signature))] = abi["name"]
    return names


def index_events(*, client: EscrowClient, confirmations: int = 1, chunk: int = CHUNK_BLOCKS) -> int:
    """Record every escrow event up to the confirmed head; returns how many were new."""
    w3, escrow, policy = client.w3, client.escrow, client.policy
    chain_id = client.chain_id
    address = escrow.address
    names = _event_names(escrow)
    head = with_retries(lambda: w3.eth.block_number, policy=policy, what="block number") - confirmations
    cursor, _ = IndexerCursor.objects.get_or_create(chain_id=chain_id, contract=address)
    created = 0
    start = cursor.next_block
    while start <= head:
        end = min(start + chunk - 1, head)
        logs = with_retries(
            functools.partial(w3.eth.get_logs, {"address": address, "fromBlock": start, "toBlock": end}),
            policy=policy,
            what="logs",
        )
        events = []
        for log in logs:
            name = names.get(bytes(log["topics"][0])) if log["topics"] else None
            if name is None:
                continue
            try:
                decoded = escrow.events[name]().process_log(log)
            except MismatchedABI:
                continue
            events.append(
                ChainEvent(
                    chain_id=chain_id,
                    contract=address,
                    name=decoded["event"],
                    args={k: _plain(v) for k, v in decoded["args"].items()},
                    block_number=log["blockNumber"],
                    block_hash=Web3.to_hex(log["blockHash"]),
                    tx_hash=Web3.to_hex(log["transactionHash"]),
                    log_index=log["logIndex"],
                )
            )
        with transaction.atomic():
            locked = IndexerCursor.objects.select_for_update().get(pk=cursor.pk)
            if locked.next_block != start:  # another indexer moved it: let it own this range
                return created
            seen = set(
                ChainEvent.objects.filter(
                    chain_id=chain_id, block_number__gte=start, block_number__lte=end
                ).values_list("tx_hash", "log_index")
            )
            fresh = [e for e in events if (e.tx_hash, e.log_index) not in seen]
            ChainEvent.objects.bulk_create(fresh)
            created += len(fresh)
            locked.next_block = end + 1
            locked.save(update_fields=["next_block", "updated_at"])
        start = end + 1
    return created
