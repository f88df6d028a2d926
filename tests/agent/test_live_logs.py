"""Live logs: while someone reads a lease's logs, its provider's agent streams them (the tail, every
couple of seconds while it changes), against a real container and the marketplace on a live server."""

import time
from pathlib import Path

import pytest

from agent.client import MarketplaceClient
from agent.config import validate
from agent.lifecycle import reconcile_leases
from agent.logs import LogShipper
from agent.runner import Agent
from agent.runtimes.docker_runtime import DockerRuntime
from core import services as accounts
from core.models import TokenScope
from leases.models import Lease, LeaseLog
from marketplace import services as market
from tests import factories as f
from tests.agent.images import CONTAINERS, IMAGE, our_containers
from tests.factories import USD

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_watched_lease_streams_its_log_until_the_watch_ends(live_server, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider()
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    client = f.client_user(balance=100 * USD)
    order = f.order(
        client,
        workload={
            "image": IMAGE,
            "command": ["sh", "-c"],
            "args": ["i=0; while true; do i=$((i+1)); echo line $i; sleep 0.2; done"],
        },
        resources={"cpu_cores": 1, "memory_gib": 1, "storage_gib": 1, "gpu_count": 1},
    )
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    runtime = DockerRuntime(client=engine, name_prefix=CONTAINERS, network="none", gpus=False, pull_images=False)
    market_client = MarketplaceClient(live_server.url, token)
    cfg = validate({"marketplace_url": live_server.url, "token": token, "state_dir": str(tmp_path)})
    clock = Clock()
    agent = Agent(cfg, client=market_client, runtime=runtime, push=False, clock=clock)
    agent.logs = LogShipper(market_client, runtime)
    try:
        assert reconcile_leases(market_client, runtime).deployed == [lease.pk]
        lease.refresh_from_db()
        assert lease.status == Lease.Status.RUNNING

        # nobody watches: nothing is streamed between passes
        time.sleep(0.5)
        agent.stream_logs()
        assert not LeaseLog.objects.filter(lease=lease).exists()

        # the page asked (through the push socket): each stream step sends the newer tail
        agent.watch_logs(lease.pk, 90)
        agent.stream_logs()
        first = LeaseLog.objects.get(lease=lease).text
        assert first.startswith("line 1\n")
        time.sleep(0.6)
        agent.stream_logs()
        second = LeaseLog.objects.get(lease=lease).text
        assert len(second) > len(first) and second.startswith(first)

        # the watch ended: streaming stops, and the watch is forgotten
        clock.now += 91
        time.sleep(0.5)
        agent.stream_logs()
        assert LeaseLog.objects.get(lease=lease).text == second and agent.watched == {}
    finally:
        for container in our_containers(engine, lease.pk):
            container.remove(force=True)
