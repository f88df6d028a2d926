"""``/ws/provider/``: the push channel to provider agents."""

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from config.asgi import application
from core import services as accounts
from core.models import TokenScope
from marketplace import services as market
from tests import factories as f
from tests.factories import USD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
ORIGIN = (b"origin", b"http://localhost")


@pytest_asyncio.fixture(autouse=True)
async def _close_connections():  # type: ignore[no-untyped-def]
    """The ORM calls ran in sync_to_async's thread: close its connection, or the test database
    cannot be dropped at the end of the run."""
    yield
    await database_sync_to_async(connections.close_all)()


def socket(token: str | None) -> WebsocketCommunicator:
    headers = [ORIGIN]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return WebsocketCommunicator(application, "/ws/provider/", headers=headers)


@database_sync_to_async
def provider_with_token(scope: str = TokenScope.PROVIDER):  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    return provider, accounts.token_issue(user=provider.user, name="agent", scope=scope).secret


async def test_the_agent_hears_of_new_orders_and_of_its_leases() -> None:
    provider, token = await provider_with_token()
    ws = socket(token)
    connected, _ = await ws.connect()
    assert connected
    assert await ws.receive_json_from() == {"type": "hello", "provider": provider.pk}

    client = await database_sync_to_async(f.client_user)(balance=100 * USD)
    order = await database_sync_to_async(f.order)(client)
    assert await ws.receive_json_from(timeout=5) == {"type": "order.opened", "order": order.pk}

    @database_sync_to_async
    def award():  # type: ignore[no-untyped-def]
        return market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, 2 * USD).pk)

    lease = await award()
    assert await ws.receive_json_from(timeout=5) == {"type": "lease.funded", "lease": lease.pk}

    # pings are answered; garbage is ignored and the socket stays up
    await ws.send_to(text_data="{not json")
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
    await ws.disconnect()


async def test_another_providers_lease_is_not_pushed_to_me() -> None:
    _, token = await provider_with_token()
    other, _ = await provider_with_token()
    ws = socket(token)
    assert (await ws.connect())[0]
    await ws.receive_json_from()  # hello

    @database_sync_to_async
    def award_to_other():  # type: ignore[no-untyped-def]
        client = f.client_user(balance=100 * USD)
        order = f.order(client)
        return market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(other, order, 2 * USD).pk)

    await award_to_other()
    assert (await ws.receive_json_from(timeout=5))["type"] == "order.opened"  # every provider hears of orders
    assert await ws.receive_nothing(timeout=0.5)  # but not of leases that are not theirs
    await ws.disconnect()


@database_sync_to_async
def client_token() -> str:
    return accounts.token_issue(user=f.client_user(), name="app", scope=TokenScope.CLIENT).secret


@pytest.mark.parametrize("who", ["nobody", "bogus", "client"])
async def test_no_provider_token_no_socket(who: str) -> None:
    token = {"nobody": None, "bogus": "gpm_nothing_here"}.get(who) or (
        await client_token() if who == "client" else None
    )
    ws = socket(token)
    connected, code = await ws.connect()
    assert not connected and code in (4401, 4403)
