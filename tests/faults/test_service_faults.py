"""The marketplace as a real server process (uvicorn, the ASGI app: HTTP and WebSockets) with Redis
stopped under it and started again, and with the server itself killed in the middle of an auction
and started again."""

import threading
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from agent.push import PushListener
from chain.devnode import free_port
from core import services as accounts
from core.models import TokenScope
from leases.models import Lease
from marketplace.models import Bid, Order
from marketplace.services import order_award_due
from tests import factories as f
from tests.factories import USD
from tests.faults.harness import Redis, assert_converged, database_url, kill, python, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Server:
    """uvicorn serving config.asgi on a free port, on the test database."""

    def __init__(self, *, redis_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis_url,  # the channel layer, the rate limits and the Celery broker
            "CELERY_TASK_ALWAYS_EAGER": "false",  # tasks go to the broker (no worker takes them here)
            "ALLOWED_HOSTS": "*",
        }
        self.process = None
        self.start()

    def start(self) -> None:
        self.process = python(
            *("-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(self.port)),
            *("--log-level", "warning", "--lifespan", "off"),
            env=self.env,
        )
        wait_for(self._up, timeout=60, what="the server")

    def _up(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def kill(self) -> str:
        return kill(self.process)


def api(server: Server, token: str, method: str, path: str, body: dict | None = None) -> requests.Response:
    return requests.request(
        method, f"{server.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=15
    )


def token_of(user, scope: str) -> str:  # type: ignore[no-untyped-def]
    return accounts.token_issue(user=user, name="faults", scope=scope).secret


def test_with_redis_down_the_api_works_and_live_updates_resume_when_it_is_back(tmp_path: Path) -> None:
    redis = Redis(tmp_path)
    server = Server(redis_url=redis.url)
    client, provider = f.client_user(balance=100 * USD), f.provider()
    client_token, provider_token = token_of(client, TokenScope.CLIENT), token_of(provider.user, TokenScope.PROVIDER)
    wake = threading.Event()
    listener = PushListener(server.url, provider_token, wake, max_backoff=1.0).start()
    try:
        wait_for(listener.connected.is_set, what="the push socket")
        wake.clear()
        assert api(server, client_token, "POST", "/api/v1/orders/", f.spec_payload()).status_code == 201
        wait_for(wake.is_set, what="the new order's push")

        redis.stop()
        # REST goes on: orders, bids, lists, the provider's view (rate limits are not counted meanwhile)
        created = api(server, client_token, "POST", "/api/v1/orders/", f.spec_payload())
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
        bid = api(server, provider_token, "POST", f"/api/v1/orders/{order_id}/bids/", {"price_per_hour": 2 * USD})
        assert bid.status_code == 201, bid.text
        assert api(server, provider_token, "GET", "/api/v1/provider/orders/").status_code == 200
        assert api(server, client_token, "GET", f"/api/v1/orders/{order_id}/bids/").status_code == 200
        accepted = api(server, client_token, "POST", f"/api/v1/orders/{order_id}/accept/", {"bid": bid.json()["id"]})
        assert accepted.status_code == 201, accepted.text

        redis.start()  # empty: whatever it held is gone
        wait_for(lambda: _pushes_again(server, client_token, wake), timeout=30, what="pushes again")
        lease = Lease.objects.get(order_id=order_id)
        assert_converged(leases=[lease])
    finally:
        listener.stop()
        output = server.kill()
        redis.stop()
    # no request failed and nothing crashed: what Redis's absence cost is said in one-line warnings
    assert "Traceback" not in output and " 500 " not in output, output[-3000:]
    assert "could not queue marketplace.tasks.award_order" in output  # the broker was down too


def _pushes_again(server: Server, token: str, wake: threading.Event) -> bool:
    wake.clear()
    assert api(server, token, "POST", "/api/v1/orders/", f.spec_payload()).status_code == 201
    return wake.wait(3)


def test_a_marketplace_killed_mid_auction_finishes_it_once_restarted(tmp_path: Path) -> None:
    redis = Redis(tmp_path)
    server = Server(redis_url=redis.url)
    client = f.client_user(balance=100 * USD)
    providers = [f.provider() for _ in range(3)]
    client_token = token_of(client, TokenScope.CLIENT)
    tokens = [token_of(p.user, TokenScope.PROVIDER) for p in providers]
    try:
        order_id = api(server, client_token, "POST", "/api/v1/orders/", f.spec_payload()).json()["id"]
        first = api(server, tokens[0], "POST", f"/api/v1/orders/{order_id}/bids/", {"price_per_hour": 3 * USD})
        assert first.status_code == 201

        # killed with requests in flight: bids from two providers at once
        results: list = []

        def bid(token: str, price: int) -> None:
            try:
                body = {"price_per_hour": price}
                results.append(api(server, token, "POST", f"/api/v1/orders/{order_id}/bids/", body).status_code)
            except requests.RequestException as exc:
                results.append(exc)

        threads = [threading.Thread(target=bid, args=(t, p)) for t, p in ((tokens[1], 2 * USD), (tokens[2], USD))]
        for t in threads:
            t.start()
        server.kill()
        for t in threads:
            t.join(timeout=30)
        placed = Bid.objects.filter(order_id=order_id).count()
        assert 1 <= placed <= 3  # each bid is in, or not at all
        assert Bid.objects.filter(order_id=order_id, status=Bid.Status.OPEN).count() == placed

        server.start()
        # what the killed requests did not do, their callers do again; a bid that got in is a 409
        for token, price in ((tokens[1], 2 * USD), (tokens[2], USD)):
            again = api(server, token, "POST", f"/api/v1/orders/{order_id}/bids/", {"price_per_hour": price})
            assert again.status_code in (201, 409), again.text
        assert Bid.objects.filter(order_id=order_id).count() == 3
        # the deadline passes while nobody accepted: the sweep awards the cheapest bid, once
        order = Order.objects.get(pk=order_id)
        order_award_due(order_id=order_id, now=order.deadline + timedelta(seconds=1))
        order_award_due(order_id=order_id, now=order.deadline + timedelta(seconds=2))
        lease = Lease.objects.get(order_id=order_id)
        assert lease.bid.provider == providers[2] and lease.bid_price_per_hour == USD
        assert Bid.objects.filter(order_id=order_id, status=Bid.Status.WON).count() == 1
        assert_converged(leases=[lease])
    finally:
        server.kill()
        redis.stop()
