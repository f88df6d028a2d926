import pytest

from core.errors import PaymentRequired, ValidationFailed
from ledger import services as ledger
from ledger.models import LedgerAccount, LedgerTransaction
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_deposit_is_a_balanced_transaction_and_idempotent() -> None:
    user = f.user(client=True)
    first = ledger.deposit(user=user, amount=500, key="dep-1")
    again = ledger.deposit(user=user, amount=500, key="dep-1")
    assert first.pk == again.pk
    assert LedgerTransaction.objects.count() == 1
    assert ledger.user_account(user=user, kind=LedgerAccount.Kind.CLIENT_BALANCE).balance == 500
    assert ledger.external_account(name=ledger.DEMO_FAUCET).balance == -500


@pytest.mark.parametrize("amount", [0, -1, 10**16, 1.5, True, "10"])
def test_absurd_deposits_are_refused(amount: object) -> None:
    with pytest.raises(ValidationFailed):
        ledger.deposit(user=f.user(client=True), amount=amount, key="x")  # type: ignore[arg-type]
    assert not LedgerTransaction.objects.exists()


def test_an_internal_account_never_goes_negative() -> None:
    a, b = f.user(client=True), f.user(client=True)
    ledger.deposit(user=a, amount=100, key="d")
    src = ledger.user_account(user=a, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    dst = ledger.user_account(user=b, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    with pytest.raises(PaymentRequired):
        ledger.post(key="t", kind="deposit", legs=[(src, -101), (dst, 101)])
    assert not LedgerTransaction.objects.filter(idempotency_key="t").exists()
    src.refresh_from_db()
    assert src.balance == 100


def test_unbalanced_transactions_are_a_bug() -> None:
    user = f.user(client=True)
    account = ledger.user_account(user=user, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    with pytest.raises(ValueError, match="unbalanced"):
        ledger.post(key="u", kind="deposit", legs=[(account, 5)])


def test_zero_legs_write_nothing() -> None:
    user = f.user(client=True)
    account = ledger.user_account(user=user, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    assert ledger.post(key="z", kind="deposit", legs=[(account, 0)]) is None
    assert not LedgerTransaction.objects.exists()


@pytest.mark.parametrize(
    ("amount", "text"),
    [(0, "$0.00"), (1_500_000, "$1.50"), (1_234_567, "$1.234567"), (-2_000_000, "-$2.00"), (10**12, "$1,000,000.00")],
)
def test_format_usd(amount: int, text: str) -> None:
    assert ledger.format_usd(amount) == text


def test_many_postings_at_once_each_once_and_all_or_nothing() -> None:
    a, b = f.client_user(balance=0), f.client_user(balance=0)
    source = ledger.external_account(name="test source")
    bal = {u: ledger.user_account(user=u, kind=LedgerAccount.Kind.CLIENT_BALANCE) for u in (a, b)}
    postings = [
        ledger.Posting("many:1", LedgerTransaction.Kind.DEPOSIT, [(source, -5), (bal[a], 5)]),
        ledger.Posting("many:2", LedgerTransaction.Kind.DEPOSIT, [(source, -7), (bal[b], 7)]),
        ledger.Posting("many:3", LedgerTransaction.Kind.DEPOSIT, [(source, -1), (bal[a], 1)]),
        ledger.Posting("many:1", LedgerTransaction.Kind.DEPOSIT, [(source, -5), (bal[a], 5)]),  # the same key twice
        ledger.Posting("many:0", LedgerTransaction.Kind.DEPOSIT, [(source, 0), (bal[a], 0)]),  # nothing moves
    ]
    assert ledger.post_many(postings) == {"many:1", "many:2", "many:3"}
    assert ledger.post_many(postings) == set()  # replayed: nothing new
    for account in (*bal.values(), source):
        account.refresh_from_db()
    assert (bal[a].balance, bal[b].balance, source.balance) == (6, 7, -13)
    entries = list(bal[a].entries.order_by("id").values_list("amount", "balance_after"))
    assert entries == [(5, 5), (1, 6)]

    overdraw = [
        ledger.Posting("many:4", LedgerTransaction.Kind.WITHDRAWAL, [(bal[b], -7), (source, 7)]),
        ledger.Posting("many:5", LedgerTransaction.Kind.WITHDRAWAL, [(bal[a], -7), (source, 7)]),  # a holds 6
    ]
    with pytest.raises(PaymentRequired):
        ledger.post_many(overdraw)
    bal[b].refresh_from_db()
    assert bal[b].balance == 7 and not LedgerTransaction.objects.filter(idempotency_key="many:4").exists()
    with pytest.raises(ValueError, match="unbalanced"):
        ledger.post_many([ledger.Posting("many:6", LedgerTransaction.Kind.DEPOSIT, [(source, -1), (bal[a], 2)])])
