"""The load scenario (run by benchmarks/load/run.py): clients and provider agents on the REST API.

- ``AgentUser``: one simulated provider agent each, as the real agent paces itself: an inventory
  report (its heartbeat) every 30 s, the open-order feed every 15 s with a bid on up to two orders
  it has not bid on, its leases every 30 s (a funded lease is reported running), and a signed usage
  report (EIP-712) every 60 s for each running lease.
- ``ClientUser``: browses offers, posts orders (a 20-second bid window), reads them, and accepts the
  cheapest bid of an order once it has bids.

Credentials come from the JSON file in ``LOAD_CREDENTIALS`` (written by run.py's seeding).
"""

import itertools
import json
import os
import random
import threading
import time

from locust import HttpUser, between, constant, task

from protocol.usage import UsageReport, sign

CREDENTIALS = json.loads(open(os.environ["LOAD_CREDENTIALS"]).read())  # noqa: SIM115 - read once at start
_next = {"providers": itertools.count(), "clients": itertools.count()}
_lock = threading.Lock()
INVENTORY = {
    "gpus": [{"model": "h100-sxm-80gb", "total": 8, "free": 8}],
    "cpu_cores": {"total": 256, "free": 256},
    "memory_gib": {"total": 2048, "free": 2048},
    "storage_gib": {"total": 50000, "free": 50000},
}
ORDER = {
    "workload": {"image": "ghcr.io/acme/trainer:1.4"},
    "resources": {
        "gpu_count": 1,
        "gpu_models": ["h100-sxm-80gb"],
        "cpu_cores": 8,
        "memory_gib": 64,
        "storage_gib": 100,
    },
    "duration_hours": 2,
    "max_price_per_hour": 5_000_000,
    "bid_window_seconds": 20,
}


def _take(kind: str) -> dict:
    with _lock:
        index = next(_next[kind])
    pool = CREDENTIALS[kind]
    return pool[index % len(pool)]


class AgentUser(HttpUser):
    weight = int(os.environ.get("LOAD_AGENTS", "1000"))
    wait_time = constant(1)

    def on_start(self) -> None:
        me = _take("providers")
        self.client.headers["Authorization"] = f"Bearer {me['token']}"
        self.key, self.chain_id = me["key"], CREDENTIALS["chain_id"]
        now = time.monotonic()
        # spread the agents' schedules, as agents started at different times are
        self.due = {job: now + random.uniform(0, every) for job, every in self.EVERY.items()}
        self.bid_on: set[int] = set()
        self.running: dict[int, int] = {}  # lease id → the end of its last reported period (Unix seconds)

    EVERY = {"inventory": 30.0, "feed": 15.0, "leases": 30.0, "usage": 60.0}

    @task
    def tick(self) -> None:
        now = time.monotonic()
        for job, every in self.EVERY.items():
            if now >= self.due[job]:
                self.due[job] = now + every
                getattr(self, job)()

    def inventory(self) -> None:
        self.client.put("/api/v1/providers/me/inventory/", json=INVENTORY, name="PUT inventory (heartbeat)")

    def feed(self) -> None:
        response = self.client.get("/api/v1/provider/orders/?limit=50", name="GET provider order feed")
        if response.status_code != 200:
            return
        fresh = [o for o in response.json()["results"] if not o.get("my_bid") and o["id"] not in self.bid_on]
        for order in random.sample(fresh, min(2, len(fresh))):
            self.bid_on.add(order["id"])
            price = random.randint(order["max_price_per_hour"] // 2, order["max_price_per_hour"])
            with self.client.post(
                f"/api/v1/orders/{order['id']}/bids/",
                json={"price_per_hour": price},
                name="POST bid",
                catch_response=True,
            ) as bid:
                if bid.status_code in (403, 404, 409):  # awarded, expired or full meanwhile: the market moved on
                    bid.success()

    def leases(self) -> None:
        response = self.client.get(
            "/api/v1/leases/?status=funded&status=deploying&status=running&limit=100", name="GET my leases"
        )
        if response.status_code != 200:
            return
        for lease in response.json()["results"]:
            if lease["status"] == "funded":
                self.client.post(
                    f"/api/v1/leases/{lease['id']}/status/",
                    json={"status": "running", "endpoints": ["203.0.113.10:30001"]},
                    name="POST lease status",
                )
                self.running.setdefault(lease["id"], int(time.time()))
            elif lease["status"] == "running":
                self.running.setdefault(lease["id"], int(time.time()))

    def usage(self) -> None:
        end = int(time.time())
        for lease_id, start in list(self.running.items()):
            if end - start < 10:
                continue
            report = UsageReport(lease_id, start, end, end - start, end - start, 0)
            body = report.body(sign(report, chain_id=self.chain_id, key=self.key))
            with self.client.post(
                f"/api/v1/leases/{lease_id}/usage/", json=body, name="POST usage report", catch_response=True
            ) as response:
                if response.status_code == 409:  # the lease closed: stop reporting it
                    response.success()
                    self.running.pop(lease_id, None)
                    continue
            self.running[lease_id] = end


class ClientUser(HttpUser):
    weight = int(os.environ.get("LOAD_CLIENTS", "20"))
    wait_time = between(2, 5)

    def on_start(self) -> None:
        me = _take("clients")
        self.client.headers["Authorization"] = f"Bearer {me['token']}"
        self.orders: list[tuple[int, float]] = []

    @task(3)
    def offers(self) -> None:
        self.client.get("/api/v1/offers/?gpu_model=h100-sxm-80gb&limit=20", name="GET offers")

    @task(1)
    def post_order(self) -> None:
        response = self.client.post("/api/v1/orders/", json=ORDER, name="POST order")
        if response.status_code == 201:
            self.orders.append((response.json()["id"], time.monotonic()))

    @task(2)
    def read_order(self) -> None:
        if self.orders:
            order_id, _ = random.choice(self.orders)
            self.client.get(f"/api/v1/orders/{order_id}/", name="GET order")

    @task(2)
    def accept(self) -> None:
        ready = [(o, t) for o, t in self.orders if time.monotonic() - t > 8]
        if not ready:
            return
        order_id, posted = ready[0]
        self.orders.remove((order_id, posted))
        bids = self.client.get(f"/api/v1/orders/{order_id}/bids/?limit=5", name="GET order bids")
        if bids.status_code != 200 or not bids.json()["results"]:
            return
        cheapest = bids.json()["results"][0]
        with self.client.post(
            f"/api/v1/orders/{order_id}/accept/", json={"bid": cheapest["id"]}, name="POST accept", catch_response=True
        ) as accepted:
            if accepted.status_code == 409:  # awarded at its deadline meanwhile
                accepted.success()
