"""End to end: the marketplace on a live server, the agent as a real process, Docker:
order → bid → accept → container running → close → container gone."""

import json
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
from django.utils import timezone
from eth_account import Account

from agent.runtimes.docker_runtime import container_name
from chain.models import Wallet
from core import services as accounts
from core.models import TokenScope
from leases import selectors, services
from leases.escrow import chain as escrow
from leases.models import Lease, LeaseLog, UsageReport
from ledger.models import LedgerAccount
from marketplace import services as market
from tests import factories as f
from tests.agent.images import CONTAINERS, DOCKER_SETTINGS, IMAGE, our_containers
from tests.conftest import assert_books_balance
from tests.factories import USD
from tests.leases.test_escrow_on_chain import ledger_balance, setup_parties, signed, wallet_of


def run_agent(tmp_path: Path) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--once"],
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
        f"marketplace_url: {live_server.url}\ntoken: {token}\nusage_seconds: 2\n"
        f"docker: {DOCKER_SETTINGS}\n"  # this host has no GPUs; nothing is pulled
        "prover: 'off'\n"  # no proofs here: finding no GPU through PyTorch takes longer than a usage period
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
        container = engine.containers.get(container_name(lease.pk, CONTAINERS))
        assert container.status == "running" and container.labels["gpumarket.io/lease"] == str(lease.pk)

        # a later pass (or a restarted agent) deploys nothing new, and reports usage once it is due
        time.sleep(max(0.0, lease.started_at.timestamp() + 3 - time.time()))
        assert [e for e in run_agent(tmp_path) if e["event"] == "leases reconciled"][-1]["deployed"] == []
        # one report, or two where the agent's start took longer than a usage period on a busy machine
        early = list(UsageReport.objects.filter(lease=lease).order_by("period_start"))
        assert early, json.dumps(log)
        for report in early:
            assert report.signer == key.address
            assert 0 < report.run_seconds <= (report.period_end - report.period_start).total_seconds()
            assert report.gpu_seconds == 2 * report.run_seconds
        # the client sees what the workload printed
        assert LeaseLog.objects.get(lease=lease).text == "up\n"

        time.sleep(1)  # the lease runs on a little before the client closes it
        f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
        log = run_agent(tmp_path)
        passes = [e for e in log if e["event"] == "leases reconciled"]
        assert passes[-1]["torn_down"] == [lease.pk]
        assert not our_containers(engine, lease.pk)
        # the final report runs from the last one to the close
        lease.refresh_from_db()
        reports = list(UsageReport.objects.filter(lease=lease).order_by("period_start"))
        assert len(reports) == len(early) + 1, json.dumps(log)
        for earlier, later in pairwise(reports):
            assert later.period_start == earlier.period_end  # no gap, no overlap
        assert reports[-1].period_end <= lease.closed_at
        assert not list((tmp_path / "agent-state" / "outbox").iterdir())  # nothing left waiting
        # paid for the time the workload ran, within the time cap; the rest refunded
        elapsed = (lease.closed_at - lease.started_at).total_seconds()
        assert 0 < lease.paid_to_provider <= lease.price_per_hour * elapsed // 3600
        assert lease.paid_to_provider + lease.refunded_to_client == lease.deposit
    finally:
        for c in our_containers(engine, lease.pk):
            c.remove(force=True)


@pytest.mark.django_db(transaction=True)
def test_an_image_that_does_not_exist_fails_the_lease_and_refunds_the_client(
    live_server, engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider()
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    (tmp_path / "agent.yaml").write_text(
        f"marketplace_url: {live_server.url}\ntoken: {token}\ndocker: {DOCKER_SETTINGS}\nprover: 'off'\n"
    )
    client = f.client_user(balance=100 * USD)
    order = f.order(client, workload={"image": "gpumarket-test/missing:1"})
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    passes = [e for e in run_agent(tmp_path) if e["event"] == "leases reconciled"]
    assert passes[-1]["failed"] == [lease.pk]
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED and "does not exist" in lease.close_reason
    assert lease.refunded_to_client == lease.deposit


@pytest.mark.django_db(transaction=True)
def test_money_flows_end_to_end_on_chain_with_the_agent_and_docker(live_server, engine, chain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Award → funded on chain → the agent runs it and signs usage → the tick settles on chain →
    the paid time runs out: stopped, kept → a top-up on chain resumes it → the client closes →
    torn down. The ledger equals the chain's balances throughout, to the micro-dollar."""
    client, provider = setup_parties(chain, allow=100 * USD)
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    key = Account.create()
    (tmp_path / "signing-key.hex").write_text(key.key.hex())
    Wallet.objects.create(user=provider.user, address=key.address)  # signs usage; wallet 6 is paid
    (tmp_path / "agent.yaml").write_text(
        f"marketplace_url: {live_server.url}\ntoken: {token}\nusage_seconds: 2\n"
        f"docker: {DOCKER_SETTINGS}\nprover: 'off'\n"
    )
    price = 36 * USD  # an hour: 10,000 micro-dollars a second
    order = f.order(
        client,
        duration_hours=1,
        max_price_per_hour=price,
        workload={"image": IMAGE, "command": ["sh", "-c"], "args": ["trap 'exit 0' TERM; sleep 600 & wait"]},
        resources={"cpu_cores": 1, "memory_gib": 1, "storage_gib": 1, "gpu_count": 1},
    )
    bid = f.bid(provider, order, price)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=bid.pk, **signed(chain, client, order, bid))
    lease.refresh_from_db()
    assert lease.status == Lease.Status.FUNDED and chain.lease(lease.pk).balance == lease.deposit
    provider_wallet, client_wallet = wallet_of(chain, 6), wallet_of(chain, 5)

    def books_equal_chain() -> None:
        lease.refresh_from_db()
        assert ledger_balance(client) == chain.balance_of(client_wallet)
        earnings = LedgerAccount.objects.get(owner=provider.user, kind=LedgerAccount.Kind.PROVIDER_EARNINGS)
        assert earnings.balance == chain.claimable(provider_wallet)
        assert escrow.reconcile() == []
        assert_books_balance()

    try:
        assert [e for e in run_agent(tmp_path) if e["event"] == "leases reconciled"][-1]["deployed"] == [lease.pk]
        time.sleep(3)
        run_agent(tmp_path)  # a usage report is due
        assert UsageReport.objects.filter(lease=lease).exists()
        assert services.leases_settle() == 1
        lease.refresh_from_db()
        settled = lease.settled_amount
        assert settled > 0 and chain.lease(lease.pk).balance == lease.deposit - settled
        books_equal_chain()

        # the paid time runs out: the lease waits in its grace period, the container is stopped and kept
        Lease.objects.filter(pk=lease.pk).update(ends_at=timezone.now())
        services.leases_close_finished()
        lease.refresh_from_db()
        assert lease.status == Lease.Status.INSUFFICIENT_FUNDS
        assert [e for e in run_agent(tmp_path) if e["event"] == "leases reconciled"][-1]["suspended"] == [lease.pk]
        assert engine.containers.get(container_name(lease.pk, CONTAINERS)).status == "exited"
        time.sleep(3)
        run_agent(tmp_path)  # reports the stopped time as not running
        before = services_owed(lease)
        time.sleep(1)
        assert services_owed(lease) == before  # nothing accrues while it waits

        # a top-up on chain resumes it where it stopped
        response = f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/top-ups/", {"amount": USD}, format="json")
        assert response.status_code == 202
        lease.refresh_from_db()
        assert lease.status == Lease.Status.DEPLOYING and chain.lease(lease.pk).balance == lease.deposit - settled
        passes = [e for e in run_agent(tmp_path) if e["event"] == "leases reconciled"]
        assert passes[-1]["resumed"] == [lease.pk]
        assert engine.containers.get(container_name(lease.pk, CONTAINERS)).status == "running"
        lease.refresh_from_db()
        assert lease.status == Lease.Status.RUNNING
        time.sleep(3)
        run_agent(tmp_path)
        assert services.leases_settle() == 1
        books_equal_chain()

        f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
        assert [e for e in run_agent(tmp_path) if e["event"] == "leases reconciled"][-1]["torn_down"] == [lease.pk]
        lease.refresh_from_db()
        assert lease.status == Lease.Status.CLOSED
        ran = sum(UsageReport.objects.filter(lease=lease).values_list("run_seconds", flat=True))
        assert lease.paid_to_provider + lease.refunded_to_client == lease.deposit
        assert lease.paid_to_provider <= price * (ran + 120) // 3600  # what ran, and at most the tail
        assert lease.paid_to_provider <= price * (lease.closed_at - lease.started_at).total_seconds() // 3600
        assert lease.paid_to_provider == chain.claimable(provider_wallet)
        assert not chain.lease(lease.pk).open
        books_equal_chain()
    finally:
        for c in our_containers(engine, lease.pk):
            c.remove(force=True)


def services_owed(lease: Lease) -> int:
    lease.refresh_from_db()
    return selectors.lease_owed(lease=lease, until=timezone.now())
