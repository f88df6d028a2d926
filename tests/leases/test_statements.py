"""Statements: per lease (periods, GPU-hours, amounts that add up) and per month, as JSON and CSV."""

import csv
import io
from decimal import Decimal

import pytest
from django.utils import timezone

from core.api.renderers import to_csv
from core.money import usd_decimal
from leases import services
from leases.models import Lease
from ledger.models import LedgerAccount
from tests import factories as f
from tests.leases.test_leases import awarded, started_ago

pytestmark = pytest.mark.django_db
PRICE = 3_600_001  # an awkward price: the periods' amounts must still add up exactly


def test_a_lease_statement_adds_up_and_downloads_as_csv() -> None:
    client, p, lease = awarded(price=PRICE, hours=2, gpus=2)
    started_ago(lease, 1000)
    Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.RUNNING)
    lease.refresh_from_db()
    f.usage(lease, seconds=301, run_seconds=301)
    f.usage(lease, seconds=299, run_seconds=17, after=301)
    f.usage(lease, seconds=333, run_seconds=333, after=600)
    services.leases_settle()
    body = f.api(client, f.CLIENT).get(f"/api/v1/leases/{lease.pk}/statement/").json()
    assert [period["run_seconds"] for period in body["periods"]] == [301, 17, 333]
    assert body["run_seconds"] == 651 and body["gpu_hours"] == f"{651 * 2 / 3600:.4f}"
    assert sum(period["amount"] for period in body["periods"]) == body["usage_amount"] == PRICE * 651 // 3600
    assert body["settled"] == PRICE * 651 // 3600

    download = f.api(p.user, f.PROVIDER).get(f"/api/v1/leases/{lease.pk}/statement/?format=csv")
    assert download.status_code == 200 and download["Content-Type"].startswith("text/csv")
    assert f'filename="lease-{lease.pk}-statement.csv"' in download["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    assert rows[0] == [
        "period_start",
        "period_end",
        "run_seconds",
        "gpu_hours",
        "price_per_hour_usd",
        "amount_usd",
        "price_per_hour_micro_usd",
        "amount_micro_usd",
    ]
    assert [r[2] for r in rows[1:4]] == ["301", "17", "333"]  # the seconds each period ran
    # each period in dollars, exact, and in micro-dollars
    assert rows[1][4:8] == ["3.600001", "0.301", "3600001", "301000"]
    assert rows[4][0] == "total" and int(rows[4][7]) == PRICE * 651 // 3600
    assert rows[4][5] == "0.651"
    assert Decimal(rows[4][5]) * 1_000_000 == int(rows[4][7])
    deposit = next(r for r in rows if r[0] == "deposit")
    assert deposit[4:8] == ["3.600001", "7.200002", "3600001", "7200002"]
    assert f.api(f.client_user(), f.CLIENT).get(f"/api/v1/leases/{lease.pk}/statement/").status_code == 404


def test_the_monthly_statement_runs_from_opening_to_closing_balance() -> None:
    client, _p, lease = awarded(price=3 * 1_000_000, hours=2)
    services.lease_close(user=client, lease_id=lease.pk, roles={"client"})  # no usage: all refunded
    month = timezone.now().strftime("%Y-%m")
    [statement] = f.api(client, f.CLIENT).get(f"/api/v1/account/statements/{month}/").json()
    assert statement["account"] == "client_balance" and statement["opening_balance"] == 0
    kinds = {line["kind"]: line["total"] for line in statement["lines"]}
    assert kinds == {"deposit": 100_000_000, "lease_fund": -lease.deposit, "lease_refund": lease.deposit}
    balance = LedgerAccount.objects.get(owner=client, kind=LedgerAccount.Kind.CLIENT_BALANCE).balance
    assert statement["closing_balance"] == balance == statement["opening_balance"] + sum(kinds.values())

    rows = list(
        csv.reader(
            io.StringIO(f.api(client, f.CLIENT).get(f"/api/v1/account/statements/{month}/?format=csv").content.decode())
        )
    )
    assert rows[0][4:] == ["amount_usd", "balance_after_usd", "amount_micro_usd", "balance_after_micro_usd"]
    assert rows[1][2] == "opening_balance" and rows[-1][2] == "closing_balance" and int(rows[-1][7]) == balance
    assert rows[-1][5] == usd_decimal(balance) and rows[2][4:] == ["100.00", "100.00", "100000000", "100000000"]
    assert len(rows) == 2 + 3 + 1  # header, opening, three movements, closing
    earlier = f.api(client, f.CLIENT).get("/api/v1/account/statements/2001-01/").json()
    assert earlier[0]["opening_balance"] == earlier[0]["closing_balance"] == 0 and earlier[0]["lines"] == []


@pytest.mark.parametrize("month", ["2026-13", "2026", "abc", "1999-12", "2026-1-1"])
def test_a_bad_month_is_a_400(month: str) -> None:
    response = f.api(f.client_user(), f.CLIENT).get(f"/api/v1/account/statements/{month}/")
    assert response.status_code == 400
    as_csv = f.api(f.client_user(), f.CLIENT).get(f"/api/v1/account/statements/{month}/?format=csv")
    assert as_csv.status_code == 400 and as_csv.content.decode().startswith("error,message")


def test_csv_cells_never_run_as_spreadsheet_formulas() -> None:
    text = to_csv([["memo"], ['=HYPERLINK("http://x")'], ["+1"], ["-2"], ["@SUM(A1)"], ["plain"]])
    cells = [row[0] for row in csv.reader(io.StringIO(text))][1:]
    assert cells == ['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@SUM(A1)", "plain"]
