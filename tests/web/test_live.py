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
    assert await ws.receive_json_from(timeout=5) == {"type": "order.changed", "order": order.pk}
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
