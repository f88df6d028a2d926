"""The SDK: ``Client`` (blocking) and ``AsyncClient`` (asyncio), the same operations on both.

    from gpumarket_client import Client

    market = Client("https://market.example.com", token="gpm_…")
    cheapest = market.offers(gpu_model="h100-sxm-80gb", verified=True)[0]
    order = market.create_order(sdl=open("deploy.yaml").read(), duration_hours=24)
    for bid in market.watch_bids(order.id):          # live, over the order's WebSocket
        print(bid.provider_name, bid.price_per_hour)
    lease = market.accept(order.id, bid.id)

Every POST carries an ``Idempotency-Key`` (yours, or one made for the call), so a retry after a
lost answer never does it twice; reads and keyed writes are retried on connection errors and on
429/502/503/504 (``Retry-After`` honoured). Errors raise ``ApiError`` with the API's code,
message and fields."""

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from gpumarket_client.errors import ApiError, TransportError
from gpumarket_client.models import Bid, Lease, LeaseLog, Offer, Order

RETRY_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = "gpumarket-client/0.1"
OPEN = "open"


@dataclass(frozen=True)
class Call:
    """One request: what to send, and whether it may be sent again."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    content_type: str = ""
    idempotency_key: str | None = None
    expect_json: bool = True
    accept: str = "application/json"

    @property
    def retriable(self) -> bool:
        return self.method == "GET" or self.idempotency_key is not None

    def request(self) -> dict[str, Any]:
        """``httpx``'s ``request`` arguments."""
        return {
            "method": self.method,
            "url": self.path,
            "params": self.params,
            "json": self.json,
            "content": self.content,
            "headers": self.headers(),
        }

    def headers(self) -> dict[str, str]:
        headers = {"Accept": self.accept, **({"Content-Type": self.content_type} if self.content_type else {})}
        if self.idempotency_key:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers


def _params(**values: Any) -> dict[str, Any]:
    """Query parameters, without the unset ones; booleans as the API reads them."""
    return {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in values.items() if v is not None}


def _result(response: httpx.Response, call: Call) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise ApiError.from_response(response.status_code, body, response.text)
    if not call.expect_json:
        return response.text
    return response.json() if response.content else None


def _settle(
    call: Call, response: httpx.Response | None, error: Exception | None, attempt: int, retries: int, base_url: str
) -> tuple[bool, Any]:
    """After an attempt: (True, the answer), or (False, seconds to wait before the next); raises
    what cannot be retried."""
    if response is None:
        if not call.retriable or attempt >= retries:
            raise TransportError(f"{base_url} cannot be reached: {error}") from error
        return False, _delay(None, attempt)
    if response.status_code not in RETRY_STATUSES or not call.retriable or attempt >= retries:
        return True, _result(response, call)
    return False, _delay(response, attempt)


def _fresh(answers: list[dict[str, Any]], seen: dict[int, tuple[str, int]]) -> list[Bid]:
    """The open bids not yet given, or changed since."""
    fresh = []
    for bid in map(Bid.from_dict, answers):
        if bid.status == OPEN and seen.get(bid.id) != (bid.status, bid.price_per_hour):
            seen[bid.id] = (bid.status, bid.price_per_hour)
            fresh.append(bid)
    return fresh


def _left(stop: float | None) -> float:
    """Seconds to wait for the socket's next event (at most 5: the order is read again then)."""
    return 5.0 if stop is None else min(5.0, stop - time.monotonic())


def _delay(response: httpx.Response | None, attempt: int) -> float:
    if response is not None:
        try:
            return min(30.0, float(response.headers.get("Retry-After", "")))
        except ValueError:
            pass
    return min(8.0, 0.5 * 2**attempt)


class _Operations:
    """The API's operations, each built once as a ``Call``; the clients run them."""

    base_url: str
    token: str

    def _run(self, call: Call) -> Any:  # pragma: no cover - each client has its own
        raise NotImplementedError

    @staticmethod
    def _key(idempotency_key: str | None) -> str:
        return idempotency_key or f"sdk-{uuid.uuid4()}"

    # --- reading the market -----------------------------------------------------------------
    def gpu_models(self) -> Any:
        return self._run(Call("GET", "/gpu-models/"))

    def offers_page(self, *, limit: int = 100, offset: int = 0, **filters: Any) -> Any:
        """One page of offers: ``gpu_model``, ``min_vram_gib``, ``gpu_count``, ``region``,
        ``verified``, ``min_reputation``, ``max_price_per_gpu_hour`` (micro-dollars), ``ordering``."""
        return self._run(Call("GET", "/offers/", _params(limit=limit, offset=offset, **filters)))

    # --- orders and bids ----------------------------------------------------------------------
    def create_order(
        self,
        spec: dict[str, Any] | None = None,
        *,
        sdl: str | bytes | None = None,
        workload_file: str | bytes | None = None,
        idempotency_key: str | None = None,
        **terms: Any,
    ) -> Any:
        """An order from our spec (a dict), a workload file (YAML text) or an Akash SDL file (YAML
        text, with ``terms`` beside it: ``duration_hours``, ``max_price_per_hour`` or
        ``max_price_per_gpu_hour``, ``bid_window_seconds``, ``pricing_rule``, …)."""
        key = self._key(idempotency_key)
        text = sdl if sdl is not None else workload_file
        if text is not None:
            body = text.encode() if isinstance(text, str) else text
            call = Call(
                "POST", "/orders/", _params(**terms), content=body, content_type="application/yaml", idempotency_key=key
            )
        else:
            call = Call("POST", "/orders/", json={**(spec or {}), **terms}, idempotency_key=key)
        return self._run(call)

    def _post(self, path: str, body: Any = None, idempotency_key: str | None = None) -> Any:
        """A POST under an ``Idempotency-Key``: sent again after a lost answer, done once."""
        return self._run(Call("POST", path, json=body, idempotency_key=self._key(idempotency_key)))

    def order(self, order_id: int) -> Any:
        return self._run(Call("GET", f"/orders/{int(order_id)}/"))

    def bids(self, order_id: int) -> Any:
        return self._run(Call("GET", f"/orders/{int(order_id)}/bids/", {"limit": 500}))

    def accept(self, order_id: int, bid_id: int, *, idempotency_key: str | None = None) -> Any:
        return self._post(f"/orders/{int(order_id)}/accept/", {"bid": int(bid_id)}, idempotency_key)

    def cancel_order(self, order_id: int, *, idempotency_key: str | None = None) -> Any:
        return self._post(f"/orders/{int(order_id)}/cancel/", None, idempotency_key)

    # --- leases ---------------------------------------------------------------------------------
    def leases_page(self, *, limit: int = 100, offset: int = 0, status: str | None = None) -> Any:
        return self._run(Call("GET", "/leases/", _params(limit=limit, offset=offset, status=status)))

    def lease(self, lease_id: int) -> Any:
        return self._run(Call("GET", f"/leases/{int(lease_id)}/"))

    def close(self, lease_id: int, *, idempotency_key: str | None = None) -> Any:
        return self._post(f"/leases/{int(lease_id)}/close/", None, idempotency_key)

    def top_up(self, lease_id: int, amount: int, *, idempotency_key: str | None = None) -> Any:
        """Add ``amount`` micro-dollars from your balance: the lease runs that much longer."""
        return self._post(f"/leases/{int(lease_id)}/top-ups/", {"amount": int(amount)}, idempotency_key)

    def logs(self, lease_id: int) -> Any:
        """The last lines the workload wrote (reading them asks the provider's agent to stream)."""
        return self._run(Call("GET", f"/leases/{int(lease_id)}/logs/"))

    def statement(self, lease_id: int, *, csv: bool = False) -> Any:
        path = f"/leases/{int(lease_id)}/statement/"
        if csv:
            return self._run(Call("GET", path, {"format": "csv"}, expect_json=False, accept="text/csv"))
        return self._run(Call("GET", path))

    def account(self) -> Any:
        return self._run(Call("GET", "/account/"))

    # --- the order's socket -------------------------------------------------------------------
    def websocket_url(self, path: str) -> tuple[str, dict[str, str], str]:
        """A socket of the marketplace's: its URL, the headers that authenticate it, its origin."""
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return (
            f"{scheme}://{parts.netloc}{path}",
            {"Authorization": f"Bearer {self.token}"},
            f"{parts.scheme}://{parts.netloc}",
        )


class Client(_Operations):
    """The blocking client. ``token``: an API token (client scope to rent)."""

    def __init__(self, base_url: str, token: str, *, retries: int = 3, timeout: float = 30.0) -> None:
        self.base_url, self.token, self.retries = base_url.rstrip("/"), token, retries
        self.http = httpx.Client(
            base_url=f"{self.base_url}/api/v1",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=timeout,
        )

    def close_connection(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_connection()

    def _run(self, call: Call) -> Any:
        for attempt in itertools.count():
            response, error = None, None
            try:
                response = self.http.request(**call.request())
            except httpx.TransportError as exc:
                error = exc
            done, value = _settle(call, response, error, attempt, self.retries, self.base_url)
            if done:
                return value
            time.sleep(value)

    # typed answers
    def offers(self, *, max_items: int = 500, **filters: Any) -> list[Offer]:
        """Every offer that matches (following the pages), cheapest first unless ``ordering`` says."""
        return [Offer.from_dict(item) for item in self.iterate(self.offers_page, max_items=max_items, **filters)]

    def leases(self, *, status: str | None = None, max_items: int = 500) -> list[Lease]:
        return [Lease.from_dict(item) for item in self.iterate(self.leases_page, max_items=max_items, status=status)]

    def iterate(
        self, page: Any, *, max_items: int = 500, page_size: int = 100, **params: Any
    ) -> Iterator[dict[str, Any]]:
        """The items of a listing, page after page (``page``: e.g. ``self.offers_page``)."""
        offset, given = 0, 0
        while given < max_items:
            body = page(limit=min(page_size, max_items - given), offset=offset, **params)
            for item in body["results"]:
                yield item
                given += 1
            offset += len(body["results"])
            if not body.get("next") or not body["results"]:
                return

    def create(self, *args: Any, **kwargs: Any) -> Order:
        return Order.from_dict(self.create_order(*args, **kwargs))

    def get_order(self, order_id: int) -> Order:
        return Order.from_dict(self.order(order_id))

    def open_bids(self, order_id: int) -> list[Bid]:
        return [Bid.from_dict(b) for b in self.bids(order_id)["results"] if b["status"] == OPEN]

    def accept_bid(self, order_id: int, bid_id: int, **kwargs: Any) -> Lease:
        return Lease.from_dict(self.accept(order_id, bid_id, **kwargs))

    def get_lease(self, lease_id: int) -> Lease:
        return Lease.from_dict(self.lease(lease_id))

    def get_logs(self, lease_id: int) -> LeaseLog:
        return LeaseLog.from_dict(self.logs(lease_id))

    def watch_bids(self, order_id: int, *, timeout: float | None = None) -> Iterator[Bid]:
        """Each open bid as it arrives or changes, over the order's WebSocket, until the order is
        no longer open (awarded, cancelled, past its deadline) or ``timeout`` seconds pass."""
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        url, headers, origin = self.websocket_url(f"/ws/orders/{int(order_id)}/")
        stop = time.monotonic() + timeout if timeout is not None else None
        seen: dict[int, tuple[str, int]] = {}
        with connect(url, additional_headers=headers, origin=origin, open_timeout=10) as socket:  # type: ignore[arg-type]
            while True:
                order = self.get_order(order_id)
                yield from _fresh(self.bids(order_id)["results"], seen)  # what the events name, read from the API
                if order.status != OPEN or (left := _left(stop)) <= 0:
                    return
                try:
                    socket.recv(timeout=left)
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return


class AsyncClient(_Operations):
    """The asyncio client: the same operations, awaited."""

    def __init__(self, base_url: str, token: str, *, retries: int = 3, timeout: float = 30.0) -> None:
        self.base_url, self.token, self.retries = base_url.rstrip("/"), token, retries
        self.http = httpx.AsyncClient(
            base_url=f"{self.base_url}/api/v1",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, call: Call) -> Any:  # awaited: the async twin of Client._run
        for attempt in itertools.count():
            response, error = None, None
            try:
                response = await self.http.request(**call.request())
            except httpx.TransportError as exc:
                error = exc
            done, value = _settle(call, response, error, attempt, self.retries, self.base_url)
            if done:
                return value
            await asyncio.sleep(value)

    async def offers(self, *, max_items: int = 500, **filters: Any) -> list[Offer]:
        return [Offer.from_dict(item) async for item in self.iterate(self.offers_page, max_items=max_items, **filters)]

    async def iterate(
        self, page: Any, *, max_items: int = 500, page_size: int = 100, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """The items of a listing, page after page (``page``: e.g. ``self.offers_page``)."""
        offset, given = 0, 0
        while given < max_items:
            body = await page(limit=min(page_size, max_items - given), offset=offset, **params)
            for item in body["results"]:
                yield item
                given += 1
            offset += len(body["results"])
            if not body.get("next") or not body["results"]:
                return

    async def watch_bids(self, order_id: int, *, timeout: float | None = None) -> AsyncIterator[Bid]:
        """Each open bid as it arrives or changes, over the order's WebSocket (see ``Client``)."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        url, headers, origin = self.websocket_url(f"/ws/orders/{int(order_id)}/")
        stop = time.monotonic() + timeout if timeout is not None else None
        seen: dict[int, tuple[str, int]] = {}
        async with connect(url, additional_headers=headers, origin=origin, open_timeout=10) as socket:  # type: ignore[arg-type]
            while True:
                order = Order.from_dict(await self.order(order_id))
                for bid in _fresh((await self.bids(order_id))["results"], seen):
                    yield bid
                if order.status != OPEN or (left := _left(stop)) <= 0:
                    return
                try:
                    await asyncio.wait_for(socket.recv(), timeout=left)
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return
