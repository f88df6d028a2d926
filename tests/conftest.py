import pytest
from django.db import connection

from leases.models import LedgerAccount, LedgerEntry, LedgerTransaction


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    on_postgres = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (CI does)")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _books_balance(request: pytest.FixtureRequest):
    """After every test that touched the database: the ledger balances, to the micro-dollar."""
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    request.getfixturevalue("_django_db_helper")  # set up before us, so torn down after us
    yield
    if connection.needs_rollback:
        return
    assert_books_balance()


def assert_books_balance() -> None:
    from django.db.models import Sum

    total = LedgerEntry.objects.aggregate(s=Sum("amount"))["s"] or 0
    assert total == 0, f"ledger entries sum to {total}, not 0"
    for txn in LedgerTransaction.objects.annotate(s=Sum("entries__amount")).exclude(s=0):
        raise AssertionError(f"transaction {txn.idempotency_key} is unbalanced ({txn.s})")
    for account in LedgerAccount.objects.annotate(s=Sum("entries__amount")):
        assert account.balance == (account.s or 0), f"{account} caches {account.balance}, entries say {account.s}"
        if account.kind != LedgerAccount.Kind.EXTERNAL:
            assert account.balance >= 0, f"{account} is negative"


@pytest.fixture(autouse=True, scope="session")
def _fresh_cache() -> None:
    """Throttle counters live in the cache (Redis in CI): start every run from zero."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def anvil():  # type: ignore[no-untyped-def]
    """A fresh Anvil node per test (it starts in well under a second)."""
    from chain.devnode import Anvil, anvil_binary

    binary = anvil_binary()
    if binary is None:
        pytest.skip("needs anvil: `make tools` installs it (CI does)")
    node = Anvil(binary)
    yield node
    node.stop()
