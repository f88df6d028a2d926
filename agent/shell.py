"""Shells into leases, opened by the marketplace over the push socket for the lease's client.

The marketplace checks who may open a shell (the lease's client, while it runs) and relays the
browser's terminal over the agent's socket (the messages: ``protocol.shell``); the agent only runs
shells in workloads it owns.

A thread per session reads the shell and sends its output, a few milliseconds' worth at a time.
When the socket goes, every session ends: nobody is left to read it.
"""

import logging
import threading
import time
from collections.abc import Callable

from agent.runtimes.base import Runtime, RuntimeError_, RuntimeUnavailable, Terminal
from protocol import shell as wire

logger = logging.getLogger("gpumarket.agent")

MAX_SESSIONS = 16  # open at once on this agent; more are refused with a reason
COALESCE_SECONDS = 0.01  # output that comes this close together leaves in one message
IDLE_SECONDS = 3600.0  # a session with no keystroke for this long is hung up


class _Session:
    def __init__(self, session_id: str, lease_id: int) -> None:
        self.id, self.lease_id = session_id, lease_id
        self.terminal: Terminal | None = None  # once started (the marketplace types only after that)
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.last_input = time.monotonic()


class _Refused(Exception):
    """No shell for the session; the message says why, for the client to read."""

    def __init__(self, reason: str, *, not_here: bool = False) -> None:
        super().__init__(reason)
        self.not_here = not_here  # this agent does not run the lease: another of the provider may


class ShellRelay:
    def __init__(
        self,
        runtime: Callable[[], Runtime | None],
        send: Callable[[dict], bool],
        *,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.runtime = runtime  # the agent's runtime as it is now (None while it does not answer)
        self.send = send  # to the marketplace over the push socket; False when it is down
        self.idle_seconds = idle_seconds
        self.sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def handle(self, event: dict) -> None:
        """A ``shell.*`` message from the marketplace."""
        session_id, kind = wire.session_id(event.get("session")), event.get("type")
        if session_id is None:
            logger.warning("shell message not understood", extra={"fields": {"message": str(event)[:200]}})
            return
        if kind == wire.OPEN:
            self._open(session_id, event)
            return
        with self._lock:
            session = self.sessions.get(session_id)
        if session is None:
            return  # ended meanwhile
        if kind == wire.INPUT:
            self._input(session, wire.decode(event.get("data")))
        elif kind == wire.RESIZE:
            with session.lock:
                terminal = session.terminal
            if terminal is not None:
                terminal.resize(*wire.terminal_size(event))
        elif kind == wire.CLOSE:
            self._hang_up(session)

    def close_all(self) -> None:
        """The socket went: hang up every session."""
        with self._lock:
            sessions = list(self.sessions.values())
        for session in sessions:
            self._hang_up(session)

    # --- the session's life ---------------------------------------------------------------------
    def _open(self, session_id: str, event: dict) -> None:
        lease_id = event.get("lease")
        if not isinstance(lease_id, int) or isinstance(lease_id, bool):
            self._exit(session_id, "the shell request named no lease")
            return
        with self._lock:
            if session_id in self.sessions:
                return
            if len(self.sessions) >= MAX_SESSIONS:
                full = True
            else:
                full = False
                session = self.sessions[session_id] = _Session(session_id, lease_id)
        if full:
            self._exit(session_id, "the provider's agent has too many shells open; try again in a while")
            return
        size = wire.terminal_size(event)
        threading.Thread(target=self._run, args=(session, *size), name=f"shell-{lease_id}", daemon=True).start()

    def _run(self, session: _Session, cols: int, rows: int) -> None:
        reason, code = "the shell ended", None
        try:
            try:
                terminal = self._shell(session.lease_id, cols, rows)
            except _Refused as refused:
                self._exit(session.id, str(refused), not_here=refused.not_here)
                return
            with session.lock:
                if session.closed.is_set():  # hung up while it started
                    terminal.close()
                    return
                session.terminal = terminal
            self.send({"type": wire.OPENED, "session": session.id})
            logger.info("shell opened", extra={"fields": {"lease": session.lease_id, "session": session.id}})
            reason = self._pump(session, terminal)
            terminal.close()
            code = terminal.exit_code()
        except Exception:  # a bug here must not take the agent down: the session just ends
            logger.exception("shell failed", extra={"fields": {"lease": session.lease_id}})
            reason = "the provider's agent failed; try again"
        finally:
            with self._lock:
                self.sessions.pop(session.id, None)
        logger.info("shell ended", extra={"fields": {"lease": session.lease_id, "session": session.id}})
        self._exit(session.id, reason, code=code)

    def _shell(self, lease_id: int, cols: int, rows: int) -> Terminal:
        """A shell in the lease's workload, if this agent runs it; ``_Refused`` saying why not."""
        runtime = self.runtime()
        try:
            if runtime is None:
                raise RuntimeUnavailable("no runtime")
            if lease_id not in runtime.owned():
                raise _Refused("this agent does not run the lease", not_here=True)
            return runtime.shell(lease_id, cols=cols, rows=rows)
        except RuntimeUnavailable as exc:
            raise _Refused("the provider's container runtime does not answer") from exc
        except RuntimeError_ as exc:
            raise _Refused(str(exc)) from exc

    def _pump(self, session: _Session, terminal: Terminal) -> str:
        """Send what the shell writes until it ends, is hung up, or idles too long; says why."""
        while not session.closed.is_set():
            data = terminal.read(0.25)
            if data is None:
                return "the shell ended"
            if data:
                deadline = time.monotonic() + COALESCE_SECONDS
                while len(data) < wire.CHUNK and time.monotonic() < deadline:
                    more = terminal.read(max(0.0, deadline - time.monotonic()))
                    if not more:
                        break
                    data += more
                for start in range(0, len(data), wire.CHUNK):
                    chunk = wire.encode(data[start : start + wire.CHUNK])
                    if not self.send({"type": wire.OUTPUT, "session": session.id, "data": chunk}):
                        return "the connection to the marketplace was lost"
            elif time.monotonic() - session.last_input > self.idle_seconds:
                return f"no keystroke for {int(self.idle_seconds // 60)} minutes: the shell was hung up"
        return "the shell was closed"

    def _input(self, session: _Session, raw: bytes | None) -> None:
        if not raw:
            return
        session.last_input = time.monotonic()
        with session.lock:
            terminal = session.terminal
        if terminal is not None:
            terminal.write(raw)

    def _hang_up(self, session: _Session) -> None:
        with session.lock:
            session.closed.set()
            terminal = session.terminal
        if terminal is not None:
            terminal.close()  # the reading thread wakes up and says the session ended

    def _exit(self, session_id: str, reason: str, *, code: int | None = None, not_here: bool = False) -> None:
        message: dict = {"type": wire.EXIT, "session": session_id, "code": code, "reason": reason[: wire.MAX_REASON]}
        if not_here:
            message["not_here"] = True
        self.send(message)
