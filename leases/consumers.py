"""``/ws/leases/<id>/``: the lease page hears when the lease changes (state, endpoints, top-ups);
``/ws/leases/<id>/shell/``: the client's terminal into the lease's workload."""

import asyncio
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull

from core.channels import CONFLICT, FORBIDDEN, UNAUTHORIZED, LiveConsumer, WatchConsumer
from core.errors import DomainError
from core.models import ApiToken, TokenScope
from core.realtime import SHELL_RELAY, lease_group, provider_group
from core.validation import MAX_ID
from leases import selectors, services
from protocol import shell as wire


class LeaseConsumer(WatchConsumer):
    def group_for(self, user: Any, object_id: int) -> str | None:
        visible = selectors.leases_visible_to(user=user, roles=set(user.roles)).filter(pk=object_id).exists()
        return lease_group(object_id) if visible else None


OPEN_TIMEOUT = 15.0  # seconds the provider's agent has to start the shell
PENDING_INPUT = 65_536  # bytes typed before the shell started, kept for it


class ShellConsumer(LiveConsumer):
    """``/ws/leases/<id>/shell/?cols=80&rows=24``: the lease's client's terminal into its workload.

    From the browser: ``{"type": "stdin", "data": "<text typed>"}`` and ``{"type": "resize",
    "cols": 120, "rows": 40}``. To the browser: what the shell writes, as binary frames, and
    ``{"type": "status", "state": "connecting" | "open" | "closed", "message": "..."}``.

    The session is relayed to the provider's agent over its socket (``providers.consumers``): the
    first agent that starts the shell holds it. It ends when either side leaves, the shell exits,
    the agent goes, or the lease stops running; its start and end are written down
    (``leases.services.shells``), what passes through never is."""

    direct_types = frozenset({SHELL_RELAY, "websocket.receive"})

    session: Any = None
    agent: str | None = None
    ended: str = ""
    not_here = False  # an agent of the provider answered that it does not run the lease

    async def connect(self) -> None:
        self.pending: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None
        user = self.scope.get("user")
        if not getattr(user, "is_authenticated", False):
            await self.close(code=UNAUTHORIZED)
            return
        token = self.scope.get("token")
        if isinstance(token, ApiToken) and token.scope != TokenScope.CLIENT:  # reading tokens, agents' tokens
            await self.accept()
            await self._status("closed", "Only a client token opens a shell.")
            await self.close(code=FORBIDDEN)
            return
        try:
            lease_id = int(self.scope["url_route"]["kwargs"]["pk"])
            if not 0 < lease_id <= MAX_ID:
                raise ValueError(lease_id)
            session = await database_sync_to_async(services.shell_open)(user=user, lease_id=lease_id)
        except (KeyError, TypeError, ValueError):
            await self.close(code=FORBIDDEN)
            return
        except DomainError as exc:
            await self.accept()
            await self._status("closed", exc.message)
            await self.close(code=FORBIDDEN if exc.status_code in (403, 404) else CONFLICT)
            return
        self.session = session
        await self.accept()
        await self.channel_layer.group_add(lease_group(session.lease_id), self.channel_name)
        await self._status("connecting", "Connecting to the provider's agent…")
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        cols, rows = wire.terminal_size({name: _whole(query.get(name)) for name in ("cols", "rows")})
        opening = {"type": wire.OPEN, "session": self._id, "lease": session.lease_id, "cols": cols, "rows": rows}
        await self.channel_layer.group_send(
            provider_group(session.lease.provider_id),
            {"type": SHELL_RELAY, "payload": opening, "reply_to": self.channel_name},
        )
        self.timer = asyncio.get_running_loop().call_later(
            OPEN_TIMEOUT, lambda: asyncio.ensure_future(self._no_answer())
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # however the socket ended (the browser left, the channel layer went), its end is written once
            if self.session is not None:
                reason = self.ended or "the marketplace lost the connection to the provider's agent"
                await database_sync_to_async(services.shell_end)(session_id=self.session.pk, reason=reason)
                self.session = None

    @property
    def _id(self) -> str:
        return str(self.session.token)

    async def disconnect(self, code: int) -> None:
        if self.session is None:
            return
        if self.timer is not None:
            self.timer.cancel()
        if self.agent is not None:
            await self._to_agent(self.agent, {"type": wire.CLOSE, "session": self._id})
        self.ended = self.ended or "closed in the browser"  # written as the socket's end (``__call__``)
        await self.channel_layer.group_discard(lease_group(self.session.lease_id), self.channel_name)

    # --- the browser ----------------------------------------------------------------------------
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.session is None or self.ended or not isinstance(content, dict):
            return
        if content.get("type") == "stdin" and isinstance(content.get("data"), str):
            data = content["data"].encode("utf-8", "replace")
            for start in range(0, len(data), wire.CHUNK):
                await self._input(data[start : start + wire.CHUNK])
        elif content.get("type") == "resize" and self.agent is not None:
            cols, rows = wire.terminal_size(content)
            await self._to_agent(self.agent, {"type": wire.RESIZE, "session": self._id, "cols": cols, "rows": rows})

    async def _input(self, data: bytes) -> None:
        if self.agent is not None:
            await self._to_agent(self.agent, {"type": wire.INPUT, "session": self._id, "data": wire.encode(data)})
        elif sum(map(len, self.pending)) + len(data) <= PENDING_INPUT:
            self.pending.append(data)

    # --- the agent ------------------------------------------------------------------------------
    async def shell_relay(self, message: dict) -> None:
        payload, agent = message.get("payload") or {}, message.get("agent")
        if self.session is None or payload.get("session") != self._id or not isinstance(agent, str):
            return
        kind = payload.get("type")
        if kind == wire.OPENED:
            if self.agent is not None:  # another agent of the provider started one too: not needed
                await self._to_agent(agent, {"type": wire.CLOSE, "session": self._id})
                return
            self.agent = agent
            if self.timer is not None:
                self.timer.cancel()
            await self._status("open", "")
            pending, self.pending = self.pending, []
            for data in pending:
                await self._input(data)
        elif kind == wire.OUTPUT and agent == self.agent:
            output = wire.decode(payload.get("data"))
            if output:
                await self.send(bytes_data=output)
        elif kind == wire.EXIT and self.agent is None and payload.get("not_here"):
            self.not_here = True  # another agent of the provider may run it: wait for the rest
        elif kind == wire.EXIT and (agent == self.agent or self.agent is None):
            self.agent = None  # it has hung up already
            reason = payload.get("reason") or "the shell ended"
            code = payload.get("code")
            await self._end(f"{reason} (exit status {code})" if isinstance(code, int) else reason)

    async def market_event(self, event: dict) -> None:
        """The lease changed: a shell lasts only while the lease runs."""
        if self.session is None or self.ended:
            return
        if not await database_sync_to_async(services.shell_may_continue)(session_id=self.session.pk):
            await self._end("the lease stopped running")

    async def _no_answer(self) -> None:
        if self.session is not None and self.agent is None and not self.ended:
            if self.not_here:
                await self._end("the provider's agent does not run this lease's workload now")
            else:
                await self._end("the provider's agent did not answer: it may be offline; try again in a minute")

    async def _end(self, reason: str) -> None:
        self.ended = reason
        await self._status("closed", reason[:1].upper() + reason[1:] + ".")
        await self.close()

    async def _status(self, state: str, message: str) -> None:
        await self.send_json({"type": "status", "state": state, "message": message})

    async def _to_agent(self, agent: str, payload: dict) -> None:
        with suppress(ChannelFull):  # the agent's socket is far behind: this message is lost, as a push may be
            await self.channel_layer.send(agent, {"type": SHELL_RELAY, "payload": payload})


def _whole(values: list[str] | None) -> int | None:
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None
