"""The admin: money reads in dollars, and is never edited there (it moves only through the books)."""

import re

import pytest
from django.contrib import admin
from django.test import Client

from core.admin import MoneyInDollars
from core.models import User
from ledger.models import LedgerAccount, LedgerTransaction
from providers.models import ProviderGpu
from tests.leases.test_leases import awarded

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator() -> Client:
    c = Client()
    c.force_login(User.objects.create_superuser("operator", "operator@example.com", "x"))
    return c


def test_money_reads_in_dollars_and_has_no_input(operator: Client) -> None:
    """Leases, orders and bids are read here and changed only by the product (their states have one
    owner); money elsewhere is shown, never typed."""
    client, provider, lease = awarded(price=3_600_001, hours=2)
    ProviderGpu.objects.filter(provider=provider).update(price_per_gpu_hour=2_500_000)
    pages = {
        "/admin/leases/lease/": ["$3.600001"],
        f"/admin/leases/lease/{lease.pk}/change/": ["$3.600001", "$7.200002"],  # the price, the deposit
        "/admin/marketplace/order/": [],
        f"/admin/marketplace/order/{lease.order_id}/change/": ["$3.600001"],  # the bid inline
        "/admin/marketplace/bid/": ["$3.600001"],
        f"/admin/providers/provider/{provider.pk}/change/": ["$2.50"],
        "/admin/ledger/ledgeraccount/": ["$100.00", "$7.200002"],
        f"/admin/ledger/ledgertransaction/{LedgerTransaction.objects.filter(lease=lease).first().pk}/change/": [
            "$7.200002"
        ],
        "/admin/trust/compensation/": [],
    }
    money_inputs = re.compile(
        r'name="[^"]*(price|deposit|amount|balance|refund|penalty|paid|fee|top_up|topped_up)[^"]*"'
    )
    for url, shown in pages.items():
        response = operator.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for amount in shown:
            assert amount in html, (url, amount)
        assert not money_inputs.search(html), (url, money_inputs.search(html))
    assert LedgerAccount.objects.filter(owner=client, kind=LedgerAccount.Kind.CLIENT_BALANCE).exists()


def test_every_registered_money_field_is_shown_in_dollars() -> None:
    """A model admin that lists a money column lists it through MoneyInDollars: no micro-dollars
    reach an operator's eyes as a bare integer."""
    money = re.compile(r"(price|deposit|amount|balance|refund|penalty|^paid$|fee$|top_up|topped_up|credited)")
    for model, model_admin in admin.site._registry.items():
        shown = [name for name in model_admin.list_display if isinstance(name, str)]
        bare = [
            name for name in shown if money.search(name) and not name.endswith("_usd") and name != "platform_fee_bps"
        ]
        assert not bare, (model.__name__, bare)
        if any(money.search(field.name) for field in model._meta.fields if field.name != "platform_fee_bps"):
            assert isinstance(model_admin, MoneyInDollars), model.__name__
