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
from typing import TypeVar

from django.core.cache import cache
from django.db.models import Sum

from chain.adapter import EscrowClient, escrow_client
from chain.models import Wallet
from chain.transactions import ChainUnavailable
from ledger.models import LedgerAccount

logger = logging.getLogger(__name__)
T = TypeVar("T")
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
        return _sync(client, reserved=reserved, withdraw=withdraw)


def _sync(client: EscrowClient, *, reserved: Callable[[], int], withdraw: bool) -> int:
    assert client.custody_address is not None
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


def custody_lock_into_lease(*, amount: int, reference: str, reserved: Callable[[], int], send: Callable[[], T]) -> T:
    """Fund one lease (or one top-up) of a client without a wallet from the custody account: under
    the custody lock, cover what is owed, allow the operator exactly ``amount``, and ``send`` (the
    operator's ``open_lease`` or ``top_up``, which uses the allowance up). The operator's key never
    holds an allowance beyond the deposit it is about to lock: what ``send`` did not use is taken
    back."""
    client = escrow_client()
    custody = client.custody_address
    assert custody is not None
    with custody_lock():
        _sync(client, reserved=reserved, withdraw=False)
        client.custody_allow(amount=amount, reference=reference)
        try:
            return send()
        finally:
            if client.operator_allowance(custody):  # refused, or not mined: nothing stays allowed
                client.custody_allow(amount=0, reference=reference)
