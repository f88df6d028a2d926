"""The lease pass against a live marketplace and an emulated cluster: deploy, run, drift, fail, tear down;
and an agent that a misbehaving marketplace cannot crash."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.utils import timezone
from kubernetes import client as k8s

from agent.client import MarketplaceClient
from agent.config import validate
from agent.lifecycle import reconcile_leases
from agent.runner import Agent
from agent.runtimes.base import LABEL_LEASE, LABEL_MANAGED_BY, RuntimeUnavailable
from agent.runtimes.kubernetes_runtime import KubernetesRuntime
from core import services as accounts
from core.models import TokenScope
from leases.models import Lease
from marketplace import services as market
from tests import factories as f
from tests.agent.kube import Cluster, running_status, waiting_status
from tests.factories import USD

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster() as running:
        running.add_node("gpu-1", gpus=8, product="NVIDIA-H100-80GB-HBM3", memory_mib=81559)
        yield running


@pytest.fixture
def market_side(live_server):  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    client = f.client_user(balance=1000 * USD)

    def lease(**workload) -> Lease:  # type: ignore[no-untyped-def]
        order = f.order(client, workload={"ports": [8888], **workload})
        return market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, 2 * USD).pk)

    return MarketplaceClient(live_server.url, token), lease, client


def pod_running(cluster: Cluster, lease: Lease, name: str = "w") -> None:
    labels = {LABEL_MANAGED_BY: "gpumarket-agent", LABEL_LEASE: str(lease.pk)}
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.set_pod(f"gpumarket-lease-{lease.pk}", name, labels=labels, gpus=1, **running_status(started))


def test_deploy_run_drift_close_on_kubernetes(cluster: Cluster, market_side) -> None:  # type: ignore[no-untyped-def]
    agent, new_lease, client = market_side
    runtime = KubernetesRuntime(cluster.api_client(), node_address="203.0.113.9")
    lease = new_lease()

    first = reconcile_leases(agent, runtime)
    assert first.deployed == [lease.pk] and first.running == []
    lease.refresh_from_db()
    assert lease.status == "deploying"  # until the pod runs

    pod_running(cluster, lease)
    second = reconcile_leases(agent, runtime)
    assert second.running == [lease.pk] and second.deployed == []
    lease.refresh_from_db()
    assert (lease.status, lease.endpoints) == ("running", ["203.0.113.9:30000"])

    # someone deleted the namespace: drift, and the lease comes back (a restarted agent does the same)
    runtime.core.delete_namespace(f"gpumarket-lease-{lease.pk}")
    healed = reconcile_leases(agent, KubernetesRuntime(cluster.api_client(), node_address="203.0.113.9"))
    assert healed.drift == [lease.pk] and healed.deployed == [lease.pk]
    assert runtime.status(lease.pk).state == "starting"
    lease.refresh_from_db()
    assert lease.status == "running"  # never closed, never duplicated
    assert "disappeared" in lease.status_reason  # the client sees what happened
    pod_running(cluster, lease, name="w2")
    assert reconcile_leases(agent, runtime).running == [lease.pk]
    lease.refresh_from_db()
    assert lease.status_reason == ""  # back to normal

    # the job finished: the lease stays the client's to close, and the client is told
    labels = {LABEL_MANAGED_BY: "gpumarket-agent", LABEL_LEASE: str(lease.pk)}
    cluster.set_pod(f"gpumarket-lease-{lease.pk}", "w2", labels=labels, phase="Succeeded")
    reconcile_leases(agent, runtime)
    lease.refresh_from_db()
    assert lease.status == "running" and lease.status_reason.startswith("the workload exited; close the lease")

    f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
    assert reconcile_leases(agent, runtime).torn_down == [lease.pk]
    assert runtime.owned() == []


def test_an_image_that_cannot_be_pulled_fails_and_refunds(cluster: Cluster, market_side) -> None:  # type: ignore[no-untyped-def]
    agent, new_lease, _ = market_side
    runtime = KubernetesRuntime(cluster.api_client())
    lease = new_lease(image="ghcr.io/acme/nope:1")
    reconcile_leases(agent, runtime)
    labels = {LABEL_MANAGED_BY: "gpumarket-agent", LABEL_LEASE: str(lease.pk)}
    cluster.set_pod(
        f"gpumarket-lease-{lease.pk}", "w", labels=labels, **waiting_status("ErrImagePull", "manifest unknown")
    )
    assert reconcile_leases(agent, runtime).failed == [lease.pk]
    lease.refresh_from_db()
    assert lease.status == "closed" and "ErrImagePull: manifest unknown" in lease.close_reason
    assert lease.refunded_to_client == lease.deposit
    assert lease.failure_cause == "workload"  # the registry has no such image: the client's mistake
    assert runtime.owned() == []  # nothing left behind


@pytest.mark.parametrize(
    ("reason", "message", "restarts", "cause"),
    [
        ("ErrImagePull", "dial tcp 203.0.113.9:443: i/o timeout", 0, "provider"),  # its network
        ("ErrImagePull", "pull access denied, repository does not exist", 0, "workload"),
        ("CreateContainerError", 'exec: "/no/such/program": executable file not found in $PATH', 0, "workload"),
        ("CrashLoopBackOff", "back-off 40s restarting failed container", 3, "workload"),  # its command fails
    ],
)
def test_a_failed_deploy_says_whose_fault_it_was(  # type: ignore[no-untyped-def]
    cluster: Cluster, market_side, reason, message, restarts, cause
) -> None:
    agent, new_lease, _ = market_side
    runtime = KubernetesRuntime(cluster.api_client())
    lease = new_lease()
    reconcile_leases(agent, runtime)
    labels = {LABEL_MANAGED_BY: "gpumarket-agent", LABEL_LEASE: str(lease.pk)}
    status = waiting_status(reason, message)
    status["containerStatuses"][0]["restartCount"] = restarts
    cluster.set_pod(f"gpumarket-lease-{lease.pk}", "w", labels=labels, **status)
    assert reconcile_leases(agent, runtime).failed == [lease.pk]
    lease.refresh_from_db()
    assert (lease.status, lease.failure_cause) == ("closed", cause)
    assert lease.refunded_to_client == lease.deposit


def test_a_running_workload_that_restarts_says_so_beside_running(cluster: Cluster, market_side) -> None:  # type: ignore[no-untyped-def]
    """A lease is "Running" only with its workload up; one going down and coming back says so, once."""
    agent, new_lease, _ = market_side
    runtime = KubernetesRuntime(cluster.api_client())
    lease = new_lease()
    reconcile_leases(agent, runtime)
    labels = {LABEL_MANAGED_BY: "gpumarket-agent", LABEL_LEASE: str(lease.pk)}
    pod_running(cluster, lease)
    reconcile_leases(agent, runtime)
    lease.refresh_from_db()
    assert (lease.status, lease.status_reason) == ("running", "")
    status = waiting_status("CrashLoopBackOff", "back-off 10s restarting failed container")
    status["phase"] = "Running"
    status["containerStatuses"][0]["restartCount"] = 2
    cluster.set_pod(f"gpumarket-lease-{lease.pk}", "w", labels=labels, **status)
    reconcile_leases(agent, runtime)
    lease.refresh_from_db()
    assert lease.status == "running"
    assert lease.status_reason.startswith("the workload is restarting (2 restarts so far)")
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.set_pod(f"gpumarket-lease-{lease.pk}", "w", labels=labels, gpus=1, **running_status(started, restarts=2))
    reconcile_leases(agent, runtime)
    lease.refresh_from_db()
    assert (lease.status, lease.status_reason) == ("running", "running again after 2 restarts")


def test_a_crash_loop_short_of_the_restarts_is_still_starting(cluster: Cluster, market_side) -> None:  # type: ignore[no-untyped-def]
    agent, new_lease, _ = market_side
    runtime = KubernetesRuntime(cluster.api_client())
    lease = new_lease()
    reconcile_leases(agent, runtime)
    labels = {LABEL_MANAGED_BY: "gpumarket-agent", LABEL_LEASE: str(lease.pk)}
    status = waiting_status("CrashLoopBackOff", "back-off 10s restarting failed container")
    status["containerStatuses"][0]["restartCount"] = 1
    cluster.set_pod(f"gpumarket-lease-{lease.pk}", "w", labels=labels, **status)
    assert reconcile_leases(agent, runtime).failed == []
    lease.refresh_from_db()
    assert lease.status in ("funded", "deploying")


def test_a_cluster_that_does_not_answer_decides_nothing(market_side) -> None:  # type: ignore[no-untyped-def]
    agent, new_lease, _ = market_side
    lease = new_lease()
    down = KubernetesRuntime(k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:9")))
    down.api.configuration.retries = 0
    with pytest.raises(RuntimeUnavailable):
        reconcile_leases(agent, down)
    lease.refresh_from_db()
    assert lease.status == "funded"  # not failed, not refunded: tried again when the cluster answers


def test_a_workload_that_never_starts_fails_after_the_deploy_timeout(cluster: Cluster, market_side) -> None:  # type: ignore[no-untyped-def]
    agent, new_lease, _ = market_side
    runtime = KubernetesRuntime(cluster.api_client())
    lease = new_lease()
    reconcile_leases(agent, runtime)
    Lease.objects.filter(pk=lease.pk).update(started_at=timezone.now() - timedelta(minutes=20))
    summary = reconcile_leases(agent, runtime, deploy_timeout=900)
    assert summary.failed == [lease.pk]
    lease.refresh_from_db()
    assert "did not start within 900 s" in lease.close_reason


class Answering(BaseHTTPRequestHandler):
    """A stand-in marketplace over real HTTP, for answers the real one never gives."""

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


class Garbage(Answering):
    """A marketplace gone wrong: HTML, JSON of the wrong shape, or nonsense, depending on the path."""

    def do_GET(self) -> None:
        answers = {
            "/api/v1/providers/me/": b'{"gpus": "lots"}',
            "/api/v1/leases/": b'{"results": [{"id": "x"}, {"status": "running"}, 7]}',
            "/api/v1/bids/": b"[1, 2, 3]",
        }
        self._answer(answers.get(self.path.split("?")[0], b"<html>oops</html>"))

    def do_PUT(self) -> None:
        self._answer(b"\x00\xff")

    do_POST = do_PUT  # noqa: N815


def test_a_marketplace_that_sends_garbage_never_crashes_the_agent(cluster: Cluster, tmp_path: Path) -> None:
    with serving(Garbage) as url:
        cfg = validate(
            {
                "marketplace_url": url,
                "token": "gpm_x",
                "state_dir": str(tmp_path),
                "pricing": {"per_gpu_hour": {"h100-sxm-80gb": 2 * USD}},
            }
        )
        agent = Agent(cfg, runtime=KubernetesRuntime(cluster.api_client()), push=False)
        for _ in range(3):
            agent.step()
            agent.schedule.next_at.clear()  # everything due again
        assert set(agent.schedule.backoff) >= {"inventory", "bids", "leases"}  # each failed, and backs off


class MalformedManifest(Answering):
    """A marketplace with one funded lease whose manifest makes no sense; it records what it is told."""

    posted: list[tuple[str, dict]] = []

    def do_GET(self) -> None:
        started = datetime.now(UTC).isoformat()
        answers = {
            "/api/v1/leases/": {"results": [{"id": 5, "status": "funded", "started_at": started, "gpu_count": 1}]},
            "/api/v1/leases/5/manifest/": {"lease": 5, "image": "ghcr.io/acme/x:1", "ports": "all of them"},
        }
        self._answer(json.dumps(answers.get(self.path.split("?")[0], {})).encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.posted.append((self.path, json.loads(self.rfile.read(length) or b"{}")))
        self._answer(b'{"id": 5, "status": "closed"}')


def test_a_malformed_manifest_fails_the_lease_with_a_reason(cluster: Cluster) -> None:
    with serving(MalformedManifest) as url:
        summary = reconcile_leases(MarketplaceClient(url, "gpm_x"), KubernetesRuntime(cluster.api_client()))
    assert summary.failed == [5]
    [(path, body)] = MalformedManifest.posted
    assert path == "/api/v1/leases/5/status/" and body["status"] == "failed"
    assert body["reason"].startswith("the lease's manifest is malformed")
    assert cluster.objects("clusternamespaces") == []  # nothing was created


def test_out_of_funds_scales_to_zero_keeps_everything_and_a_top_up_resumes(cluster: Cluster, market_side) -> None:  # type: ignore[no-untyped-def]
    from leases import services as leases

    agent, new_lease, client = market_side
    runtime = KubernetesRuntime(cluster.api_client(), node_address="203.0.113.9")
    lease = new_lease()
    reconcile_leases(agent, runtime)
    pod_running(cluster, lease)
    assert reconcile_leases(agent, runtime).running == [lease.pk]

    # its paid time runs out: the marketplace suspends it, the agent scales it to zero and keeps it
    Lease.objects.filter(pk=lease.pk).update(ends_at=timezone.now() - timedelta(seconds=1))
    leases.leases_close_finished()
    lease.refresh_from_db()
    assert lease.status == "insufficient_funds"
    stopped = reconcile_leases(agent, runtime)
    assert stopped.suspended == [lease.pk] and stopped.torn_down == []
    namespace = f"gpumarket-lease-{lease.pk}"
    [deployment] = cluster.objects("deployments", namespace)
    assert deployment["spec"]["replicas"] == 0
    assert runtime.status(lease.pk).state == "stopped"
    assert runtime.owned() == [lease.pk]  # namespace, volumes and Service stay
    assert cluster.objects("services", namespace)
    assert reconcile_leases(agent, runtime).suspended == []  # once

    # a top-up within the grace: deploying again, and the agent scales it back up
    f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/top-ups/", {"amount": 4 * USD}, format="json")
    lease.refresh_from_db()
    assert lease.status == "deploying" and lease.resumed_at is not None
    resumed = reconcile_leases(agent, runtime)
    assert resumed.resumed == [lease.pk] and resumed.deployed == []
    [deployment] = cluster.objects("deployments", namespace)
    assert deployment["spec"]["replicas"] == 1
    assert reconcile_leases(agent, runtime).running == [lease.pk]
    lease.refresh_from_db()
    assert lease.status == "running"

    # out of funds again, and no top-up within the grace: closed, and only then torn down
    Lease.objects.filter(pk=lease.pk).update(ends_at=timezone.now() - timedelta(seconds=1))
    leases.leases_close_finished()
    assert reconcile_leases(agent, runtime).suspended == [lease.pk]
    leases.leases_close_finished(now=timezone.now() + timedelta(hours=1))
    lease.refresh_from_db()
    assert lease.status == "closed" and "grace" in lease.close_reason
    assert reconcile_leases(agent, runtime).torn_down == [lease.pk]
    assert runtime.owned() == []
