"""What the fault tests share: a proxy that holds a chosen request (to stop a process at an exact
point of its work), real processes started and killed, and the checks every fault ends with."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum

from chain.devnode import free_port
from leases.models import Lease
from providers.models import Provider, ProviderGpu
from tests import processes
from tests.agent.images import our_containers
from tests.conftest import assert_books_balance

ROOT = Path(__file__).resolve().parents[2]
LEASE_LABEL = "gpumarket.io/lease"
HOLDS_CAPACITY = [s for s in Lease.Status.values if s != Lease.Status.CLOSED]


class HoldingProxy:
    """A loopback TCP proxy in front of an HTTP server (a TCP port or a unix socket).

    Requests pass through unchanged until ``hold`` is set (a test of method, path and body): the
    first request it matches is not forwarded, ``held`` is set, and the connection stays open, so
    the calling process waits there for an answer, as it would for a slow server, until it is
    killed, or (``forward_on_release``) until ``release`` sends the request on."""

    def __init__(self, upstream: tuple[str, int] | str) -> None:
        self.upstream = upstream
        self.hold: Callable[[str, str, bytes], bool] | None = None
        self.held = threading.Event()
        self._released = threading.Event()
        self._forward = False
        self.held_request: tuple[str, str] | None = None
        self.seen: list[tuple[str, str]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold_when(self, predicate: Callable[[str, str, bytes], bool], *, forward_on_release: bool = False) -> None:
        self.held.clear()
        self._released.clear()
        self.held_request = None
        self._forward = forward_on_release
        self.hold = predicate

    def release(self) -> None:
        self.hold = None
        self._released.set()

    def close(self) -> None:
        self._closing = True
        with suppress(OSError):
            self._listener.close()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.upstream)
            return sock
        return socket.create_connection(self.upstream)

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            upstream = self._connect_upstream()
        except OSError:
            conn.close()
            return
        threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                while len(buffer) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:length], buffer[length:]
                self.seen.append((method, path))
                hold = self.hold
                if hold is not None and hold(method, path, body):
                    self.hold = None  # one request
                    self.held_request = (method, path)
                    self.held.set()
                    if not self._forward:
                        while conn.recv(65536):  # until the caller goes away
                            pass
                        return
                    self._released.wait()
                upstream.sendall(head + b"\r\n\r\n" + body)
        except OSError:
            return
        finally:
            for sock in (conn, upstream):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        with suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def database_url() -> str:
    """The test database, for processes started by a test."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def start(args: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.Popen:
    return processes.start(
        args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def kill(process: subprocess.Popen) -> str:
    """SIGKILL: no clean-up, no last words; what it printed."""
    processes.kill(process)
    return process.communicate(timeout=30)[0] or ""


def python(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.Popen:
    return start([sys.executable, *args], cwd=cwd, env=env)


def wait_for(condition: Callable[[], Any], *, timeout: float = 30, every: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what or condition}")


@contextmanager
def containers_removed(engine: Any, *lease_ids: int) -> Iterator[None]:
    try:
        yield
    finally:
        for lease_id in lease_ids:
            for c in our_containers(engine, lease_id):
                c.remove(force=True)


def assert_converged(*, leases: list[Lease] = (), engine: Any = None, chain: Any = None) -> None:  # type: ignore[assignment]
    """What every fault ends with: no money lost or created (the ledger balances, each closed lease
    paid and refunded exactly its deposit, and the books equal the chain's balances), no double
    lease (capacity held equals the open leases' needs), no orphan container."""
    assert_books_balance()
    for lease in Lease.objects.filter(status=Lease.Status.CLOSED):
        assert lease.paid_to_provider + lease.refunded_to_client == lease.deposit, f"lease {lease.pk}"
        assert lease.paid_to_provider <= lease.price_per_hour * (
            (lease.closed_at - lease.started_at).total_seconds() // 3600 + 1
        )
    for gpu in ProviderGpu.objects.all():
        held = (
            Lease.objects.filter(
                provider_id=gpu.provider_id, gpu_model_id=gpu.gpu_model_id, status__in=HOLDS_CAPACITY
            ).aggregate(n=Sum("gpu_count"))["n"]
            or 0
        )
        assert gpu.reserved == held, f"{gpu}: {gpu.reserved} GPUs reserved, open leases hold {held}"
        assert gpu.reserved <= gpu.total, f"{gpu}: more GPUs leased than it has"
    for provider in Provider.objects.all():
        held = Lease.objects.filter(provider=provider, status__in=HOLDS_CAPACITY).aggregate(n=Sum("cpu_cores"))["n"]
        assert provider.cpu_cores_reserved == (held or 0), f"{provider}: cpu reserved"
    if chain is not None:
        from leases.escrow import chain as escrow

        assert escrow.reconcile() == []
    if engine is not None:
        open_ids = set(Lease.objects.exclude(status=Lease.Status.CLOSED).values_list("pk", flat=True))
        for lease in leases:
            lease.refresh_from_db()
            found = Counter(int(c.labels[LEASE_LABEL]) for c in our_containers(engine, lease.pk))
            if lease.pk in open_ids:
                assert found[lease.pk] <= 1, f"lease {lease.pk} runs {found[lease.pk]} containers"
            else:
                assert not found, f"lease {lease.pk} is closed, its container is still there (an orphan)"


class Redis:
    """A Redis server of the test's own on a free port, that keeps nothing on disk."""

    def __init__(self, tmp_path: Path) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("needs redis-server (CI installs Redis)")
        self.port, self.dir = free_port(), tmp_path
        self.process = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = start(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.dir,
        )
        wait_for(lambda: _answers(self.port), what="redis")

    def stop(self) -> None:
        kill(self.process)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
