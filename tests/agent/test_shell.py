"""A shell into a lease, end to end: the client's terminal socket on the marketplace (the real ASGI
application on uvicorn), relayed over the agent's push socket to the agent, which runs ``docker
exec`` with a TTY in the lease's real container; and the Kubernetes runtime's exec, against the
test cluster's API, whose kubelet runs the shell on a real pseudo-terminal (``tests.agent.kube``).

Every step a person takes is here: a command and its output, a resize the shell sees, Ctrl-C
stopping what runs in the foreground, the exit status, and the session in the lease's history."""

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from websockets.sync.client import ClientConnection, connect

from agent.client import MarketplaceClient
from agent.config import validate
from agent.lifecycle import reconcile_leases
from agent.runner import Agent
from agent.runtimes.base import LABEL_LEASE, Terminal, labels_for
from agent.runtimes.docker_runtime import DockerRuntime
from agent.runtimes.kubernetes_runtime import KubernetesRuntime
from core import services as accounts
from core.models import TokenScope
from leases.models import Lease, ShellSession
from marketplace import services as market
from tests import factories as f
from tests.agent.images import CONTAINERS, IMAGE, our_containers
from tests.agent.kube import Cluster, running_status
from tests.factories import USD

PROMPT = rb"[$#] "


class Screen:
    """What a terminal socket received, read until a pattern shows up."""

    def __init__(self, read: "callable") -> None:  # type: ignore[valid-type]
        self.read, self.seen = read, b""

    def until(self, pattern: bytes, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while not regex.search(self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} never came; the screen shows {self.seen[-400:]!r}"
            self.seen += self.read(left)
        found = regex.search(self.seen)
        assert found is not None
        shown, self.seen = self.seen[: found.end()], self.seen[found.end() :]
        return shown


# --- Docker, through the marketplace ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the relay between sockets needs the Redis channel layer")
def test_a_shell_from_the_browser_into_the_leases_container(asgi_server: str, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider()
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    client = f.client_user(balance=100 * USD)
    order = f.order(
        client,
        workload={"image": IMAGE, "command": ["sh", "-c"], "args": ["echo workload up; sleep 3600"]},
        resources={"cpu_cores": 1, "memory_gib": 1, "storage_gib": 1, "gpu_count": 1},
    )
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    runtime = DockerRuntime(client=engine, name_prefix=CONTAINERS, network="none", gpus=False, pull_images=False)
    market_client = MarketplaceClient(asgi_server, token)
    cfg = validate({"marketplace_url": asgi_server, "token": token, "state_dir": str(tmp_path)})
    agent = Agent(cfg, client=market_client, runtime=runtime)
    assert agent.listener is not None and agent.shells is not None
    agent.listener.start()
    browser = Client()
    browser.force_login(client)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    origin = asgi_server.replace("http://", "http://")
    url = asgi_server.replace("http://", "ws://") + f"/ws/leases/{lease.pk}/shell/?cols=80&rows=24"
    try:
        assert reconcile_leases(market_client, runtime).deployed == [lease.pk]
        assert Lease.objects.get(pk=lease.pk).status == Lease.Status.RUNNING
        assert agent.listener.connected.wait(10), "the agent's socket did not connect"

        with connect(url, additional_headers={"Cookie": cookie}, origin=origin, open_timeout=10) as socket:  # type: ignore[arg-type]
            statuses: list[dict] = []
            screen = Screen(lambda timeout: _frame(socket, timeout, statuses))
            screen.until(PROMPT)
            assert [s["state"] for s in statuses] == ["connecting", "open"]

            def run(line: str) -> None:
                socket.send(json.dumps({"type": "stdin", "data": line + "\r"}))

            run("echo $((6*7)) in $(hostname)")
            screen.until(rb"\n42 in \w+")

            socket.send(json.dumps({"type": "resize", "cols": 132, "rows": 43}))
            time.sleep(0.3)
            run("stty size")
            screen.until(rb"\n43 132\r\n")

            # Ctrl-C stops what runs in the foreground; the shell carries on
            run("sleep 30; echo not interrupted")
            time.sleep(0.5)
            started = time.monotonic()
            socket.send(json.dumps({"type": "stdin", "data": "\x03"}))
            run("echo after ctrl-c")
            shown = screen.until(rb"[\r\n]after ctrl-c\r\n")
            assert time.monotonic() - started < 5 and not re.search(rb"[\r\n]not interrupted", shown)

            run("exit 3")
            deadline = time.monotonic() + 10
            while not statuses or statuses[-1]["state"] != "closed":
                assert time.monotonic() < deadline, statuses
                _frame(socket, 1, statuses)
            assert statuses[-1]["message"] == "The shell ended (exit status 3)."

        deadline = time.monotonic() + 5
        while ShellSession.objects.filter(lease=lease, ended_at__isnull=True).exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [session] = ShellSession.objects.filter(lease=lease)
        assert session.user_id == client.pk and session.end_reason == "the shell ended (exit status 3)"
        assert agent.shells.sessions == {}

        # the page shows it in the lease's history
        page = browser.get(f"/leases/{lease.pk}/")
        assert b'id="shell-sessions"' in page.content and b"opened a shell" in page.content
        assert b"data-shell=" in page.content  # the client's page has the terminal; it runs
    finally:
        agent.listener.stop()
        for container in our_containers(engine, lease.pk):
            container.remove(force=True)


def _frame(socket: ClientConnection, timeout: float, statuses: list[dict]) -> bytes:
    """The next frame's bytes: the shell's output, or b"" for a status (kept in ``statuses``)."""
    try:
        frame = socket.recv(timeout=timeout)
    except TimeoutError:
        return b""
    if isinstance(frame, bytes):
        return frame
    statuses.append(json.loads(frame))
    return b""


def test_a_shell_into_a_container_that_stopped_says_so(engine) -> None:  # type: ignore[no-untyped-def]
    from agent.runtimes.base import RuntimeError_

    runtime = DockerRuntime(client=engine, name_prefix=CONTAINERS, network="none", gpus=False, pull_images=False)
    with pytest.raises(RuntimeError_, match="not running"):
        runtime.shell(987_654_321, cols=80, rows=24)


# --- Kubernetes ---------------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster() as running:
        running.add_node("gpu-1", gpus=8, product="NVIDIA-H100-80GB-HBM3", memory_mib=81559)
        yield running


def _pump(terminal: Terminal) -> Screen:
    def read(timeout: float) -> bytes:
        data = terminal.read(min(timeout, 0.5))
        assert data is not None, "the shell ended"
        return data

    return Screen(read)


def test_a_shell_into_the_leases_pod_through_the_kubernetes_api(cluster: Cluster) -> None:
    runtime = KubernetesRuntime(cluster.api_client(), node_address="203.0.113.9")
    namespace = runtime.namespace(41)
    cluster.set_pod(namespace, "workload-abc", labels=labels_for(41), **running_status("2026-12-01T10:00:00Z"))

    terminal = runtime.shell(41, cols=100, rows=30)
    screen = _pump(terminal)
    terminal.write(b"stty size; echo $TERM\r")
    shown = screen.until(rb"xterm-256color\r\n")
    assert b"30 100" in shown  # the size it opened with
    [call] = cluster.emulator.execs
    assert call["pod"] == "workload-abc" and call["namespace"] == namespace
    assert call["container"] == "workload" and call["tty"] == "true" and call["stdin"] == "true"
    assert call["command"][:2] == ["/bin/sh", "-c"]

    terminal.resize(120, 40)
    terminal.write(b"stty size\r")
    assert b"40 120" in screen.until(rb"\d+ \d+\r\n")

    terminal.write(b"sleep 30; echo not interrupted\r")
    time.sleep(0.5)
    terminal.write(b"\x03")
    terminal.write(b"echo after ctrl-c\r")
    assert not re.search(rb"[\r\n]not interrupted", screen.until(rb"[\r\n]after ctrl-c\r\n", timeout=5))

    terminal.write(b"exit 3\r")
    deadline = time.monotonic() + 10
    while terminal.read(0.5) is not None:
        assert time.monotonic() < deadline, "the shell did not end"
    assert terminal.exit_code() == 3
    terminal.close()


def test_no_shell_into_a_lease_whose_pod_is_not_running(cluster: Cluster) -> None:
    from agent.runtimes.base import RuntimeError_

    runtime = KubernetesRuntime(cluster.api_client(), node_address="203.0.113.9")
    with pytest.raises(RuntimeError_, match="not running"):
        runtime.shell(42, cols=80, rows=24)
    cluster.set_pod(runtime.namespace(42), "workload-x", labels={LABEL_LEASE: "42"}, phase="Pending")
    with pytest.raises(RuntimeError_, match="not running"):
        runtime.shell(42, cols=80, rows=24)


def test_an_agent_opens_shells_only_into_the_leases_it_runs(engine) -> None:  # type: ignore[no-untyped-def]
    """Another agent of the provider may run the lease: this one says it does not, and runs nothing."""
    from agent.shell import ShellRelay

    runtime = DockerRuntime(client=engine, name_prefix=CONTAINERS, network="none", gpus=False, pull_images=False)
    sent: list[dict] = []
    relay = ShellRelay(lambda: runtime, lambda message: sent.append(message) or True)
    relay.handle({"type": "shell.open", "session": "s-1", "lease": 987_654_321, "cols": 80, "rows": 24})
    relay.handle({"type": "shell.open", "session": "s-2", "lease": "not a lease"})
    relay.handle({"type": "shell.in", "session": "s-1", "data": "aGk="})  # typed meanwhile: goes nowhere
    deadline = time.monotonic() + 5
    while len(sent) < 2:
        assert time.monotonic() < deadline, sent
        time.sleep(0.02)
    by_session = {message["session"]: message for message in sent}
    assert by_session["s-1"] == {
        "type": "shell.exit",
        "session": "s-1",
        "code": None,
        "reason": "this agent does not run the lease",
        "not_here": True,
    }
    assert by_session["s-2"]["type"] == "shell.exit" and "no lease" in by_session["s-2"]["reason"]
    assert relay.sessions == {}

    offline = ShellRelay(lambda: None, lambda message: sent.append(message) or True)
    offline.handle({"type": "shell.open", "session": "s-3", "lease": 5})
    deadline = time.monotonic() + 5
    while not any(m["session"] == "s-3" for m in sent):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert sent[-1]["reason"] == "the provider's container runtime does not answer"
