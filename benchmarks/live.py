"""Live order pages: from a bid's POST to its appearance on the open order page.

    DATABASE_URL=postgres://… REDIS_URL=redis://… .venv/bin/python benchmarks/live.py \
        [--rate 200] [--seconds 20] [--pages 10] [--providers 200] [--workers 2]

Serves the marketplace as in production: gunicorn (``--workers``) for HTTP and uvicorn for the
WebSockets, with Redis as the channel layer, in a scratch database. ``--pages`` clients each hold
one open order page the way the browser does: a WebSocket on ``/ws/orders/{id}/``; a bid event
carries the bid's row, which the page lists at once; any other event makes it fetch the bids
fragment (``/orders/{id}/live/``), one fetch in flight at a time with the latest event queued
(htmx's ``hx-sync="this:queue last"``). Meanwhile providers POST bids at ``--rate`` per second,
spread over those orders. A bid's latency runs from just before its POST to the moment the page
first has its row. Prints Markdown for ``benchmarks/RESULTS.md``; raw numbers go to
``benchmarks/out/live.json``.
"""

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))

from benchmarks.auction import (  # noqa: E402
    order_spec,
    prepare_django,
    scratch_database,
    seed_providers,
    wait_healthy,
)

BID = re.compile(r'data-bid="(\d+)"')


def seed(*, providers: int, pages: int) -> tuple[list[str], list[int], str]:
    """Providers with tokens, a client with ``pages`` open orders and a logged-in session."""
    from django.conf import settings
    from django.test import Client

    from core import services as accounts
    from ledger import services as ledger
    from marketplace import services as market

    tokens = seed_providers(providers, prefix="live")
    client = accounts.user_create(username="live-client", is_client=True)
    ledger.deposit(user=client, amount=10**12, key="live:client")
    orders = [market.order_create(client=client, spec=order_spec(bid_window_seconds=3600)).pk for _ in range(pages)]
    browser = Client()
    browser.force_login(client)
    return tokens, orders, browser.cookies[settings.SESSION_COOKIE_NAME].value


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env)


async def page(http, ws_base: str, base: str, order: int, cookie: str, seen: dict[int, float], ready: asyncio.Event):  # type: ignore[no-untyped-def]
    """One open order page: a socket; a bid event's row is listed as it comes, any other event
    refetches the fragment (coalesced)."""
    import aiohttp

    wanted = asyncio.Event()

    async def fetch_loop() -> None:
        while True:
            await wanted.wait()
            wanted.clear()
            async with http.get(f"{base}/orders/{order}/live/", headers={"Cookie": cookie}) as response:
                text = await response.text()
            now = time.perf_counter()
            for bid in BID.findall(text):
                seen.setdefault(int(bid), now)

    fetcher = asyncio.create_task(fetch_loop())
    try:
        async with http.ws_connect(
            f"{ws_base}/ws/orders/{order}/", headers={"Cookie": cookie, "Origin": base}, heartbeat=30
        ) as socket:
            ready.set()
            async for message in socket:
                if message.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(message.data)
                    bid = event.get("bid")
                    if bid and bid.get("text"):  # the row itself, as the page's script lists it
                        seen.setdefault(int(bid["id"]), time.perf_counter())
                    else:
                        wanted.set()
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
    finally:
        fetcher.cancel()


async def run(
    args: argparse.Namespace, base: str, ws_base: str, tokens: list[str], orders: list[int], session: str
) -> dict:
    import aiohttp

    cookie = f"sessionid={session}"
    seen: dict[int, float] = {}
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}  # when the POST's 201 came back
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as http:
        readies = [asyncio.Event() for _ in orders]
        pages = [
            asyncio.create_task(page(http, ws_base, base, o, cookie, seen, r))
            for o, r in zip(orders, readies, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=30)

        async def bid(index: int) -> None:
            order = orders[index % len(orders)]
            token = tokens[(index // len(orders)) % len(tokens)]
            began = time.perf_counter()
            try:
                async with http.post(
                    f"{base}/api/v1/orders/{order}/bids/",
                    json={"price_per_hour": 5_000_000 - index},  # each the cheapest yet: always shown
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    body = await response.json()
                    if response.status != 201:
                        errors.append(f"{response.status} {body.get('error', {}).get('code')}")
                        return
                    sent[int(body["id"])] = began
                    answered[int(body["id"])] = time.perf_counter()
            except aiohttp.ClientError as exc:
                errors.append(str(exc))

        total = args.rate * args.seconds
        if total > len(tokens) * len(orders):
            raise SystemExit("not enough (provider, order) pairs: raise --providers or --pages")
        tasks = []
        begin = time.perf_counter()
        for index in range(total):  # paced: the index-th bid leaves at index / rate seconds
            delay = begin + index / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(bid(index)))
        await asyncio.gather(*tasks)
        sending = time.perf_counter() - begin
        deadline = time.perf_counter() + 10
        while any(b not in seen for b in sent) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        for task in pages:
            task.cancel()
    latencies = sorted((seen[b] - t) * 1000 for b, t in sent.items() if b in seen)
    # the live path's own share: how long after its 201 the page had the row (0 when before)
    after = sorted(max(0.0, seen[b] - t) * 1000 for b, t in answered.items() if b in seen)

    def quantiles(values: list[float]) -> dict | None:
        if not values:
            return None
        at = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
        return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": values[-1], "mean": statistics.fmean(values)}

    return {
        "bids_sent": total,
        "bids_created": len(sent),
        "bids_seen": len(latencies),
        "errors": errors[:20],
        "error_count": len(errors),
        "offered_rate": args.rate,
        "achieved_rate": total / sending,
        "latency_ms": quantiles(latencies),
        "after_response_ms": quantiles(after),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=200, help="bids per second")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--pages", type=int, default=10, help="open order pages (and orders)")
    parser.add_argument("--providers", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        sys.exit("needs REDIS_URL: pages hear of bids through the Redis channel layer")
    bench_url = scratch_database(os.environ.get("DATABASE_URL", ""), suffix="_bench_live")
    env = prepare_django(
        bench_url,
        API_THROTTLE_RATE="1000000/minute",
        DB_POOL="false",
        DB_CONN_MAX_AGE="600",
        CELERY_TASK_ALWAYS_EAGER="false",
    )
    from config.celery import app as celery_app

    celery_app.conf.task_always_eager = True
    print(f"seeding {args.providers} providers and {args.pages} open orders…", flush=True)
    tokens, orders, session = seed(providers=args.providers, pages=args.pages)
    http_port, ws_port = 8771, 8772
    base, ws_base = f"http://127.0.0.1:{http_port}", f"ws://127.0.0.1:{ws_port}"
    servers = [
        start(
            [
                str(ROOT / ".venv/bin/gunicorn"),
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{http_port}",
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ],
            env,
        ),
        start(
            [
                str(ROOT / ".venv/bin/uvicorn"),
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(ws_port),
                "--log-level",
                "warning",
            ],
            {**env, "DB_POOL": "true", "DB_CONN_MAX_AGE": "0"},
        ),
    ]
    try:
        wait_healthy(base)
        wait_healthy(f"http://127.0.0.1:{ws_port}")
        print(f"{args.rate} bids/s for {args.seconds} s over {args.pages} open order pages…", flush=True)
        result = asyncio.run(run(args, base, ws_base, tokens, orders, session))
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    result.update(
        {
            "date": datetime.now(UTC).date().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "workers": args.workers,
            "pages": args.pages,
        }
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "live.json").write_text(json.dumps(result, indent=2))
    latency = result["latency_ms"] or {}
    print()
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(
        f"| bid POST → listed on the open order page, {args.rate} bids/s offered "
        f"({result['achieved_rate']:.0f}/s sent), {args.pages} pages | p50 {latency.get('p50', 0):.0f} ms, "
        f"p90 {latency.get('p90', 0):.0f} ms, p99 {latency.get('p99', 0):.0f} ms, max {latency.get('max', 0):.0f} ms "
        f"({result['bids_seen']} of {result['bids_created']} seen, {result['error_count']} errors) | p99 < 100 ms |"
    )
    after = result["after_response_ms"] or {}
    print(
        f"| … of which after the POST's 201 | p50 {after.get('p50', 0):.1f} ms, p99 {after.get('p99', 0):.1f} ms, "
        f"max {after.get('max', 0):.0f} ms | |"
    )


if __name__ == "__main__":
    main()
