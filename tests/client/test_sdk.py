"""The SDK against the live marketplace: pages followed, typed answers, the API's errors, retries
that never do a POST twice (through a proxy that loses an answer or says 503), and the bids of an
order streamed over its WebSocket, blocking and with asyncio."""

import asyncio
import socket
import socketserver
import threading
from collections.abc import Iterator

import httpx
import pytest

from core import services as accounts
from core.models import TokenScope
from gpumarket_client import ApiError, AsyncClient, Client, TransportError
from marketplace.models import Order
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.django_db(transaction=True)
SPEC = {
    "workload": {"image": "ghcr.io/acme/trainer:1.4", "ports": [8888]},
    "resources": {"gpu_count": 1, "gpu_models": ["h100-sxm-80gb"]},
    "duration_hours": 2,
    "max_price_per_hour": 3 * USD,
    "bid_window_seconds": 60,
}


class FaultyProxy(socketserver.ThreadingTCPServer):
    """In front of the server, one request a connection: the first ``lose`` answers to POSTs are
    dropped after the server did the work; the first ``busy`` GETs are answered 503 by the proxy."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: tuple[str, int], *, lose: int = 0, busy: int = 0) -> None:
        self.upstream, self.lose, self.busy, self.seen = upstream, lose, busy, []
        super().__init__(("127.0.0.1", 0), _Relay)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Relay(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: FaultyProxy = self.server  # type: ignore[assignment]
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
        while len(body) < length:
            body += self.request.recv(65536)
        method = lines[0].split()[0]
        server.seen.append(lines[0])
        if method == "GET" and server.busy > 0:
            server.busy -= 1
            self.request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n")
            return
        kept = [line for line in lines[1:] if not line.lower().startswith(("connection:", "host:"))]
        request = "\r\n".join([lines[0], f"Host: {server.upstream[0]}", *kept, "Connection: close"]).encode()
        with socket.create_connection(server.upstream) as upstream:
            upstream.sendall(request + b"\r\n\r\n" + body)
            answer = b""
            while chunk := upstream.recv(65536):
                answer += chunk
        if method == "POST" and server.lose > 0:  # done upstream, the answer lost on the way back
            server.lose -= 1
            return
        self.request.sendall(answer)


@pytest.fixture
def market(live_server) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    client = f.client_user(balance=100 * USD)
    token = accounts.token_issue(user=client, name="sdk", scope=TokenScope.CLIENT).secret
    yield live_server.url, token


def test_pages_typed_answers_and_the_apis_errors(market: tuple[str, str]) -> None:
    for index in range(5):
        f.provider(gpus={"h100-sxm-80gb": 2 + index})
    url, token = market
    with Client(url, token) as sdk:
        offers = list(sdk.iterate(sdk.offers_page, page_size=2, gpu_model="h100-sxm-80gb"))
        assert len(offers) == 5 and len({o["provider"]["id"] for o in offers}) == 5
        assert [o.available for o in sdk.offers(min_vram_gib=80, gpu_count=6)] == [6]
        order = sdk.create(SPEC)
        assert order.status == "open" and order.resources["gpu_count"] == 1
        with pytest.raises(ApiError) as refused:
            sdk.create({**SPEC, "duration_hours": 9999})
        assert refused.value.status == 400 and refused.value.code == "validation_error"
        assert "duration_hours" in str(refused.value)
    with Client(url, "gpm_wrong") as stranger, pytest.raises(ApiError) as unknown:
        stranger.account()
    assert unknown.value.status == 401
    with Client("http://127.0.0.1:9", token, retries=1) as nowhere, pytest.raises(TransportError):
        nowhere.account()


def test_a_lost_answer_is_retried_under_the_same_key_and_done_once(market: tuple[str, str], live_server) -> None:  # type: ignore[no-untyped-def]
    _, token = market
    host, port = live_server.url.removeprefix("http://").split(":")
    proxy = FaultyProxy((host, int(port)), lose=1, busy=2)
    try:
        with Client(proxy.url, token) as sdk:
            assert sdk.account()["username"]  # two 503s first, then the answer
            order = sdk.create(SPEC)  # the first answer lost: sent again under the same key
        assert Order.objects.count() == 1 and Order.objects.get().pk == order.id
        posts = [line for line in proxy.seen if line.startswith("POST")]
        assert len(posts) == 2
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_bids_stream_over_the_orders_socket(asgi_server: str) -> None:
    client = f.client_user(balance=100 * USD)
    token = accounts.token_issue(user=client, name="sdk", scope=TokenScope.CLIENT).secret
    bidders = [f.provider(gpus={"h100-sxm-80gb": 4}) for _ in range(2)]
    tokens = [accounts.token_issue(user=p.user, name="agent", scope=TokenScope.PROVIDER).secret for p in bidders]

    def bid_later(order_id: int) -> None:  # the providers' agents, a moment after the order opens
        for index, provider_token in enumerate(tokens):
            threading.Event().wait(0.5)
            httpx.post(
                f"{asgi_server}/api/v1/orders/{order_id}/bids/",
                json={"price_per_hour": (2 - index) * USD},
                headers={"Authorization": f"Bearer {provider_token}"},
                timeout=10,
            ).raise_for_status()

    with Client(asgi_server, token) as sdk:
        order = sdk.create(SPEC)
        threading.Thread(target=bid_later, args=(order.id,), daemon=True).start()
        seen = []
        for bid in sdk.watch_bids(order.id, timeout=15):
            seen.append(bid.price_per_hour)
            if len(seen) == 2:
                break
        assert sorted(seen) == [USD, 2 * USD]
        lease = sdk.accept_bid(order.id, min(sdk.open_bids(order.id), key=lambda b: b.price_per_hour).id)
        assert lease.price_per_hour == USD

    async def asynchronously() -> list[int]:
        async with AsyncClient(asgi_server, token) as sdk:
            offers = await sdk.offers(gpu_model="h100-sxm-80gb")
            assert offers and all(o.gpu_model["id"] == "h100-sxm-80gb" for o in offers)
            order = await sdk.create_order(SPEC)
            threading.Thread(target=bid_later, args=(order["id"],), daemon=True).start()
            prices = []
            async for bid in sdk.watch_bids(order["id"], timeout=15):
                prices.append(bid.price_per_hour)
                if len(prices) == 2:
                    break
            return prices

    assert sorted(asyncio.run(asynchronously())) == [USD, 2 * USD]
