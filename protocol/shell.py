"""The shell relay's messages, shared by the marketplace (which relays a browser's terminal over
the provider's push socket) and the agent (which runs the shell in the lease's workload).

Every message is a JSON object naming its ``session``; bytes travel base64-encoded in ``data``.

- marketplace → agent: ``shell.open`` (``lease``, ``cols``, ``rows``), ``shell.in`` (``data``),
  ``shell.resize`` (``cols``, ``rows``), ``shell.close``;
- agent → marketplace: ``shell.opened``, ``shell.out`` (``data``), ``shell.exit`` (``code``: the
  exit status or null; ``reason``: why it ended, for a person; ``not_here``: true when this agent
  does not run the lease, so another agent of the provider may).
"""

import base64
import binascii

OPEN, INPUT, RESIZE, CLOSE = "shell.open", "shell.in", "shell.resize", "shell.close"
OPENED, OUTPUT, EXIT = "shell.opened", "shell.out", "shell.exit"
TO_AGENT = frozenset({OPEN, INPUT, RESIZE, CLOSE})
FROM_AGENT = frozenset({OPENED, OUTPUT, EXIT})

CHUNK = 32_768  # bytes of output or input in one message at most
MAX_SIZE = 1000  # columns or rows a terminal may have
MAX_SESSION_ID = 64  # characters
MAX_REASON = 200  # characters of a reason


def size(value: object, default: int) -> int:
    """A terminal's columns or rows as sent, or ``default`` where it is not a sensible whole number."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SIZE:
        return value
    return default


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode(data: object) -> bytes | None:
    """The bytes of a message's ``data``; None where it is not base64 of at most ``CHUNK`` bytes."""
    if not isinstance(data, str) or len(data) > (CHUNK + 2) // 3 * 4:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def terminal_size(message: dict) -> tuple[int, int]:
    """A message's ``cols`` and ``rows``, 80 by 24 (a terminal's classic size) where not sensible."""
    return size(message.get("cols"), 80), size(message.get("rows"), 24)


def session_id(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_SESSION_ID else None
