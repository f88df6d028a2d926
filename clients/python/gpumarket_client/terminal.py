"""``gpumarket shell``: this terminal, in raw mode, joined to a shell in the lease's container over
the marketplace's ``/ws/leases/<id>/shell/`` socket (what the lease page's terminal uses)."""

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

EXIT_STATUS_WORDS = "exit status "


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Keys go to the remote shell as typed (Ctrl-C included) while the session lasts."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_shell(
    url: str, headers: dict[str, str], origin: str, *, stdin: Any = None, stdout: Any = None
) -> tuple[int, str]:
    """Relay this terminal to the lease's shell until it ends: (exit status, what the marketplace
    said). The status is the shell's own where it exited, 1 when the session ended otherwise."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    in_fd = stdin.fileno()
    out = getattr(stdout, "buffer", stdout)
    size = shutil.get_terminal_size((80, 24))
    said = {"message": "", "state": ""}
    with connect(
        f"{url}?cols={size.columns}&rows={size.lines}",
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=15,
        max_size=2**22,
    ) as socket:
        done = threading.Event()

        def from_shell() -> None:
            try:
                for message in socket:
                    if isinstance(message, bytes):
                        out.write(message)
                        out.flush()
                        continue
                    status = _status(message)
                    if status:
                        said.update(state=status.get("state", ""), message=status.get("message", ""))
                        if said["state"] == "closed":
                            break
            except ConnectionClosed:
                pass
            finally:
                done.set()
                with contextlib.suppress(Exception):
                    socket.close()

        reader = threading.Thread(target=from_shell, daemon=True)
        reader.start()

        def resized(*_: Any) -> None:
            columns, lines = shutil.get_terminal_size((80, 24))
            with contextlib.suppress(Exception):
                socket.send(json.dumps({"type": "resize", "cols": columns, "rows": lines}))

        previous = signal.signal(signal.SIGWINCH, resized) if hasattr(signal, "SIGWINCH") else None
        try:
            with raw_terminal(in_fd):
                while not done.is_set():
                    ready = _readable(in_fd, 0.2)
                    if not ready:
                        continue
                    data = os.read(in_fd, 4096)
                    if not data:  # end of input: the remote shell's input ends too
                        socket.send(json.dumps({"type": "stdin", "data": "\x04"}))
                        done.wait(10)
                        break
                    with contextlib.suppress(ConnectionClosed):
                        socket.send(json.dumps({"type": "stdin", "data": data.decode("utf-8", "replace")}))
        finally:
            if previous is not None:
                signal.signal(signal.SIGWINCH, previous)
        reader.join(timeout=5)
    message = said["message"]
    if EXIT_STATUS_WORDS in message:
        digits = message.split(EXIT_STATUS_WORDS, 1)[1].rstrip(").").strip()
        if digits.isdigit():
            return int(digits), message
    return (0 if message.startswith("The shell ended") else 1), message


def _status(message: str) -> dict[str, Any]:
    try:
        value = json.loads(message)
    except ValueError:
        return {}
    return value if isinstance(value, dict) and value.get("type") == "status" else {}


def _readable(fd: int, timeout: float) -> bool:
    import select

    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)
