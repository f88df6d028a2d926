"""The double-entry ledger: every movement of money is one balanced, idempotent transaction.

Accounts hold integer micro-dollars. A transaction's legs sum to zero; internal accounts never go
below zero; each posting carries an idempotency key, so a retried posting changes nothing. One
algorithm posts (``post_many``); ``post`` is it for a single transaction. The lease escrow accounts
are the book-keeping twin of the escrow contract: when escrow moves on chain, these postings mirror
confirmed chain events and the API does not change.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from core.bulk import update_column
from core.errors import PaymentRequired, ValidationFailed
from core.models import User
from core.money import format_usd
from ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction

DEMO_FAUCET = "demo_faucet"
MAX_DEPOSIT = 10**15  # one billion dollars: anything beyond is a mistake, not a deposit

Leg = tuple[LedgerAccount, int]


def _account(**identity: object) -> LedgerAccount:
    """The account with this identity, opened if it is not yet (once, even when raced)."""
    account = LedgerAccount.objects.filter(**identity).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(**identity)
    except IntegrityError:  # opened concurrently
        return LedgerAccount.objects.get(**identity)


def user_account(*, user: User | int, kind: str) -> LedgerAccount:
    return _account(kind=kind, owner_id=user if isinstance(user, int) else user.pk)


def external_account(*, name: str) -> LedgerAccount:
    return _account(kind=LedgerAccount.Kind.EXTERNAL, name=name)


def platform_fees_account() -> LedgerAccount:
    return _account(kind=LedgerAccount.Kind.PLATFORM_FEES, name="platform")


def escrow_account(*, lease_id: int) -> LedgerAccount:
    return LedgerAccount.objects.get(kind=LedgerAccount.Kind.LEASE_ESCROW, lease_id=lease_id)


def escrow_account_open(*, lease_id: int) -> LedgerAccount:
    return LedgerAccount.objects.create(kind=LedgerAccount.Kind.LEASE_ESCROW, lease_id=lease_id)


def platform_fee(amount: int, bps: int) -> int:
    """The platform's share of a payment to a provider, rounded down, as the escrow contract does."""
    return amount * bps // 10_000


def payout_legs(
    *, escrow: LedgerAccount, earnings: LedgerAccount, amount: int, fee_bps: int, platform: LedgerAccount | None = None
) -> list[Leg]:
    """A lease's escrow pays ``amount``: the provider's earnings get it less the platform's fee
    (``platform``: the platform fees account, when the caller has it at hand)."""
    fee = platform_fee(amount, fee_bps)
    if not fee:
        return [(escrow, -amount), (earnings, amount)]
    return [(escrow, -amount), (earnings, amount - fee), (platform or platform_fees_account(), fee)]


@dataclass(frozen=True)
class Posting:
    key: str
    kind: str
    legs: Sequence[Leg]
    lease_id: int | None = None
    memo: str = ""


def post_many(postings: Sequence[Posting]) -> set[str]:
    """Post balanced transactions, each once per key, under one set of account locks with bulk
    inserts. Returns the keys posted now (a key posted before is left out).

    Raises ValueError for an unbalanced posting, and PaymentRequired when an internal account would
    go below zero: then nothing is written. A posting whose legs are all zero writes nothing.
    """
    return set(_post(postings))


def _post(postings: Sequence[Posting]) -> dict[str, LedgerTransaction]:
    """The posting algorithm (``post_many``): the transactions posted now, by key."""
    todo: dict[str, Posting] = {}
    for posting in postings:
        legs = [(account, amount) for account, amount in posting.legs if amount != 0]
        if sum(amount for _, amount in legs) != 0:
            raise ValueError(f"unbalanced ledger transaction {posting.key}: {legs}")
        if legs and posting.key not in todo:
            todo[posting.key] = Posting(posting.key, posting.kind, legs, posting.lease_id, posting.memo)
    if not todo:
        return {}
    with transaction.atomic():
        # Lock the accounts first: a concurrent posting of the same key holds them until it commits,
        # so the keys read next already show it.
        ids = sorted({account.pk for posting in todo.values() for account, _ in posting.legs})
        locked = {a.pk: a for a in LedgerAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        while True:
            done = list(
                LedgerTransaction.objects.filter(idempotency_key__in=list(todo)).values_list(
                    "idempotency_key", flat=True
                )
            )
            for key in done:
                todo.pop(key)
            if not todo:
                return {}
            try:
                with transaction.atomic():
                    txns = LedgerTransaction.objects.bulk_create(
                        LedgerTransaction(idempotency_key=p.key, kind=p.kind, lease_id=p.lease_id, memo=p.memo)
                        for p in todo.values()
                    )
                break
            except IntegrityError:
                # a key posted concurrently on other accounts: it won, post the rest; any other
                # refusal (no key of ours was posted meanwhile) is not ours to retry
                if not LedgerTransaction.objects.filter(idempotency_key__in=list(todo)).exists():
                    raise
        entries = []
        for txn, posting in zip(txns, todo.values(), strict=True):
            changes: dict[int, int] = {}
            for account, amount in posting.legs:
                changes[account.pk] = changes.get(account.pk, 0) + amount
            for pk, delta in changes.items():
                row = locked[pk]
                if row.kind != LedgerAccount.Kind.EXTERNAL and row.balance + delta < 0:
                    raise PaymentRequired(
                        f"Insufficient funds: the {row.get_kind_display().lower()} holds "
                        f"{format_usd(row.balance)} and {format_usd(-delta)} is needed.",
                        fields={"balance": row.balance, "required": -delta},
                    )
            for account, amount in posting.legs:
                row = locked[account.pk]
                row.balance += amount
                entries.append(
                    LedgerEntry(transaction=txn, account_id=row.pk, amount=amount, balance_after=row.balance)
                )
        LedgerEntry.objects.bulk_create(entries)
        update_column(LedgerAccount, "balance", {pk: row.balance for pk, row in locked.items()})
        return {txn.idempotency_key: txn for txn in txns}


def post(
    *, key: str, kind: str, legs: Sequence[Leg], lease_id: int | None = None, memo: str = ""
) -> LedgerTransaction | None:
    """Post one balanced transaction once (``post_many``). Returns it, or the earlier one with the
    same key; None when every leg is zero (nothing moves, nothing is written)."""
    posted = _post([Posting(key, kind, legs, lease_id, memo)])
    if key in posted:
        return posted[key]
    if not any(amount for _, amount in legs):
        return None
    return LedgerTransaction.objects.get(idempotency_key=key)


def deposit(*, user: User, amount: int, key: str, source: str = DEMO_FAUCET, memo: str = "") -> LedgerTransaction:
    """Credit a client's balance from an external source (card, chain deposit, demo faucet)."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0 or amount > MAX_DEPOSIT:
        raise ValidationFailed("Invalid amount.", fields={"amount": [f"An integer from 1 to {MAX_DEPOSIT}."]})
    txn = post(
        key=key,
        kind=LedgerTransaction.Kind.DEPOSIT,
        legs=[
            (external_account(name=source), -amount),
            (user_account(user=user, kind=LedgerAccount.Kind.CLIENT_BALANCE), amount),
        ],
        memo=memo or f"Deposit from {source}",
    )
    assert txn is not None
    return txn
