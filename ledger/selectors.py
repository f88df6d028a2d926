"""Reads of the books: a user's movements and monthly statements."""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import QuerySet

from core.models import User
from ledger.models import LedgerAccount, LedgerEntry


def balances(*, user: User) -> dict[str, int]:
    """The user's account balances by kind (an account never opened is absent)."""
    return dict(LedgerAccount.objects.filter(owner=user).values_list("kind", "balance"))


def ledger_for_user(*, user: User) -> QuerySet[LedgerEntry]:
    """Movements on the user's balance and earnings, newest first."""
    return (
        LedgerEntry.objects.filter(
            account__owner=user,
            account__kind__in=[LedgerAccount.Kind.CLIENT_BALANCE, LedgerAccount.Kind.PROVIDER_EARNINGS],
        )
        .select_related("transaction", "account")
        .order_by("-id")
    )


@dataclass(frozen=True)
class StatementLine:
    kind: str
    count: int
    total: int


@dataclass(frozen=True)
class AccountStatement:
    account: str  # client_balance or provider_earnings
    month: str  # YYYY-MM
    opening_balance: int
    lines: list[StatementLine]
    closing_balance: int
    entries: list[LedgerEntry]


def account_statements(*, user: User, year: int, month: int) -> list[AccountStatement]:
    """For each of the user's accounts: the month's opening balance, its movements by kind, and
    its closing balance (opening + movements = closing, always)."""
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    statements = []
    for account in LedgerAccount.objects.filter(owner=user).order_by("kind"):
        before = account.entries.filter(created_at__lt=start).order_by("-id").first()
        entries = list(
            account.entries.filter(created_at__gte=start, created_at__lt=end)
            .select_related("transaction")
            .order_by("id")
        )
        by_kind: dict[str, list[int]] = {}
        for entry in entries:
            by_kind.setdefault(entry.transaction.kind, []).append(entry.amount)
        opening = before.balance_after if before else 0
        statements.append(
            AccountStatement(
                account=account.kind,
                month=f"{year:04d}-{month:02d}",
                opening_balance=opening,
                lines=[StatementLine(kind, len(amounts), sum(amounts)) for kind, amounts in sorted(by_kind.items())],
                closing_balance=opening + sum(e.amount for e in entries),
                entries=entries,
            )
        )
    return statements
