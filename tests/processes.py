"""Programs a test starts (an agent, a worker, a server): each in a process group of its own, and
every one still running when its test ends is killed with its children, however the test ended
(the autouse fixture in tests/conftest.py). A failed test leaves no process behind."""

import os
import signal
import subprocess
from contextlib import suppress
from typing import Any

_started: list[subprocess.Popen] = []


def start(args: list[str], **options: Any) -> subprocess.Popen:
    """``subprocess.Popen(args, **options)`` in a new session (so its children die with it)."""
    options.setdefault("start_new_session", True)
    process = subprocess.Popen(args, **options)
    _started.append(process)
    return process


def kill(process: subprocess.Popen) -> None:
    """SIGKILL to the process and everything it started."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def mark() -> int:
    return len(_started)


def kill_started_since(position: int) -> list[int]:
    """Kill what was started since ``position`` and still runs (or left children running); returns
    their ids."""
    killed = []
    while len(_started) > position:
        process = _started.pop()
        if process.poll() is None:
            killed.append(process.pid)
        kill(process)  # its group too: an exited parent may leave children behind
    return killed
