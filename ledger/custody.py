"""The custody account: the marketplace's own wallet in the escrow contract, holding the money of
clients without a linked wallet (those who pay by card).

Its free balance in the contract must equal what those clients are owed: their balances in the
books plus what is reserved for their leases and not yet in the contract (the caller, which knows
the leases, passes that part as ``reserved``). ``custody_sync`` deposits the shortfall and withdraws
what is no longer owed (a card refund or dispute), one movement at a time across workers.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.core.cache import cache
from django.db.models import Sum

from chain.adapter import escrow_client
from chain.models import Wallet
from chain.transactions import ChainUnavailable
from ledger.models import LedgerAccount

logger = logging.getLogger(__name__)
CUSTODY_LOCK = "leases:custody:sync"
CUSTODY_LOCK_SECONDS = 600  # longer than sending one transaction may take
CUSTODY_LOCK_WAIT_SECONDS = 30


def walletless_balances() -> int:
    """What the books hold for clients without a linked wallet."""
    balances = LedgerAccount.objects.filter(kind=LedgerAccount.Kind.CLIENT_BALANCE, owner__isnull=False).exclude(
        owner__in=Wallet.objects.values("user_id")
    )
    return balances.aggregate(total=Sum("balance"))["total"] or 0


@contextmanager
def custody_lock() -> Iterator[None]:
    """One custody movement at a time across workers (two would both see the same shortfall)."""
    deadline = time.monotonic() + CUSTODY_LOCK_WAIT_SECONDS
    while not cache.add(CUSTODY_LOCK, 1, timeout=CUSTODY_LOCK_SECONDS):
        if time.monotonic() > deadline:
            raise ChainUnavailable("the custody account is busy with another movement")
        time.sleep(0.1)
    try:
        yield
    finally:
        cache.delete(CUSTODY_LOCK)


def custody_sync(*, reserved: Callable[[], int], withdraw: bool = True) -> int:
    """Bring the custody account's free balance in the escrow to ``walletless_balances()`` plus
    ``reserved()`` (read under the lock).

    Deposits the shortfall; with ``withdraw``, takes out what is no longer owed. Returns the amount
    moved (negative: withdrawn). Nothing to do without a custody account.
    """
    client = escrow_client()
    if client.custody_address is None:
        return 0
    with custody_lock():
        owed = walletless_balances() + reserved()
        held = client.balance_of(client.custody_address)
        if owed > held:
            client.custody_deposit(amount=owed - held, reference=f"custody:owed:{owed}")
            logger.info("custody: deposited %d to cover %d owed", owed - held, owed)
            return owed - held
        if withdraw and held > owed:
            client.custody_withdraw(amount=held - owed, reference=f"custody:owed:{owed}")
            logger.warning("custody: withdrew %d no longer owed (card refunds or disputes)", held - owed)
            return owed - held
    return 0
