"""Auction benchmarks: bid submissions per second over HTTP, and the time to award 1,000 bids.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gpumarket [REDIS_URL=redis://127.0.0.1:6379/0] \
        .venv/bin/python benchmarks/auction.py [--workers 2] [--seconds 20]

It creates a scratch database next to the one DATABASE_URL names (``<name>_bench``, dropped first),
migrates it, seeds providers, API tokens and open orders, then:

1. starts the production HTTP server setup (gunicorn, ``--workers`` processes, ``DEBUG`` off, persistent
   database connections, Redis when ``REDIS_URL`` is set) and drives it with ``wrk``, every
   request a new bid by one provider on one order (``benchmarks/bids.lua``); it checks that every
   201 left exactly one bid in the database;
2. times ``order_award_due`` on orders holding ``--award-bids`` bids each (eligibility of every
   bid, ranking, capacity reservation, the lease, the ledger postings, the losing bids).

Needs PostgreSQL and the ``wrk`` load generator (Debian package ``wrk``). Prints a Markdown table
for ``benchmarks/RESULTS.md`` and writes the raw numbers to ``benchmarks/out/auction.json``.
"""

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))


def scratch_database(url: str, suffix: str = "_bench") -> str:
    import psycopg

    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit("DATABASE_URL must point at PostgreSQL")
    name = f"{parsed.path.lstrip('/') or 'gpumarket'}{suffix}"
    admin = urlunparse(parsed._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(parsed._replace(path=f"/{name}"))


def prepare_django(database_url: str, **settings: str) -> dict[str, str]:
    """Point this process (and its children) at ``database_url`` with benchmark settings, migrate,
    and set Django up. Returns the environment for child processes."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "benchmark-only-secret-key"),
        "LOG_LEVEL": "WARNING",
        **settings,
    }
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    return env


def order_spec(**terms: object) -> object:
    """A one-H100 order for an hour, at most $5/hour."""
    from marketplace.spec import OrderSpecSerializer

    spec = OrderSpecSerializer(
        data={
            "workload": {"image": "ghcr.io/acme/trainer:1.4"},
            "resources": {"gpu_count": 1, "gpu_models": ["h100-sxm-80gb"]},
            "duration_hours": 1,
            "max_price_per_hour": 5_000_000,
            **terms,
        }
    )
    spec.is_valid(raise_exception=True)
    return spec.validated_data["spec"]


def seed_providers(count: int, *, prefix: str = "bench") -> list[str]:
    """``count`` online providers with 8 H100s each; returns their provider tokens."""
    from core import services as accounts
    from core.models import TokenScope
    from providers import services as provider_services

    tokens = []
    for i in range(count):
        user = accounts.user_create(username=f"{prefix}-provider-{i}", is_provider=True)
        p = provider_services.provider_register(user=user, name=f"{prefix.capitalize()} {i}", region="bench")
        provider_services.inventory_report(
            provider=p,
            gpus=[provider_services.GpuReport(model="h100-sxm-80gb", total=8, free=8)],
            cpu_cores=provider_services.HostReport(total=256, free=256),
            memory_gib=provider_services.HostReport(total=2048, free=2048),
            storage_gib=provider_services.HostReport(total=50_000, free=50_000),
        )
        tokens.append(accounts.token_issue(user=user, name="bench", scope=TokenScope.PROVIDER).secret)
    return tokens


def seed(*, providers: int, orders: int, pairs_file: Path) -> int:
    """Providers with tokens, open orders with an hour-long window; writes the bid pairs."""
    from core import services as accounts
    from ledger import services as ledger
    from marketplace import services as market

    tokens = seed_providers(providers)
    client = accounts.user_create(username="bench-client", is_client=True)
    ledger.deposit(user=client, amount=10**12, key="bench:client")
    order_ids = []
    for _ in range(orders):
        order_ids.append(market.order_create(client=client, spec=order_spec(bid_window_seconds=3600)).pk)
    pairs = [(t, o) for o in order_ids for t in tokens]
    random.Random(7).shuffle(pairs)
    pairs_file.write_text("".join(f"{t} {o}\n" for t, o in pairs))
    return len(pairs)


def wait_healthy(base: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def bid_throughput(args: argparse.Namespace, env: dict[str, str], pairs_file: Path) -> dict:
    from marketplace.models import Bid

    port = 8765
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_healthy(base)
        threads = 2
        command = ["wrk", f"-t{threads}", f"-c{args.connections}", "-s", str(ROOT / "benchmarks/bids.lua")]
        # warm up every worker process (imports, connections), then measure
        subprocess.run(
            [*command, "-d3s", base, "--", str(pairs_file), str(threads), "0"], check=True, capture_output=True
        )
        time.sleep(1)  # let requests in flight when the warm-up stopped finish
        before = Bid.objects.count()
        run = subprocess.run(
            [*command, f"-d{args.seconds}s", "--latency", base, "--", str(pairs_file), str(threads), "5000"],
            check=True,
            capture_output=True,
            text=True,
        )
        time.sleep(1)
        after = Bid.objects.count()
    finally:
        server.terminate()
        server.wait(timeout=30)
    line = next(x for x in run.stdout.splitlines() if x.startswith("WRK_RESULT "))
    result = json.loads(line.removeprefix("WRK_RESULT "))
    result["bids_in_database"] = after - before
    result["bids_per_second"] = result["created"] / (result["duration_us"] / 1e6)
    # every 201 left a bid; at most one request per connection was still in flight when wrk stopped
    assert result["created"] <= result["bids_in_database"] <= result["created"] + args.connections, result
    return result


def award_time(args: argparse.Namespace) -> dict:
    from django.db import transaction

    from core import services as accounts
    from ledger import services as ledger
    from marketplace import services as market
    from marketplace.models import Bid, Order
    from providers.models import GpuModel, Provider, ProviderGpu

    now = datetime.now(UTC)
    users = [accounts.user_create(username=f"bench-award-{i}", is_provider=True) for i in range(args.award_bids)]
    providers = Provider.objects.bulk_create(
        [
            Provider(
                user=u,
                name=f"Award {i}",
                region="bench",
                reputation=random.randint(0, 1000),
                last_heartbeat_at=now,
                cpu_cores_total=10_000,
                cpu_cores_free=10_000,
                memory_gib_total=100_000,
                memory_gib_free=100_000,
                storage_gib_total=10**6,
                storage_gib_free=10**6,
            )
            for i, u in enumerate(users)
        ]
    )
    h100 = GpuModel.objects.get(pk="h100-sxm-80gb")
    ProviderGpu.objects.bulk_create([ProviderGpu(provider=p, gpu_model=h100, total=64, free=64) for p in providers])
    client = accounts.user_create(username="bench-award-client", is_client=True)
    ledger.deposit(user=client, amount=10**12, key="bench:award-client")
    timings = []
    for run in range(args.award_runs):
        created = datetime.now(UTC)
        spec = order_spec(bid_window_seconds=10, pricing_rule="second_price")
        order = market.order_create(client=client, spec=spec, now=created)
        Bid.objects.bulk_create(
            [
                Bid(
                    order=order,
                    provider=p,
                    gpu_model=h100,
                    price_per_hour=random.randint(1_000_000, 5_000_000),
                    created_at=created + timedelta(milliseconds=i),
                )
                for i, p in enumerate(providers)
            ]
        )
        with transaction.atomic():
            pass  # make sure nothing is pending before timing
        start = time.perf_counter()
        lease = market.order_award_due(order_id=order.pk, now=order.deadline + timedelta(milliseconds=1))
        elapsed = time.perf_counter() - start
        assert lease is not None
        assert Order.objects.get(pk=order.pk).status == Order.Status.AWARDED
        assert Bid.objects.filter(order=order, status=Bid.Status.LOST).count() == args.award_bids - 1
        timings.append(elapsed * 1000)
        print(f"  award run {run + 1}: {elapsed * 1000:.1f} ms", flush=True)
    return {
        "bids": args.award_bids,
        "runs_ms": [round(t, 2) for t in timings],
        "median_ms": round(statistics.median(timings), 2),
        "max_ms": round(max(timings), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--seconds", type=int, default=20, help="measured load duration")
    parser.add_argument("--providers", type=int, default=150)
    parser.add_argument("--orders", type=int, default=150)
    parser.add_argument("--award-bids", type=int, default=1000)
    parser.add_argument("--award-runs", type=int, default=7)
    args = parser.parse_args()

    if not shutil.which("wrk"):
        sys.exit("needs wrk (apt-get install wrk)")
    source = os.environ.get("DATABASE_URL", "")
    bench_url = scratch_database(source)
    env = prepare_django(
        bench_url,
        API_THROTTLE_RATE="100000/minute",
        DB_POOL="false",  # WSGI workers serve one request at a time: one persistent connection each
        DB_CONN_MAX_AGE="600",
        CELERY_TASK_ALWAYS_EAGER="false",
    )
    from config.celery import app as celery_app

    celery_app.conf.task_always_eager = True  # seeding must not need a broker; award tasks no-op early

    OUT.mkdir(parents=True, exist_ok=True)
    pairs_file = OUT / "bid-pairs.txt"
    print(f"seeding {args.providers} providers and {args.orders} orders…", flush=True)
    pairs = seed(providers=args.providers, orders=args.orders, pairs_file=pairs_file)
    print(
        f"bid throughput: {args.workers} gunicorn workers, wrk {args.connections} connections, {args.seconds} s",
        flush=True,
    )
    bids = bid_throughput(args, env, pairs_file)
    print(f"award time: {args.award_runs} orders with {args.award_bids} bids each", flush=True)
    award = award_time(args)

    results = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "redis": bool(os.environ.get("REDIS_URL")),
        "workers": args.workers,
        "connections": args.connections,
        "bid_pairs": pairs,
        "bids": bids,
        "award": award,
    }
    (OUT / "auction.json").write_text(json.dumps(results, indent=2))
    print()
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(f"| bids per second over HTTP ({args.workers} workers) | {bids['bids_per_second']:.0f}/s | ≥ 500/s |")
    print(
        f"| bid latency p50 / p90 / p99 | {bids['p50_us'] / 1000:.1f} / {bids['p90_us'] / 1000:.1f} / "
        f"{bids['p99_us'] / 1000:.1f} ms | |"
    )
    print(f"| refused or failed requests | {bids['refused']} of {bids['requests']} | 0 |")
    runs = len(award["runs_ms"])
    print(f"| award an order holding {award['bids']} bids (median of {runs}) | {award['median_ms']} ms | < 50 ms |")
    print(f"| award, slowest run | {award['max_ms']} ms | |")


if __name__ == "__main__":
    main()
