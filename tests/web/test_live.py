"""The pages' sockets: an order page hears its bids, a lease page its lease; nobody else's."""

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.test import Client

from config.asgi import application
from leases import services as leases
from marketplace import services as market
from tests import factories as f
from tests.factories import USD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest_asyncio.fixture(autouse=True)
async def _close_connections():  # type: ignore[no-untyped-def]
    yield
    await database_sync_to_async(connections.close_all)()


@database_sync_to_async
def session_of(user) -> str:  # type: ignore[no-untyped-def]
    c = Client()
    c.force_login(user)
    return c.cookies[settings.SESSION_COOKIE_NAME].value


def page_socket(path: str, session: str | None, origin: bytes = b"http://localhost") -> WebsocketCommunicator:
    headers = [(b"origin", origin)]
    if session:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def test_the_order_page_hears_bids_and_the_award_and_the_lease_page_its_lease() -> None:
    client = await database_sync_to_async(f.client_user)(balance=100 * USD)
    order = await database_sync_to_async(f.order)(client)
    provider = await database_sync_to_async(f.provider)()
    ws = page_socket(f"/ws/orders/{order.pk}/", await session_of(client))
    connected, _ = await ws.connect()
    assert connected
    bid = await database_sync_to_async(f.bid)(provider, order, 2 * USD)
    event = await ws.receive_json_from(timeout=5)
    assert event["type"] == "bid.placed" and event["order"] == order.pk and event["bid"]["id"] == bid.pk
    lease = await database_sync_to_async(market.order_accept)(client=client, order_id=order.pk, bid_id=bid.pk)
    assert await ws.receive_json_from(timeout=5) == {"type": "order.changed", "order": order.pk}
    await ws.disconnect()

    lease_ws = page_socket(f"/ws/leases/{lease.pk}/", await session_of(provider.user))  # the provider's page too
    connected, _ = await lease_ws.connect()
    assert connected
    await database_sync_to_async(leases.lease_report_status)(
        user=provider.user, lease_id=lease.pk, status="running", endpoints=["203.0.113.7:8888"]
    )
    assert await lease_ws.receive_json_from(timeout=5) == {"type": "lease.changed", "lease": lease.pk}
    await lease_ws.disconnect()


async def test_a_socket_for_someone_elses_order_or_lease_is_refused() -> None:
    client = await database_sync_to_async(f.client_user)(balance=100 * USD)
    order = await database_sync_to_async(f.order)(client)
    stranger = await session_of(await database_sync_to_async(f.client_user)())
    for path, session in (
        (f"/ws/orders/{order.pk}/", stranger),
        (f"/ws/leases/{order.pk}/", stranger),
        (f"/ws/orders/{order.pk}/", None),  # not logged in
    ):
        ws = page_socket(path, session)
        connected, code = await ws.connect()
        assert not connected and code in (4401, 4403), path
    # the right session from another site's page: refused before it reaches the consumer
    ws = page_socket(f"/ws/orders/{order.pk}/", await session_of(client), origin=b"https://evil.example")
    connected, _ = await ws.connect()
    assert not connected


async def test_bids_are_sealed_the_client_hears_every_bid_with_its_row_a_provider_only_its_own() -> None:
    client = await database_sync_to_async(f.client_user)(balance=100 * USD)
    order = await database_sync_to_async(f.order)(client, resources={"gpu_count": 2})
    alice = await database_sync_to_async(f.provider)(region="eu-west", reputation=873)
    bob = await database_sync_to_async(f.provider)()
    alice_user, bob_user = await database_sync_to_async(lambda: (alice.user, bob.user))()
    sockets = {}
    for who, user in (("client", client), ("alice", alice_user), ("bob", bob_user)):
        sockets[who] = page_socket(f"/ws/orders/{order.pk}/", await session_of(user))
        connected, _ = await sockets[who].connect()
        assert connected, who

    placed = await database_sync_to_async(f.bid)(alice, order, 3 * USD)
    event = await sockets["client"].receive_json_from(timeout=5)
    assert event == {
        "type": "bid.placed",
        "order": order.pk,
        "bid": {
            "id": placed.pk,
            "provider_id": alice.pk,
            "rank": placed.rank_key,
            "status": "open",
            "price_per_hour": 3 * USD,
            "text": {
                "provider": alice.name,
                "region": "eu-west",
                "gpu_model": placed.gpu_model.name,
                "per_gpu_hour": "$1.50",
                "per_hour": "$3.00",
                "reliability": "87 %",
                "verified": "",
                "status": "Open",
                "accept": f"Accept the bid of {alice.name} at $3.00/h, $6.00 deposit",
                "accept_short": "Accept at $3.00/h, $6.00 deposit",
            },
        },
    }
    assert (await sockets["alice"].receive_json_from(timeout=5))["bid"]["id"] == placed.pk  # the bidder's own
    assert await sockets["bob"].receive_nothing(timeout=0.5)  # a competitor hears nothing of it

    await database_sync_to_async(market.bid_lower)(user=alice_user, bid_id=placed.pk, price_per_hour=2 * USD)
    lowered = await sockets["client"].receive_json_from(timeout=5)
    assert lowered["type"] == "bid.changed" and lowered["bid"]["text"]["per_hour"] == "$2.00"
    assert lowered["bid"]["rank"] < placed.rank_key  # cheaper: listed earlier
    await database_sync_to_async(market.bid_withdraw)(user=alice_user, bid_id=placed.pk)
    withdrawn = await sockets["client"].receive_json_from(timeout=5)
    assert withdrawn["bid"]["status"] == "withdrawn" and withdrawn["bid"]["text"]["status"] == "Withdrawn"
    assert await sockets["bob"].receive_nothing(timeout=0.5)

    await database_sync_to_async(market.order_cancel)(client=client, order_id=order.pk)
    for socket in sockets.values():  # the order's own news reaches every page watching it
        received = await socket.receive_json_from(timeout=5)
        while received.get("bid"):  # the bidder's page still has its own bid's events queued
            received = await socket.receive_json_from(timeout=5)
        assert received == {"type": "order.changed", "order": order.pk}
        await socket.disconnect()
