"""End to end: the marketplace on a live server, the agent as a real process, Docker:
order → bid → accept → container running → close → container gone."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account

from chain.models import Wallet
from core import services as accounts
from core.models import TokenScope
from leases.models import Lease, UsageReport
from marketplace import services as market
from providers.agent.runtimes.docker_runtime import container_name
from tests import factories as f
from tests.factories import USD
from tests.providers.agent.images import IMAGE


def run_agent(tmp_path: Path) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "providers.agent.cli", "run", "--once"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stderr.splitlines()]


@pytest.mark.django_db(transaction=True)
def test_a_lease_runs_reports_signed_usage_and_goes_away_when_closed(live_server, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # The bid is placed for the provider: this host has no GPUs, so an agent reporting its real
    # inventory could not bid on a GPU order (test_bidding covers the agent's bidding).
    provider = f.provider()
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    key = Account.create()
    (tmp_path / "signing-key.hex").write_text(key.key.hex())
    Wallet.objects.create(user=provider.user, address=key.address)  # linked with SIWE in real life
    (tmp_path / "agent.yaml").write_text(
        f"marketplace_url: {live_server.url}\ntoken: {token}\nusage_seconds: 5\n"
        "docker: {network: none, gpus: false, pull_images: false}\n"  # this host has no GPUs; nothing is pulled
    )
    client = f.client_user(balance=100 * USD)
    order = f.order(
        client,
        workload={"image": IMAGE, "command": ["sh", "-c"], "args": ["echo up; sleep 600"]},
        resources={"cpu_cores": 1, "memory_gib": 1, "storage_gib": 1, "gpu_count": 2},
    )
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    try:
        log = run_agent(tmp_path)
        passes = [entry for entry in log if entry["event"] == "leases reconciled"]
        assert passes and passes[-1]["deployed"] == [lease.pk], json.dumps(log)
        lease.refresh_from_db()
        assert lease.status == Lease.Status.RUNNING
        container = engine.containers.get(container_name(lease.pk))
        assert container.status == "running" and container.labels["gpumarket.io/lease"] == str(lease.pk)

        # a later pass (or a restarted agent) deploys nothing new, and reports usage once it is due
        time.sleep(max(0.0, lease.started_at.timestamp() + 6 - time.time()))
        assert [e for e in run_agent(tmp_path) if e["event"] == "leases reconciled"][-1]["deployed"] == []
        [first] = UsageReport.objects.filter(lease=lease)
        assert first.signer == key.address
        assert 0 < first.run_seconds <= (first.period_end - first.period_start).total_seconds()
        assert first.gpu_seconds == 2 * first.run_seconds

        time.sleep(2)  # the lease runs on a little before the client closes it
        f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
        log = run_agent(tmp_path)
        passes = [e for e in log if e["event"] == "leases reconciled"]
        assert passes[-1]["torn_down"] == [lease.pk]
        assert not engine.containers.list(all=True, filters={"name": container_name(lease.pk)})
        # the final report runs from the last one to the close
        lease.refresh_from_db()
        reports = UsageReport.objects.filter(lease=lease).order_by("period_start")
        assert len(reports) == 2, json.dumps(log)
        first, final = reports
        assert final.period_start == first.period_end and final.period_end <= lease.closed_at
        assert not list((tmp_path / "agent-state" / "outbox").iterdir())  # nothing left waiting
        # paid for the time the workload ran, within the time cap; the rest refunded
        elapsed = (lease.closed_at - lease.started_at).total_seconds()
        assert 0 < lease.paid_to_provider <= lease.price_per_hour * elapsed // 3600
        assert lease.paid_to_provider + lease.refunded_to_client == lease.deposit
    finally:
        for c in engine.containers.list(all=True, filters={"label": f"gpumarket.io/lease={lease.pk}"}):
            c.remove(force=True)


@pytest.mark.django_db(transaction=True)
def test_an_image_that_does_not_exist_fails_the_lease_and_refunds_the_client(
    live_server, engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider()
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    (tmp_path / "agent.yaml").write_text(
        f"marketplace_url: {live_server.url}\ntoken: {token}\n"
        "docker: {network: none, gpus: false, pull_images: false}\n"
    )
    client = f.client_user(balance=100 * USD)
    order = f.order(client, workload={"image": "gpumarket-test/missing:1"})
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    passes = [e for e in run_agent(tmp_path) if e["event"] == "leases reconciled"]
    assert passes[-1]["failed"] == [lease.pk]
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED and "does not exist" in lease.close_reason
    assert lease.refunded_to_client == lease.deposit
