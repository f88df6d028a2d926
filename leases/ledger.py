"""The double-entry ledger: every movement of money is one balanced, idempotent transaction.

Accounts hold integer micro-dollars. A transaction's legs sum to zero; internal accounts never go
below zero; each posting carries an idempotency key, so a retried posting changes nothing. The
lease escrow accounts are the book-keeping twin of the escrow contract: when escrow moves on
chain, these postings mirror confirmed chain events and the API does not change.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from core.bulk import update_column
from core.errors import PaymentRequired, ValidationFailed
from core.models import User
from core.money import format_usd
from leases.models import Lease, LedgerAccount, LedgerEntry, LedgerTransaction

DEMO_FAUCET = "demo_faucet"
MAX_DEPOSIT = 10**15  # one billion dollars: anything beyond is a mistake, not a deposit

Leg = tuple[LedgerAccount, int]


def user_account(*, user: User | int, kind: str) -> LedgerAccount:
    owner_id = user if isinstance(user, int) else user.pk
    account = LedgerAccount.objects.filter(kind=kind, owner_id=owner_id).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(kind=kind, owner_id=owner_id)
    except IntegrityError:  # created concurrently
        return LedgerAccount.objects.get(kind=kind, owner_id=owner_id)


def _named_account(*, kind: str, name: str) -> LedgerAccount:
    account = LedgerAccount.objects.filter(kind=kind, name=name).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(kind=kind, name=name)
    except IntegrityError:  # created concurrently
        return LedgerAccount.objects.get(kind=kind, name=name)


def external_account(*, name: str) -> LedgerAccount:
    return _named_account(kind=LedgerAccount.Kind.EXTERNAL, name=name)


def platform_fees_account() -> LedgerAccount:
    return _named_account(kind=LedgerAccount.Kind.PLATFORM_FEES, name="platform")


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


def escrow_account_open(*, lease: Lease) -> LedgerAccount:
    return LedgerAccount.objects.create(kind=LedgerAccount.Kind.LEASE_ESCROW, lease=lease)


def post(
    *,
    key: str,
    kind: str,
    legs: Sequence[Leg],
    lease: Lease | None = None,
    memo: str = "",
) -> LedgerTransaction | None:
    """Post a balanced transaction once. Returns it (or the earlier one with the same key).

    Returns None when every leg is zero (nothing moves, nothing is written).
    Raises PaymentRequired when an internal account would go below zero.
    """
    legs = [(account, amount) for account, amount in legs if amount != 0]
    if not legs:
        return None
    if sum(amount for _, amount in legs) != 0:
        raise ValueError(f"unbalanced ledger transaction {key}: {legs}")
    with transaction.atomic():
        existing = LedgerTransaction.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return existing
        ids = sorted({account.pk for account, _ in legs})
        locked = {a.pk: a for a in LedgerAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        changes: dict[int, int] = {}
        for account, amount in legs:
            changes[account.pk] = changes.get(account.pk, 0) + amount
        for pk, delta in changes.items():
            account = locked[pk]
            if account.kind != LedgerAccount.Kind.EXTERNAL and account.balance + delta < 0:
                raise PaymentRequired(
                    f"Insufficient funds: the {account.get_kind_display().lower()} holds "
                    f"{format_usd(account.balance)} and {format_usd(-delta)} is needed.",
                    fields={"balance": account.balance, "required": -delta},
                )
        try:
            with transaction.atomic():
                txn = LedgerTransaction.objects.create(idempotency_key=key, kind=kind, lease=lease, memo=memo)
        except IntegrityError:  # the same key posted concurrently: it won, we change nothing
            return LedgerTransaction.objects.get(idempotency_key=key)
        entries = []
        for account, amount in legs:
            locked[account.pk].balance += amount
            entries.append(
                LedgerEntry(
                    transaction=txn, account_id=account.pk, amount=amount, balance_after=locked[account.pk].balance
                )
            )
        for pk in changes:
            LedgerAccount.objects.filter(pk=pk).update(balance=locked[pk].balance)
        LedgerEntry.objects.bulk_create(entries)
        return txn


@dataclass(frozen=True)
class Posting:
    key: str
    kind: str
    legs: Sequence[Leg]
    lease: Lease | None = None
    memo: str = ""


def post_many(postings: Sequence[Posting]) -> set[str]:
    """Post many balanced transactions at once: one set of account locks, bulk inserts, each
    posting once per key (as ``post``). Returns the keys posted now. If any internal account would
    go below zero, nothing is written (PaymentRequired)."""
    todo: dict[str, Posting] = {}
    for posting in postings:
        legs = [(account, amount) for account, amount in posting.legs if amount != 0]
        if sum(amount for _, amount in legs) != 0:
            raise ValueError(f"unbalanced ledger transaction {posting.key}: {legs}")
        if legs and posting.key not in todo:
            todo[posting.key] = Posting(posting.key, posting.kind, legs, posting.lease, posting.memo)
    if not todo:
        return set()
    with transaction.atomic():
        for done in LedgerTransaction.objects.filter(idempotency_key__in=list(todo)).values_list(
            "idempotency_key", flat=True
        ):
            todo.pop(done)
        if not todo:
            return set()
        ids = sorted({account.pk for posting in todo.values() for account, _ in posting.legs})
        locked = {a.pk: a for a in LedgerAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        txns = LedgerTransaction.objects.bulk_create(
            LedgerTransaction(idempotency_key=p.key, kind=p.kind, lease=p.lease, memo=p.memo) for p in todo.values()
        )
        entries = []
        for txn, posting in zip(txns, todo.values(), strict=True):
            for account, amount in posting.legs:
                row = locked[account.pk]
                row.balance += amount
                if row.kind != LedgerAccount.Kind.EXTERNAL and row.balance < 0:
                    raise PaymentRequired(
                        f"Insufficient funds: the {row.get_kind_display().lower()} cannot pay {format_usd(-amount)}.",
                        fields={"balance": row.balance - amount, "required": -amount},
                    )
                entries.append(
                    LedgerEntry(transaction=txn, account_id=row.pk, amount=amount, balance_after=row.balance)
                )
        LedgerEntry.objects.bulk_create(entries)
        update_column(LedgerAccount, "balance", {pk: row.balance for pk, row in locked.items()})
    return set(todo)


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
