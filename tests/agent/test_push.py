"""The agent's push listener against the real ASGI application served by uvicorn."""

import os
import threading
import time

import pytest

from agent.push import PushListener, socket_url
from core import services as accounts
from core.models import TokenScope
from tests import factories as f

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="pushes between processes need the Redis channel layer"),
]


def test_socket_urls() -> None:
    assert socket_url("https://market.example.com") == "wss://market.example.com/ws/provider/"
    assert socket_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000/ws/provider/"


def test_a_new_order_wakes_the_agent_and_a_dead_socket_means_polling(asgi_server: str) -> None:
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    wake = threading.Event()
    listener = PushListener(asgi_server, token, wake).start()
    try:
        assert listener.connected.wait(10), "the socket did not connect"
        assert wake.wait(5)  # connecting wakes the agent to catch up
        wake.clear()
        f.order(f.client_user())
        assert wake.wait(5), "no push for the new order"
        assert listener.received >= 2  # hello, then the order
    finally:
        listener.stop()
    assert not listener.connected.is_set()


def test_a_refused_token_never_connects_and_the_listener_keeps_trying() -> None:
    wake = threading.Event()
    listener = PushListener("http://127.0.0.1:9", "gpm_x", wake, max_backoff=0.2).start()
    try:
        time.sleep(0.5)
        assert not listener.connected.is_set() and not wake.is_set()
        assert listener._thread.is_alive()
    finally:
        listener.stop()


def test_reading_a_leases_logs_asks_its_agent_to_stream_them(asgi_server: str) -> None:
    from leases import services as lease_services
    from leases.models import Lease
    from marketplace import services as market

    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    client = f.client_user(balance=100 * 1_000_000)
    order = f.order(client)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, 1_000_000).pk)
    watched: list[tuple[int, float]] = []
    wake = threading.Event()
    listener = PushListener(asgi_server, token, wake, on_logs_watch=lambda *w: watched.append(w)).start()
    try:
        assert listener.connected.wait(10), "the socket did not connect"
        assert not lease_services.lease_logs_watch(lease=lease)  # funded, not running yet: no log to stream
        Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.RUNNING)
        lease.refresh_from_db()
        wake.clear()
        assert lease_services.lease_logs_watch(lease=lease)
        deadline = time.monotonic() + 5
        while not watched and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watched == [(lease.pk, 90.0)]
        assert not wake.is_set()  # only that lease's log: no pass of every job is due
        assert not lease_services.lease_logs_watch(lease=lease)  # asked again within half a minute: once
    finally:
        listener.stop()
