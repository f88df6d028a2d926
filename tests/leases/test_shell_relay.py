"""The shell relay through the real ASGI application and channel layer: the client's terminal
socket (``/ws/leases/<id>/shell/``) on one side, the provider's agent socket (``/ws/provider/``)
on the other, each played by a test socket speaking the protocol (``protocol.shell``). The agent's
own side, against real containers, is in ``tests/agent/test_shell.py``."""

import asyncio
import json

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.test import Client

from config.asgi import application
from core import services as accounts
from core.models import TokenScope
from leases import consumers
from leases import services as leases
from leases.models import Lease, ShellSession
from leases.services import shells
from marketplace import services as market
from protocol import shell as wire
from tests import factories as f
from tests.factories import USD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
ORIGIN = (b"origin", b"http://localhost")


@pytest_asyncio.fixture(autouse=True)
async def _close_connections():  # type: ignore[no-untyped-def]
    yield
    await database_sync_to_async(connections.close_all)()


@database_sync_to_async
def running_lease(token_scope: str = TokenScope.PROVIDER) -> tuple[Lease, str]:
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    token = accounts.token_issue(user=provider.user, name="agent", scope=token_scope).secret
    client = f.client_user(balance=100 * USD)
    order = f.order(client)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    leases.lease_report_status(user=provider.user, lease_id=lease.pk, status="running", endpoints=[])
    return Lease.objects.select_related("client", "provider__user").get(pk=lease.pk), token


@database_sync_to_async
def session_of(user) -> str:  # type: ignore[no-untyped-def]
    c = Client()
    c.force_login(user)
    return c.cookies[settings.SESSION_COOKIE_NAME].value


async def terminal(lease_id: int, user, query: str = "?cols=100&rows=30") -> WebsocketCommunicator:  # type: ignore[no-untyped-def]
    headers = [ORIGIN, (b"cookie", f"{settings.SESSION_COOKIE_NAME}={await session_of(user)}".encode())]
    return WebsocketCommunicator(application, f"/ws/leases/{lease_id}/shell/{query}", headers=headers)


async def agent_socket(token: str) -> WebsocketCommunicator:
    headers = [ORIGIN, (b"authorization", f"Bearer {token}".encode())]
    ws = WebsocketCommunicator(application, "/ws/provider/", headers=headers)
    connected, _ = await ws.connect()
    assert connected
    assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    return ws


async def next_of(ws: WebsocketCommunicator, kind: str, timeout: float = 5) -> dict:
    """The next message of that type (the agent's socket also hears the market's pushes)."""
    while True:
        message = await ws.receive_json_from(timeout=timeout)
        if message.get("type") == kind:
            return message


async def status(ws: WebsocketCommunicator) -> dict:
    message = json.loads(await ws.receive_from(timeout=5))
    assert message["type"] == "status"
    return message


async def opened_shell(lease: Lease, token: str) -> tuple[WebsocketCommunicator, WebsocketCommunicator, str]:
    """The agent's socket and the client's terminal, with a shell open between them."""
    agent = await agent_socket(token)
    browser = await terminal(lease.pk, lease.client)
    await browser.connect()
    assert (await status(browser))["state"] == "connecting"
    session = (await next_of(agent, wire.OPEN))["session"]
    await agent.send_json_to({"type": wire.OPENED, "session": session})
    assert (await status(browser))["state"] == "open"
    return agent, browser, session


@database_sync_to_async
def sessions_of(lease: Lease) -> list[ShellSession]:
    return list(ShellSession.objects.filter(lease=lease).order_by("id"))


async def test_a_shell_is_relayed_both_ways_and_recorded_without_its_keystrokes() -> None:
    lease, token = await running_lease()
    agent = await agent_socket(token)
    browser = await terminal(lease.pk, lease.client)
    connected, _ = await browser.connect()
    assert connected
    assert (await status(browser))["state"] == "connecting"

    opened = await next_of(agent, wire.OPEN)
    assert opened["lease"] == lease.pk and (opened["cols"], opened["rows"]) == (100, 30)
    assert "reply_to" not in opened  # the relay's plumbing stays on the server
    session = opened["session"]

    # typed before the shell started: kept for it
    await browser.send_json_to({"type": "stdin", "data": "ls\r"})
    await agent.send_json_to({"type": wire.OPENED, "session": session})
    assert (await status(browser))["state"] == "open"
    typed = await next_of(agent, wire.INPUT)
    assert wire.decode(typed["data"]) == b"ls\r" and typed["session"] == session

    await agent.send_json_to({"type": wire.OUTPUT, "session": session, "data": wire.encode(b"bin  etc\r\n\xff$ ")})
    assert await browser.receive_from(timeout=5) == b"bin  etc\r\n\xff$ "  # bytes as they came

    await browser.send_json_to({"type": "resize", "cols": 120, "rows": 40})
    resized = await next_of(agent, wire.RESIZE)
    assert (resized["cols"], resized["rows"]) == (120, 40)
    await browser.send_json_to({"type": "stdin", "data": "\x03"})  # Ctrl-C is a byte like any other
    assert wire.decode((await next_of(agent, wire.INPUT))["data"]) == b"\x03"

    [row] = await sessions_of(lease)
    assert row.user_id == lease.client_id and row.ended_at is None and str(row.token) == session

    await agent.send_json_to({"type": wire.EXIT, "session": session, "code": 0, "reason": "the shell ended"})
    closed = await status(browser)
    assert closed == {"type": "status", "state": "closed", "message": "The shell ended (exit status 0)."}
    assert (await browser.receive_output(timeout=5))["type"] == "websocket.close"
    await browser.disconnect()
    [row] = await sessions_of(lease)
    assert row.ended_at is not None and row.end_reason == "the shell ended (exit status 0)"
    assert "ls" not in row.end_reason
    await agent.disconnect()


async def test_leaving_the_page_hangs_up_and_the_agent_cannot_speak_for_other_sessions() -> None:
    lease, token = await running_lease()
    agent, browser, session = await opened_shell(lease, token)

    # an agent writing to a session it was not given: nothing arrives anywhere
    await agent.send_json_to({"type": wire.OUTPUT, "session": "not-given", "data": wire.encode(b"x")})
    await agent.send_json_to({"type": wire.OUTPUT, "session": session, "data": "%%% not base64"})
    assert await browser.receive_nothing(timeout=0.3)

    await browser.disconnect()
    assert (await next_of(agent, wire.CLOSE))["session"] == session
    for _ in range(50):
        [row] = await sessions_of(lease)
        if row.ended_at is not None:
            break
        await asyncio.sleep(0.05)
    assert row.end_reason == "closed in the browser"
    # the session is over: what the agent still sends for it goes nowhere, and does no harm
    await agent.send_json_to({"type": wire.OUTPUT, "session": session, "data": wire.encode(b"late")})
    await agent.disconnect()


async def test_only_the_leases_client_while_it_runs() -> None:
    lease, _ = await running_lease()
    provider_user = lease.provider.user
    stranger = await database_sync_to_async(f.client_user)()

    anonymous = WebsocketCommunicator(application, f"/ws/leases/{lease.pk}/shell/", headers=[ORIGIN])
    connected, code = await anonymous.connect()
    assert not connected and code == 4401

    for user in (stranger, provider_user):  # the provider runs the box, but the shell is the client's
        ws = await terminal(lease.pk, user)
        connected, _ = await ws.connect()
        assert connected
        assert await status(ws) == {"type": "status", "state": "closed", "message": "No such lease."}
        assert (await ws.receive_output(timeout=5))["code"] == 4403

    for path in ("99999999999999999999999", "0"):  # beyond the ids there are: refused, not a crash
        ws = await terminal(path, lease.client)  # type: ignore[arg-type]
        connected, code = await ws.connect()
        assert not connected and code == 4403

    # a token opens one only if it is a client token: not a read-only one
    secret = (
        await database_sync_to_async(accounts.token_issue)(user=lease.client, name="ro", scope=TokenScope.READ_ONLY)
    ).secret
    ws = WebsocketCommunicator(
        application, f"/ws/leases/{lease.pk}/shell/", headers=[ORIGIN, (b"authorization", f"Bearer {secret}".encode())]
    )
    await ws.connect()
    assert (await status(ws))["message"] == "Only a client token opens a shell."
    secret = (await database_sync_to_async(accounts.token_issue)(user=lease.client, name="cli", scope="client")).secret
    ws = WebsocketCommunicator(
        application, f"/ws/leases/{lease.pk}/shell/", headers=[ORIGIN, (b"authorization", f"Bearer {secret}".encode())]
    )
    await ws.connect()
    assert (await status(ws))["state"] == "connecting"  # the CLI's way in
    await ws.disconnect()

    await database_sync_to_async(Lease.objects.filter(pk=lease.pk).update)(status=Lease.Status.FUNDED)
    ws = await terminal(lease.pk, lease.client)
    await ws.connect()
    said = await status(ws)
    assert said["state"] == "closed" and "not running" in said["message"]
    assert (await ws.receive_output(timeout=5))["code"] == 4409
    assert [s.end_reason for s in await sessions_of(lease)] == ["closed in the browser"]  # the client token's


async def test_a_read_only_token_never_sees_a_shell_and_no_agent_means_a_clear_message(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(consumers, "OPEN_TIMEOUT", 0.5)
    lease, _ = await running_lease()
    watcher_token = await database_sync_to_async(accounts.token_issue)(
        user=lease.provider.user, name="dash", scope=TokenScope.READ_ONLY
    )
    watcher = await agent_socket(watcher_token.secret)
    browser = await terminal(lease.pk, lease.client)
    await browser.connect()
    await status(browser)
    said = await status(browser)
    assert said["state"] == "closed" and "did not answer" in said["message"]
    assert await watcher.receive_nothing(timeout=0.3)  # the read-only socket heard no shell.open
    await browser.disconnect()
    await watcher.disconnect()


async def test_an_agent_that_does_not_run_the_lease_is_not_the_one_that_answers(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(consumers, "OPEN_TIMEOUT", 1.0)
    lease, token = await running_lease()
    elsewhere, here = await agent_socket(token), await agent_socket(token)  # two agents, one provider
    browser = await terminal(lease.pk, lease.client)
    await browser.connect()
    await status(browser)
    session = (await next_of(elsewhere, wire.OPEN))["session"]
    assert (await next_of(here, wire.OPEN))["session"] == session
    await elsewhere.send_json_to(
        {"type": wire.EXIT, "session": session, "code": None, "reason": "not here", "not_here": True}
    )
    await here.send_json_to({"type": wire.OPENED, "session": session})
    assert (await status(browser))["state"] == "open"
    await browser.send_json_to({"type": "stdin", "data": "pwd\r"})
    assert wire.decode((await next_of(here, wire.INPUT))["data"]) == b"pwd\r"
    await browser.disconnect()
    for ws in (elsewhere, here):
        await ws.disconnect()


async def test_the_shell_ends_when_the_lease_stops_running_or_the_agent_goes() -> None:
    lease, token = await running_lease()
    agent, browser, _ = await opened_shell(lease, token)
    await database_sync_to_async(leases.lease_close)(user=lease.client, lease_id=lease.pk, roles={"client"})
    said = await status(browser)
    assert said == {"type": "status", "state": "closed", "message": "The lease stopped running."}
    await browser.disconnect()
    assert (await next_of(agent, wire.CLOSE))["type"] == wire.CLOSE  # the agent hangs up its side
    await agent.disconnect()

    lease, token = await running_lease()
    agent, browser, _ = await opened_shell(lease, token)
    await agent.disconnect()
    said = await status(browser)
    assert said["state"] == "closed" and said["message"] == "The provider's agent disconnected."
    await browser.disconnect()


async def test_at_most_a_few_shells_into_one_lease_at_once() -> None:
    lease, _ = await running_lease()
    for _ in range(shells.MAX_OPEN_SHELLS):
        await database_sync_to_async(shells.shell_open)(user=lease.client, lease_id=lease.pk)
    browser = await terminal(lease.pk, lease.client)
    await browser.connect()
    said = await status(browser)
    assert said["state"] == "closed" and "4 shells open" in said["message"]


async def test_a_terminal_size_that_is_not_one_opens_the_classic_80_by_24() -> None:
    lease, token = await running_lease()
    agent = await agent_socket(token)
    for query in ("?cols=abc&rows=99999", "?cols=-3&rows=1e3", "?cols=&rows=", ""):
        browser = await terminal(lease.pk, lease.client, query)
        await browser.connect()
        opened = await next_of(agent, wire.OPEN)
        assert (opened["cols"], opened["rows"]) == (80, 24), query
        await browser.disconnect()
    await agent.disconnect()


async def test_a_shell_the_channel_layer_cannot_carry_ends_at_once(settings, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Redis goes away as the shell opens (the session is written, the relay is not yet asked):
    the socket closes as every live socket does then (1012: the page tries again later), and the
    session is written as ended, not left open."""
    from tests.faults.harness import Redis

    redis = Redis(tmp_path)
    try:
        lease, _ = await running_lease()
        settings.CHANNEL_LAYERS = {
            "default": {"BACKEND": "core.layers.RedisPubSubLayer", "CONFIG": {"hosts": [redis.url]}}
        }
        opening = shells.shell_open

        def open_then_lose_redis(**kwargs):  # type: ignore[no-untyped-def]
            session = opening(**kwargs)
            redis.stop()
            return session

        monkeypatch.setattr(consumers.services, "shell_open", open_then_lose_redis)
        browser = await terminal(lease.pk, lease.client)
        assert (await browser.connect())[0]
        assert (await browser.receive_output(timeout=10)) == {"type": "websocket.close", "code": 1012}
        [session] = await database_sync_to_async(list)(ShellSession.objects.filter(lease=lease))
        assert session.ended_at is not None
        assert session.end_reason == "the marketplace lost the connection to the provider's agent"
    finally:
        redis.stop()
