"""Deposits and withdrawals on the escrow contract, booked on the clients' balances.

The chain indexer records the contract's ``Deposited`` and ``Withdrawn`` events; each one of a
linked wallet moves its owner's balance once (its key is the event's place on chain). Events of
wallets nobody linked yet stay pending and are booked once the wallet is linked; the marketplace's
own movements (the custody account's, ``ledger.custody``) are not a client's.
"""

import logging

from django.db import transaction
from django.utils import timezone

from chain.adapter import custody_address
from chain.models import ChainEvent, Wallet
from core.errors import PaymentRequired
from ledger import services as ledger
from ledger.models import LedgerAccount, LedgerTransaction

logger = logging.getLogger(__name__)


def chain_deposits_apply(*, limit: int = 500) -> int:
    """Book the indexed deposits and withdrawals of linked wallets. Returns how many were booked."""
    applied = 0
    pending = ChainEvent.objects.filter(applied_at__isnull=True, name__in=["Deposited", "Withdrawn"]).order_by(
        "block_number", "log_index"
    )[:limit]
    custody = custody_address()  # from the settings: no round trip to the node
    for event in pending:
        if event.args["account"] == custody:  # the marketplace's own movements: see ledger.custody
            ChainEvent.objects.filter(pk=event.pk).update(applied_at=timezone.now())
            continue
        owner = Wallet.objects.filter(address=event.args["account"]).values_list("user_id", flat=True).first()
        if owner is None:
            continue
        amount = int(event.args["amount"])
        source = ledger.external_account(name=f"chain:{event.chain_id}")
        balance = ledger.user_account(user=owner, kind=LedgerAccount.Kind.CLIENT_BALANCE)
        if event.name == "Deposited":
            kind, legs = LedgerTransaction.Kind.DEPOSIT, [(source, -amount), (balance, amount)]
        else:
            kind, legs = LedgerTransaction.Kind.WITHDRAWAL, [(balance, -amount), (source, amount)]
        try:
            with transaction.atomic():
                ledger.post(
                    key=f"chain:{event.chain_id}:{event.tx_hash}:{event.log_index}",
                    kind=kind,
                    legs=legs,
                    memo=f"{event.name} on chain, {event.tx_hash}",
                )
                ChainEvent.objects.filter(pk=event.pk).update(applied_at=timezone.now())
        except PaymentRequired:
            logger.warning("withdrawal %s exceeds the ledger balance of user %s; will retry", event.tx_hash, owner)
            continue
        applied += 1
    return applied
