"""The provider's agent killed (SIGKILL) at exact points of its work, then started again: during a
deploy, while a lease runs, during teardown. The agent is a real process, the workload a real
Docker container; a proxy in front of the marketplace or of the Docker engine holds the chosen
request so the kill lands where it should."""

import json
import time
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.utils import timezone
from eth_account import Account

from agent.runtimes.docker_runtime import container_name
from chain.models import Wallet
from core import services as accounts
from core.models import TokenScope
from leases.models import Lease, UsageReport
from leases.tasks import close_finished_leases
from marketplace import services as market
from providers.models import Provider
from tests import factories as f
from tests.agent.images import CONTAINERS, DOCKER_SETTINGS, IMAGE, our_containers
from tests.factories import USD
from tests.faults.harness import HoldingProxy, assert_converged, containers_removed, kill, python, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
DOCKER_SOCKET = "/var/run/docker.sock"
WORKLOAD = {"image": IMAGE, "command": ["sh", "-c"], "args": ["trap 'exit 0' TERM; sleep 600 & wait"]}


class Site:
    """A provider with an agent directory, the marketplace and the Docker engine behind proxies."""

    def __init__(self, live_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        self.dir = tmp_path
        self.provider = f.provider()
        token = accounts.token_issue(user=self.provider.user, name="agent", scope=TokenScope.PROVIDER).secret
        key = Account.create()
        (tmp_path / "signing-key.hex").write_text(key.key.hex())
        Wallet.objects.create(user=self.provider.user, address=key.address)
        url = urlparse(live_server.url)
        self.market = HoldingProxy((url.hostname or "127.0.0.1", url.port or 80))
        self.docker = HoldingProxy(DOCKER_SOCKET)
        (tmp_path / "agent.yaml").write_text(
            f"marketplace_url: {self.market.url}\ntoken: {token}\nusage_seconds: 2\npoll_seconds: 1\n"
            f"heartbeat_seconds: 5\ndocker: {DOCKER_SETTINGS}\n"
            # these faults are about usage and teardown: no prover, whose discovery (importing
            # PyTorch where it is installed) takes longer than a usage period here
            "prover: 'off'\n"
            # this host has no GPUs: the agent reports what the provider was registered with
            "declared_inventory:\n  gpus: [{model: h100-sxm-80gb, count: 8}]\n"
            "  cpu_cores: 256\n  memory_gib: 2048\n  storage_gib: 50000\n"
        )

    def agent(self, *, once: bool = True):  # type: ignore[no-untyped-def]
        args = ["-m", "agent.cli", "run"] + (["--once"] if once else [])
        return python(*args, cwd=self.dir, env={"DOCKER_HOST": f"tcp://127.0.0.1:{self.docker.port}"})

    def pass_once(self) -> dict:
        """One whole pass of an agent that is not disturbed; its lease summary."""
        process = self.agent()
        output = process.communicate(timeout=120)[0]
        assert process.returncode == 0, output
        log = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        return [e for e in log if e["event"] == "leases reconciled"][-1]

    def lease(self, client) -> Lease:  # type: ignore[no-untyped-def]
        order = f.order(
            client,
            duration_hours=1,
            workload=WORKLOAD,
            resources={"cpu_cores": 1, "memory_gib": 1, "storage_gib": 1, "gpu_count": 1},
        )
        return market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(self.provider, order, USD).pk)

    def close(self) -> None:
        self.market.close()
        self.docker.close()


@pytest.fixture
def site(live_server, engine, tmp_path):  # type: ignore[no-untyped-def]
    s = Site(live_server, tmp_path)
    yield s
    s.close()


def status_report(state: str):  # type: ignore[no-untyped-def]
    return lambda method, path, body: method == "POST" and path.endswith("/status/") and f'"{state}"' in body.decode()


HOLD_POINTS = {
    # the container is created, and the agent dies before Docker is asked to start it
    "docker start": ("docker", lambda method, path, body: method == "POST" and path.split("?")[0].endswith("/start")),
    # the container runs, and the agent dies before the marketplace hears so
    "running report": ("market", status_report("running")),
}


@pytest.mark.parametrize("point", list(HOLD_POINTS))
def test_an_agent_killed_during_a_deploy_finishes_it_once_restarted(site: Site, engine, point: str) -> None:  # type: ignore[no-untyped-def]
    client = f.client_user(balance=100 * USD)
    lease = site.lease(client)
    proxy_name, predicate = HOLD_POINTS[point]
    proxy = getattr(site, proxy_name)
    with containers_removed(engine, lease.pk):
        proxy.hold_when(predicate)
        agent = site.agent()
        wait_for(proxy.held.is_set, what=point)
        kill(agent)
        proxy.release()
        lease.refresh_from_db()
        assert lease.status == Lease.Status.DEPLOYING  # the marketplace has not heard it runs
        before = engine.containers.get(container_name(lease.pk, CONTAINERS)).status
        assert before == ("created" if point == "docker start" else "running")

        summary = site.pass_once()  # restarted: it finds its container by its labels
        # a container it never started is made again (nothing ran in it); a running one is kept
        made_again = [lease.pk] if point == "docker start" else []
        assert summary["running"] == [lease.pk] and summary["deployed"] == made_again and summary["failed"] == []
        lease.refresh_from_db()
        assert lease.status == Lease.Status.RUNNING
        [container] = our_containers(engine, lease.pk)
        assert container.status == "running"

        f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
        assert site.pass_once()["torn_down"] == [lease.pk]
        assert_converged(leases=[lease], engine=engine)


def test_an_agent_killed_while_a_lease_runs_loses_and_repeats_no_usage(site: Site, engine) -> None:  # type: ignore[no-untyped-def]
    client = f.client_user(balance=100 * USD)
    lease = site.lease(client)
    with containers_removed(engine, lease.pk):
        agent = site.agent(once=False)
        wait_for(lambda: UsageReport.objects.filter(lease=lease).exists(), timeout=60, what="a first usage report")
        # the next report is written to the agent's outbox and on its way when the agent dies
        site.market.hold_when(lambda method, path, body: method == "POST" and path == "/api/v1/usage-reports/")
        wait_for(site.market.held.is_set, timeout=30, what="the second report")
        kill(agent)
        site.market.release()
        assert engine.containers.get(container_name(lease.pk, CONTAINERS)).status == "running"  # the workload goes on

        agent = site.agent(once=False)  # restarted: it sends what waited, and meters on from there
        wait_for(lambda: UsageReport.objects.filter(lease=lease).count() >= 3, timeout=60, what="more reports")
        f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
        wait_for(lambda: not our_containers(engine, lease.pk), timeout=60)
        time.sleep(3)  # the final report's flush
        output = kill(agent)

        lease.refresh_from_db()
        reports = list(UsageReport.objects.filter(lease=lease).order_by("period_start"))
        assert reports[0].period_start >= lease.started_at.replace(microsecond=0)
        for earlier, later in pairwise(reports):
            assert later.period_start == earlier.period_end, output[-3000:]  # no gap, no overlap
        assert reports[-1].period_end <= lease.closed_at
        ran = sum(r.run_seconds for r in reports)
        assert ran <= (lease.closed_at - lease.started_at).total_seconds()
        assert_converged(leases=[lease], engine=engine)


def test_an_agent_killed_during_teardown_finishes_it_once_restarted(site: Site, engine) -> None:  # type: ignore[no-untyped-def]
    client = f.client_user(balance=100 * USD)
    lease = site.lease(client)
    with containers_removed(engine, lease.pk):
        assert site.pass_once()["running"] == [lease.pk]
        time.sleep(3)
        site.pass_once()  # a first usage report (two where the first pass's start was slow)
        before = UsageReport.objects.filter(lease=lease).count()
        time.sleep(1)  # the lease runs on a little before the client closes it: a final report is due
        f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")

        # the final report is written, and the agent dies as it asks Docker to remove the container
        site.docker.hold_when(lambda method, path, body: method == "DELETE" and "/containers/" in path)
        agent = site.agent()
        wait_for(site.docker.held.is_set, what="the container's removal")
        kill(agent)
        site.docker.release()
        assert our_containers(engine, lease.pk)  # still there

        summary = site.pass_once()
        assert summary["torn_down"] == [lease.pk]
        lease.refresh_from_db()
        reports = list(UsageReport.objects.filter(lease=lease).order_by("period_start"))
        assert len(reports) == before + 1  # the final report, written once though the agent died after it
        for earlier, later in pairwise(reports):
            assert later.period_start == earlier.period_end
        assert reports[-1].period_end <= lease.closed_at
        assert not list((site.dir / "agent-state" / "outbox").iterdir())
        assert_converged(leases=[lease], engine=engine)


def test_a_provider_that_vanishes_is_paid_for_what_it_reported_and_cleans_up_when_back(  # type: ignore[no-untyped-def]
    site: Site, engine, settings
) -> None:
    client = f.client_user(balance=100 * USD)
    lease = site.lease(client)
    with containers_removed(engine, lease.pk):
        assert site.pass_once()["running"] == [lease.pk]
        time.sleep(3)
        site.pass_once()
        reported = list(UsageReport.objects.filter(lease=lease))  # two where the first pass's start was slow
        assert reported
        time.sleep(1)  # it runs on, unreported
        # the agent's host drops off the network: no heartbeat since, the workload goes on
        silent = timezone.now() - timedelta(seconds=settings.LEASE_ABANDONED_AFTER_SECONDS + 1)
        Provider.objects.filter(pk=site.provider.pk).update(last_heartbeat_at=silent)
        assert close_finished_leases() == 1  # the lease sweep
        lease.refresh_from_db()
        assert lease.status == Lease.Status.CLOSED and lease.closed_by == Lease.ClosedBy.SYSTEM
        assert "provider went offline" in lease.close_reason
        paid = lease.price_per_hour * sum(r.run_seconds for r in reported) // 3600  # what it reported, no tail
        assert (lease.paid_to_provider, lease.refunded_to_client) == (paid, lease.deposit - paid)

        summary = site.pass_once()  # back: it finds the lease closed, reports the rest, tears down
        assert summary["torn_down"] == [lease.pk]
        assert UsageReport.objects.filter(lease=lease).count() == len(reported) + 1  # stored, and paid nothing more
        lease.refresh_from_db()
        assert lease.paid_to_provider == paid
        assert_converged(leases=[lease], engine=engine)
