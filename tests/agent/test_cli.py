"""The agent as a real process (the installed ``gpumarket-agent`` program) against a live marketplace."""

import json
import os
import socket
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from agent.inventory import discover
from core import services as accounts
from core.models import TokenScope
from leases.models import Lease
from marketplace import services as market
from providers.models import Provider
from tests import factories as f
from tests.agent.kube import Cluster
from tests.factories import USD


def agent(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_inventory_discovers_the_host() -> None:
    inventory = discover()
    assert inventory.cpu_cores >= 1 and inventory.memory_gib >= 1 and inventory.storage_gib >= 0
    if not inventory.gpus:
        assert inventory.gpu_note  # says why: no NVML here
    report = inventory.report()
    assert set(report) == {"gpus", "cpu_cores", "memory_gib", "storage_gib", "nodes"}
    [node] = report["nodes"]  # a Docker host is one node
    assert node["name"] == socket.gethostname() and node["cpu_cores"] == report["cpu_cores"]


@pytest.mark.skipif(not discover().gpus, reason="NVML discovery needs an NVIDIA GPU and driver")
def test_nvml_discovery_on_a_real_gpu() -> None:
    gpus = discover().gpus
    assert all(g.name.startswith("NVIDIA") and g.memory_mib > 1000 and g.uuid.startswith("GPU-") for g in gpus)


@pytest.mark.django_db(transaction=True)
def test_init_then_run_once_reports_inventory_and_status_reads_it(live_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={})
    Provider.objects.filter(pk=provider.pk).update(last_heartbeat_at=None)
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret

    init = agent("init", "--marketplace-url", live_server.url, "--token", token, cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    config = tmp_path / "agent.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "signing-key.hex").stat().st_mode) == 0o600
    assert "signing address: 0x" in init.stdout
    assert agent("init", "--marketplace-url", live_server.url, "--token", token, cwd=tmp_path).returncode == 1

    run = agent("run", "--once", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    log = {entry["event"]: entry for entry in map(json.loads, run.stderr.splitlines())}
    assert log["inventory reported"]["level"] == "info"
    provider.refresh_from_db()
    assert provider.last_heartbeat_at is not None
    assert provider.cpu_cores_total == discover().cpu_cores
    assert [node["name"] for node in provider.nodes] == [socket.gethostname()]

    status = agent("status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    seen = json.loads(status.stdout)
    assert seen["online"] is True and seen["reports_waiting"] == 0
    assert f"signing address: {seen['signing_address']}" in init.stdout


def test_inventory_of_a_kubernetes_cluster_through_a_kubeconfig(tmp_path: Path) -> None:
    with Cluster() as cluster:
        cluster.add_node("gpu-1", gpus=8, product="NVIDIA-H100-80GB-HBM3", memory_mib=81559)
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lab", "cluster": {"server": cluster.url}}],
            "users": [{"name": "agent", "user": {"token": "service-account-token"}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "agent"}}],
            "current-context": "lab",
        }
        (tmp_path / "kubeconfig").write_text(json.dumps(kubeconfig))
        (tmp_path / "agent.yaml").write_text(
            "marketplace_url: http://127.0.0.1:9\ntoken: gpm_x\nruntime: kubernetes\n"
            f"kubernetes: {{kubeconfig: {tmp_path / 'kubeconfig'}}}\n"
        )
        shown = agent("inventory", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["gpus"] == [
        {"model": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "total": 8, "free": 8}
    ]


def test_an_unreachable_marketplace_does_not_stop_the_agent(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text("marketplace_url: http://127.0.0.1:9\ntoken: gpm_x\n")
    run = agent("run", "--once", cwd=tmp_path)
    assert run.returncode == 0
    events = [json.loads(line)["event"] for line in run.stderr.splitlines()]
    assert "inventory failed" in events and "leases failed" in events
    assert agent("status", cwd=tmp_path).returncode == 1


def test_a_bad_configuration_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text("marketplace_url: nowhere\ntoken: x\n")
    result = agent("run", "--once", cwd=tmp_path)
    assert result.returncode == 2 and "marketplace_url" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_declared_inventory_bids_and_without_a_runtime_won_leases_wait_then_fail(live_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A host without GPUs declares them (as ``make run``'s demo agent does) and bids by its prices;
    with no Docker engine answering, the lease it wins says why it waits, and fails after the
    deploy timeout, refunding its client."""
    provider = f.provider(gpus={})
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    (tmp_path / "agent.yaml").write_text(
        f"marketplace_url: {live_server.url}\ntoken: {token}\ndeploy_timeout_seconds: 30\n"
        "pricing: {per_gpu_hour: {rtx-4090-24gb: 400000}}\n"
        "declared_inventory:\n"
        "  gpus: [{model: NVIDIA GeForce RTX 4090, count: 2}]\n"
        "  cpu_cores: 16\n  memory_gib: 64\n  storage_gib: 500\n  node: box-1\n"
    )
    no_docker = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    shown = agent("inventory", cwd=tmp_path)
    assert json.loads(shown.stdout)["gpu_note"] == "declared in the configuration, not discovered"

    def run_once() -> dict:
        run = subprocess.run(
            [sys.executable, "-m", "agent.cli", "run", "--once"],
            cwd=tmp_path,
            env=no_docker,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return {entry["event"]: entry for entry in map(json.loads, run.stderr.splitlines())}

    client = f.client_user()
    order = f.order(client, resources={"gpu_count": 2, "gpu_models": ["rtx-4090-24gb"]}, max_price_per_hour=USD)
    log = run_once()
    assert log["no runtime: leases wait until one answers"]["level"] == "warning"
    provider.refresh_from_db()
    assert provider.nodes[0]["name"] == "box-1" and provider.cpu_cores_total == 16
    [gpus] = provider.gpus.all()
    assert (gpus.gpu_model_id, gpus.total, gpus.price_per_gpu_hour) == ("rtx-4090-24gb", 2, 400_000)
    assert log["bids placed"]["placed"] == [order.pk]
    [bid] = order.bids.all()
    assert bid.price_per_hour == 800_000

    lease = market.order_accept(client=client, order_id=order.pk, bid_id=bid.pk)
    assert run_once()["leases wait for a runtime"]["active"] == 1
    lease.refresh_from_db()
    assert lease.status == Lease.Status.DEPLOYING
    assert lease.status_reason == "waiting for the provider's container runtime: its Docker engine does not answer"

    Lease.objects.filter(pk=lease.pk).update(started_at=timezone.now() - timedelta(seconds=31))
    assert run_once()["leases wait for a runtime"]["failed"] == [lease.pk]
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED and "did not start within 30 s" in lease.close_reason
    assert lease.refunded_to_client == lease.deposit
