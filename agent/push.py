"""The marketplace's push socket (``/ws/provider/``), listened to in a background thread.

Every message is a hint to act now (a new order to bid on, a lease to deploy or tear down); the
agent then asks the REST API what to do, so a lost or garbled message costs nothing but time.
While the socket is down the agent polls; the listener reconnects with exponential backoff.

The socket also carries the shells clients open into their leases (``shell.*``, see
``agent.shell``): those go both ways, and end when the socket does.
"""

import json
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException
from websockets.sync.client import connect
from websockets.sync.connection import Connection
from websockets.typing import Origin

from protocol import shell as wire

logger = logging.getLogger("gpumarket.agent")


def socket_url(marketplace_url: str) -> str:
    url = urlparse(marketplace_url)
    scheme = "wss" if url.scheme == "https" else "ws"
    return f"{scheme}://{url.netloc}{url.path.rstrip('/')}/ws/provider/"


class PushListener:
    def __init__(
        self,
        marketplace_url: str,
        token: str,
        wake: threading.Event,
        *,
        max_backoff: float = 60.0,
        on_logs_watch: Callable[[int, float], None] | None = None,
        on_shell: Callable[[dict], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.url = socket_url(marketplace_url)
        parsed = urlparse(marketplace_url)
        self.origin = f"{parsed.scheme}://{parsed.netloc}"
        self.token, self.wake, self.max_backoff = token, wake, max_backoff
        self.on_logs_watch = on_logs_watch  # someone reads a lease's logs: (lease id, for how many seconds)
        self.on_shell = on_shell  # a ``shell.*`` message (agent.shell.ShellRelay.handle)
        self.on_lost = on_lost  # the socket closed: what was tied to it ends
        self._socket: Connection | None = None
        self._send_lock = threading.Lock()
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.received = 0
        self._thread = threading.Thread(target=self._run, name="push-listener", daemon=True)

    def start(self) -> "PushListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                with connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    origin=Origin(self.origin),
                    open_timeout=10,
                    user_agent_header="gpumarket-agent",
                ) as socket:
                    self._socket = socket
                    self.connected.set()
                    backoff = 1.0
                    logger.info("push socket connected", extra={"fields": {"url": self.url}})
                    self.wake.set()  # catch up on whatever happened while it was down
                    while not self.stopping.is_set():
                        try:
                            message = socket.recv(timeout=1.0)
                        except TimeoutError:
                            continue
                        self._handle(message)
            except (OSError, InvalidHandshake, InvalidURI, WebSocketException) as exc:
                if self.connected.is_set():
                    logger.warning("push socket lost; polling", extra={"fields": {"error": str(exc)}})
                else:
                    logger.debug("push socket unavailable", extra={"fields": {"error": str(exc)}})
            self._socket = None
            self.connected.clear()
            if self.on_lost is not None:
                self.on_lost()
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def send(self, message: dict[str, Any]) -> bool:
        """Send a message to the marketplace; False when the socket is down."""
        socket = self._socket
        if socket is None:
            return False
        try:
            with self._send_lock:
                socket.send(json.dumps(message, separators=(",", ":")))
        except (OSError, WebSocketException):
            return False
        return True

    def _handle(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
            kind = event.get("type") if isinstance(event, dict) else None
        except ValueError:
            kind = None
        if not isinstance(kind, str):
            logger.warning("push message not understood", extra={"fields": {"message": str(message)[:200]}})
            return
        self.received += 1
        if kind == "lease.logs.watch":  # no pass is due: only that lease's log is streamed a while
            self._logs_watch(event)
        elif kind in wire.TO_AGENT:
            if self.on_shell is not None:
                self.on_shell(event)
        elif kind != "hello":
            self.wake.set()

    def _logs_watch(self, event: dict) -> None:
        lease, seconds = event.get("lease"), event.get("seconds", 90)
        if not isinstance(lease, int) or isinstance(lease, bool) or not isinstance(seconds, int | float):
            logger.warning("push message not understood", extra={"fields": {"message": str(event)[:200]}})
            return
        if self.on_logs_watch is not None:
            self.on_logs_watch(lease, min(max(float(seconds), 1.0), 600.0))
