"""The ledger's models moved from the leases app to their own without touching a row.

The database is filled through the models as they were before the move (the migration state of
``leases.0012``), then migrated forward: every account, transaction and leg reads the same through
the ledger app, each balance still equals the sum of its legs, postings go on where they left off,
and the content types (and so the permissions and the admin's history) moved with the models.
"""

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from ledger import services as ledger
from ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from marketplace import services as market
from tests import factories as f
from tests.factories import USD

BEFORE = [("leases", "0012_alter_ledgertransaction_kind"), ("ledger", None)]
MODELS = ["ledgeraccount", "ledgertransaction", "ledgerentry"]


def _snapshot(account: Any, txn: Any, entry: Any) -> dict[str, list[tuple]]:
    return {
        "accounts": list(
            account.objects.order_by("pk").values_list("pk", "kind", "owner_id", "lease_id", "name", "balance")
        ),
        "transactions": list(
            txn.objects.order_by("pk").values_list("pk", "idempotency_key", "kind", "lease_id", "memo")
        ),
        "entries": list(
            entry.objects.order_by("pk").values_list("pk", "transaction_id", "account_id", "amount", "balance_after")
        ),
    }


def _post_the_old_way(apps: Any, *, key: str, kind: str, legs: list[tuple[int, int]], lease_id: int | None) -> None:
    """A posting as the ledger's code wrote it before the move, through the models of that time."""
    account_model = apps.get_model("leases", "LedgerAccount")
    txn = apps.get_model("leases", "LedgerTransaction").objects.create(
        idempotency_key=key, kind=kind, lease_id=lease_id, memo=f"old {key}"
    )
    for account_id, amount in legs:
        account = account_model.objects.get(pk=account_id)
        account.balance += amount
        account.save(update_fields=["balance"])
        apps.get_model("leases", "LedgerEntry").objects.create(
            transaction=txn, account=account, amount=amount, balance_after=account.balance
        )


@pytest.mark.django_db(transaction=True)
def test_moving_the_ledger_to_its_app_keeps_every_row_and_balance() -> None:
    client = f.client_user(balance=100 * USD)
    order = f.order(client, duration_hours=2)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(f.provider(), order, 3 * USD).pk)
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        leaves = [node for node in executor.loader.graph.leaf_nodes() if node[0] not in ("leases", "ledger")]
        old = executor.loader.project_state([*leaves, BEFORE[0]]).apps
        account, txn, entry = (
            old.get_model("leases", name) for name in ("LedgerAccount", "LedgerTransaction", "LedgerEntry")
        )
        content_type = old.get_model("contenttypes", "ContentType")
        assert set(
            content_type.objects.filter(app_label="leases", model__in=MODELS).values_list("model", flat=True)
        ) == set(MODELS)
        types_before = dict(
            content_type.objects.filter(app_label="leases", model__in=MODELS).values_list("model", "pk")
        )

        # the old code at work: a deposit and a top-up of the lease, through the models of that time
        newcomer = f.client_user(balance=0)
        balance = account.objects.create(kind="client_balance", owner_id=newcomer.pk)
        source = account.objects.get(kind="external", name=ledger.DEMO_FAUCET)
        _post_the_old_way(
            old, key="old:deposit", kind="deposit", legs=[(source.pk, -7 * USD), (balance.pk, 7 * USD)], lease_id=None
        )
        held = account.objects.get(lease_id=lease.pk)
        theirs = account.objects.get(kind="client_balance", owner_id=client.pk)
        _post_the_old_way(
            old, key="old:top-up", kind="lease_top_up", legs=[(theirs.pk, -USD), (held.pk, USD)], lease_id=lease.pk
        )
        before = _snapshot(account, txn, entry)
        assert len(before["transactions"]) >= 4 and len(before["entries"]) >= 8

        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert _snapshot(LedgerAccount, LedgerTransaction, LedgerEntry) == before
    for row in LedgerAccount.objects.all():
        assert row.balance == sum(row.entries.values_list("amount", flat=True)), row
    assert LedgerAccount.objects.get(lease=lease).balance == lease.deposit + USD
    from django.contrib.contenttypes.models import ContentType

    moved = dict(ContentType.objects.filter(app_label="ledger", model__in=MODELS).values_list("model", "pk"))
    assert moved == types_before and not ContentType.objects.filter(app_label="leases", model__in=MODELS).exists()

    # postings go on where the old ones left off, on the moved accounts
    posted = ledger.deposit(user=client, amount=2 * USD, key="after the move")
    assert posted.pk > max(pk for pk, *_ in before["transactions"])
    theirs_now = LedgerAccount.objects.get(owner=client, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    assert theirs_now.balance == dict((pk, bal) for pk, *_, bal in before["accounts"])[theirs_now.pk] + 2 * USD
