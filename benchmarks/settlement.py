"""Settlement benchmarks: the database part of a settlement tick over many running leases, and
verifying and storing signed usage reports.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gpumarket .venv/bin/python benchmarks/settlement.py \
        [--leases 10000] [--reports 2000]

It works in a scratch database next to DATABASE_URL's (``<name>_bench_settlement``, dropped first).
Seeding goes through the services once (a provider, a client, one awarded lease) and copies that
lease in bulk (orders, bids, leases, their escrow accounts funded from an external account, one
usage report each), so the tick sees ``--leases`` running leases that each owe something.

1. **Tick, ledger escrow**: ``leases.services.leases_settle()``: which leases owe what (one query
   over the leases with their usage), then one ledger transaction per lease.
2. **Tick, chain escrow, database part**: the same ``due`` computation, plus booking one
   ``Settled`` event per lease the way the chain side does (``settlement_mirror``); the on-chain
   ``settle`` calls themselves are in ``benchmarks/gas.py``.
3. **Usage reports**: ``--reports`` reports signed with EIP-712 (signature recovery, the checks, the
   insert), one at a time (``usage_report_accept``), in batches of ``--batch``
   (``usage_reports_accept``, what the agent's outbox sends), and in batches through
   ``POST /api/v1/usage-reports/`` (Django's in-process test client: routing, token
   authentication, throttling, serializers, no network).

Prints Markdown for ``benchmarks/RESULTS.md``; raw numbers go to ``benchmarks/out/settlement.json``.
"""

import argparse
import copy
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))

from benchmarks.auction import prepare_django, scratch_database  # noqa: E402


def seed(count: int) -> tuple[list[int], object]:
    """``count`` running leases owing 10 minutes of reported usage each; returns their ids and the key."""
    from django.db import transaction
    from django.utils import timezone
    from eth_account import Account

    from chain.models import Wallet
    from leases.models import Lease, UsageReport
    from ledger import services as ledger
    from ledger.models import LedgerAccount
    from marketplace import services as market
    from marketplace.models import Bid, Order
    from tests import factories as f

    key = Account.create()
    client = f.client_user(balance=10**9)
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    Wallet.objects.create(user=provider.user, address=key.address)
    order = f.order(client, duration_hours=2, max_price_per_hour=5_000_000)
    template = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, 3_600_000).pk)
    started = timezone.now() - timedelta(hours=1)
    funding = ledger.external_account(name="benchmark funding")
    with transaction.atomic():
        orders = Order.objects.bulk_create([_copy(order) for _ in range(count)])
        bid = Bid.objects.get(order=order)
        bids = Bid.objects.bulk_create([_copy(bid, order=o) for o in orders])
        leases = Lease.objects.bulk_create(
            [
                _copy(template, order=o, bid=b, status=Lease.Status.RUNNING, started_at=started)
                for o, b in zip(orders, bids, strict=True)
            ]
        )
        LedgerAccount.objects.bulk_create(
            [
                LedgerAccount(kind=LedgerAccount.Kind.LEASE_ESCROW, lease=lease, balance=lease.deposit)
                for lease in leases
            ]
        )
        LedgerAccount.objects.filter(pk=funding.pk).update(balance=-sum(lease.deposit for lease in leases))
        UsageReport.objects.bulk_create(
            [
                UsageReport(
                    lease=lease,
                    period_start=started,
                    period_end=started + timedelta(minutes=10),
                    gpu_seconds=600,
                    run_seconds=600,
                    signer=key.address,
                    signature="0x" + "00" * 65,
                )
                for lease in leases
            ]
        )
    return [lease.pk for lease in leases], key


def _copy(instance, **changes):  # type: ignore[no-untyped-def]
    from django.db.models.base import ModelState

    clone = copy.copy(instance)
    clone._state = ModelState()
    clone.pk = None
    for name, value in changes.items():
        setattr(clone, name, value)
    return clone


def tick_ledger() -> dict:
    from leases import services

    begin = time.perf_counter()
    paid = services.leases_settle()
    return {"leases_paid": paid, "seconds": time.perf_counter() - begin}


def tick_chain_database_part(lease_ids: list[int]) -> dict:
    """What the chain side does in the database for one tick: find what is due, then book one
    Settled event per lease (as if every settle call confirmed)."""
    from django.conf import settings
    from django.utils import timezone

    from leases import books, services
    from leases.models import Lease

    Lease.objects.filter(pk__in=lease_ids).update(settled_amount=0)  # owe again, as before the first tick
    begin = time.perf_counter()
    due = services.settlements_due(now=timezone.now() + timedelta(minutes=5), limit=len(lease_ids) + 1)
    found = time.perf_counter() - begin
    ids, size = sorted(due), settings.SETTLEMENT_BATCH_SIZE
    for start in range(0, len(ids), size):  # one receipt's Settled events a batch, as the chain side books them
        batch = ids[start : start + size]
        books.settlements_book([(i, due[i][0] - due[i][1], f"bench:chain:{i}", "benchmark") for i in batch])
    return {"due": len(due), "due_seconds": found, "seconds": time.perf_counter() - begin}


def _signed_reports(leases: list, key, *, after: int) -> list[dict]:  # type: ignore[no-untyped-def]
    """One report a lease for the minute ``after`` seconds into it (after the seeded report)."""
    from protocol.usage import UsageReport, sign

    bodies = []
    for lease in leases:
        start = int(lease.started_at.timestamp()) + after
        report = UsageReport(lease.pk, start, start + 60, 60, 60, 0)
        bodies.append({"lease": lease.pk, **report.body(sign(report, chain_id=31337, key=key.key))})
    return bodies


def usage_reports(count: int, key, *, batch: int) -> dict:  # type: ignore[no-untyped-def]
    """Signed usage reports verified and stored three ways, each over its own minute of ``count``
    leases: one at a time (``usage_report_accept``), in batches (``usage_reports_accept``), and in
    batches through the API (``POST /api/v1/usage-reports/`` with a provider token, in-process)."""
    from django.test import Client
    from django.utils import timezone

    from core import services as accounts
    from core.models import TokenScope
    from leases import services
    from leases.models import Lease

    leases = list(Lease.objects.filter(status="running").select_related("provider__user").order_by("pk")[:count])
    user = leases[0].provider.user
    now = timezone.now()
    results = {}

    bodies = _signed_reports(leases, key, after=601)
    begin = time.perf_counter()
    for body in bodies:
        services.usage_report_accept(
            user=user,
            lease_id=body["lease"],
            period_start=body["period_start"],
            period_end=body["period_end"],
            gpu_seconds=body["gpu_seconds"],
            run_seconds=body["run_seconds"],
            restarts=body["restarts"],
            signature=body["signature"],
            now=now,
        )
    results["one_by_one"] = _rate(len(bodies), time.perf_counter() - begin)

    bodies = _signed_reports(leases, key, after=661)
    begin = time.perf_counter()
    for start in range(0, len(bodies), batch):
        outcomes = services.usage_reports_accept(user=user, reports=bodies[start : start + batch], now=now)
        assert all(o.created for o in outcomes), [o.error for o in outcomes if o.error][:3]
    results["batched"] = _rate(len(bodies), time.perf_counter() - begin)

    bodies = _signed_reports(leases, key, after=721)
    token = accounts.token_issue(user=user, name="bench", scope=TokenScope.PROVIDER).secret
    http = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")
    # warm up: the first request imports the URL configuration and the views
    assert http.post("/api/v1/usage-reports/", {"reports": []}, content_type="application/json").status_code == 400
    begin = time.perf_counter()
    for start in range(0, len(bodies), batch):
        response = http.post(
            "/api/v1/usage-reports/", {"reports": bodies[start : start + batch]}, content_type="application/json"
        )
        assert response.status_code == 200 and response.json()["created"] == len(bodies[start : start + batch])
    results["batched_http"] = _rate(len(bodies), time.perf_counter() - begin)
    results["batch"] = batch
    return results


def _rate(count: int, seconds: float) -> dict:
    return {"reports": count, "seconds": seconds, "per_second": count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leases", type=int, default=10_000)
    parser.add_argument("--reports", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=200, help="usage reports a request (the agent's default)")
    args = parser.parse_args()
    bench_url = scratch_database(os.environ.get("DATABASE_URL", ""), suffix="_bench_settlement")
    prepare_django(bench_url, CELERY_TASK_ALWAYS_EAGER="true")
    from config.celery import app as celery_app

    celery_app.conf.task_always_eager = True
    print(f"seeding {args.leases} running leases…", flush=True)
    lease_ids, key = seed(args.leases)
    print("tick, ledger escrow…", flush=True)
    ledger_tick = tick_ledger()
    print("tick, chain escrow (database part)…", flush=True)
    chain_tick = tick_chain_database_part(lease_ids)
    print(f"{args.reports} signed usage reports…", flush=True)
    reports = usage_reports(args.reports, key, batch=args.batch)
    results = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "leases": args.leases,
        "tick_ledger": ledger_tick,
        "tick_chain_database": chain_tick,
        "usage_reports": reports,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "settlement.json").write_text(json.dumps(results, indent=2))
    print()
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(
        f"| settlement tick, ledger escrow, {args.leases} leases ({ledger_tick['leases_paid']} paid) | "
        f"{ledger_tick['seconds']:.2f} s | < 5 s |"
    )
    print(
        f"| settlement tick, chain escrow, database part, {args.leases} leases | {chain_tick['seconds']:.2f} s "
        f"(what is due: {chain_tick['due_seconds']:.2f} s) | < 5 s |"
    )
    for mode, label in (
        ("one_by_one", "one at a time"),
        ("batched", f"in batches of {args.batch}"),
        ("batched_http", f"in batches of {args.batch}, through the API"),
    ):
        rate = reports[mode]["per_second"]
        print(f"| signed usage reports verified and stored, {label} | {rate:.0f}/s | ≥ 1,000/s |")


if __name__ == "__main__":
    main()
