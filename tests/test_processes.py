"""A test that fails leaves no process behind: what it started through ``tests.processes`` is killed
with its children when it ends (tests/conftest.py's ``_no_process_left_behind``)."""

import os
import time
from pathlib import Path

from tests import processes


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state != "Z"  # a zombie has died; only its parent has not read its exit yet


def test_what_a_test_started_dies_with_its_children(tmp_path: Path) -> None:
    position = processes.mark()
    pid_file = tmp_path / "child.pid"
    parent = processes.start(["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"])
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert alive(parent.pid) and alive(child)
    assert processes.kill_started_since(position) == [parent.pid]  # what the fixture does at teardown
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(parent.pid) and not alive(child)
    assert processes.mark() == position
