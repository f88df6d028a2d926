"""Usage reports on disk: metered across restarts, kept while the marketplace is down, sent in order."""

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from eth_account import Account

from agent.client import MarketplaceClient
from agent.reporting import Outbox, UsageMeter
from agent.runtimes.base import LABEL_LEASE, LABEL_MANAGED_BY, LeaseManifest
from agent.runtimes.kubernetes_runtime import KubernetesRuntime
from chain.models import Wallet
from core import services as accounts
from core.models import TokenScope
from leases.models import Lease, UsageReport
from marketplace import services as market
from protocol.usage import UsageReport as SignedReport
from protocol.usage import sign
from tests import factories as f
from tests.agent.kube import Cluster, running_status
from tests.factories import USD

CHAIN_ID = 31337


@pytest.fixture
def setup(live_server):  # type: ignore[no-untyped-def]
    key = Account.create()
    provider = f.provider()
    Wallet.objects.create(user=provider.user, address=key.address)
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    client = f.client_user(balance=100 * USD)
    order = f.order(client)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    Lease.objects.filter(pk=lease.pk).update(started_at=timezone.now() - timedelta(minutes=30), status="running")
    lease.refresh_from_db()
    return lease, key, token, live_server.url


def body(lease: Lease, key, start: int, end: int) -> dict:  # type: ignore[no-untyped-def]
    report = SignedReport(lease.pk, start, end, end - start, end - start, 0)
    return report.body(sign(report, chain_id=CHAIN_ID, key=key.key))


@pytest.mark.django_db(transaction=True)
def test_reports_wait_on_disk_while_the_marketplace_is_down(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lease, key, token, url = setup
    t0 = int(lease.started_at.timestamp()) + 1
    outbox = Outbox(tmp_path)
    for start in (t0, t0 + 60, t0 + 120):
        outbox.put(lease.pk, body(lease, key, start, start + 60))

    down = outbox.flush(MarketplaceClient("http://127.0.0.1:9", token, retries=0))
    assert (down.sent, down.waiting) == (0, 3) and "unreachable" in down.error
    assert len(outbox.pending()) == 3 and not UsageReport.objects.exists()

    # a new process (the agent restarted meanwhile) finds them and sends them, in order
    back = Outbox(tmp_path).flush(MarketplaceClient(url, token))
    assert (back.sent, back.waiting, back.rejected) == (3, 0, 0)
    assert [r.period_start.timestamp() for r in UsageReport.objects.order_by("id")] == [t0, t0 + 60, t0 + 120]
    assert outbox.pending() == []


@pytest.mark.django_db(transaction=True)
def test_a_report_the_marketplace_refuses_is_set_aside_with_the_reason(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lease, key, token, url = setup
    t0 = int(lease.started_at.timestamp()) + 1
    outbox = Outbox(tmp_path)
    outbox.put(lease.pk, body(lease, key, t0, t0 + 60))
    outbox.put(lease.pk, body(lease, key, t0 + 30, t0 + 90))  # overlaps the first
    outbox.put(lease.pk, body(lease, key, t0 + 90, t0 + 150))
    (outbox.directory / "99999999999999999999-garbage.json").write_text("{not json")

    summary = outbox.flush(MarketplaceClient(url, token))
    assert (summary.sent, summary.rejected, summary.waiting) == (2, 2, 0)
    reasons = sorted(p.read_text() for p in (tmp_path / "rejected").glob("*.reason.txt"))
    assert any("usage_overlap" in r for r in reasons) and any("unreadable" in r for r in reasons)


@pytest.mark.django_db(transaction=True)
def test_reports_go_out_in_batches_and_a_malformed_one_is_found_one_by_one(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lease, key, token, url = setup
    t0 = int(lease.started_at.timestamp()) + 1
    outbox = Outbox(tmp_path)
    for start in range(t0, t0 + 5 * 60, 60):
        outbox.put(lease.pk, body(lease, key, start, start + 60))
    broken = body(lease, key, t0 + 300, t0 + 360)
    outbox.put(lease.pk, {**broken, "signature": "0x12"})  # malformed: the batch it is in is a 400
    outbox.put(lease.pk, body(lease, key, t0 + 360, t0 + 420))

    summary = outbox.flush(MarketplaceClient(url, token), batch=2)
    assert (summary.sent, summary.rejected, summary.waiting) == (6, 1, 0)
    assert UsageReport.objects.filter(lease=lease).count() == 6
    [reason] = (tmp_path / "rejected").glob("*.reason.txt")
    assert "400 validation_error" in reason.read_text()
    assert outbox.pending() == []


def test_the_meter_survives_a_restart_without_gaps_or_overlaps(tmp_path: Path) -> None:
    with Cluster() as cluster:
        cluster.add_node("gpu-1", gpus=8, product="NVIDIA-H100-80GB-HBM3", memory_mib=81559)
        runtime = KubernetesRuntime(cluster.api_client(), node_address="203.0.113.9")
        runtime.deploy(LeaseManifest(lease_id=7, image="x", gpu_model="h100-sxm-80gb", gpu_count=4))
        started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=300)
        labels = {LABEL_MANAGED_BY: "gpumarket-agent", LABEL_LEASE: "7"}
        cluster.set_pod(
            "gpumarket-lease-7", "w", labels=labels, **running_status(started.strftime("%Y-%m-%dT%H:%M:%SZ"))
        )
        key = Account.create().key.hex()
        lease = {"id": 7, "gpu_count": 4, "started_at": (started - timedelta(seconds=60)).isoformat()}

        def meter() -> UsageMeter:
            return UsageMeter(tmp_path, runtime, Outbox(tmp_path), key=key, chain_id=CHAIN_ID, interval=60)

        now = int(time.time())
        first = meter()
        first.start(lease)
        report = first.record(7, end=now - 100)
        # from the lease's start; the workload ran only after the first minute
        assert report.period_start == int(started.timestamp()) - 60
        assert report.run_seconds == now - 100 - int(started.timestamp())
        assert report.gpu_seconds == 4 * report.run_seconds

        restarted = meter()  # a new process: the meter comes back from disk
        restarted.start(lease)  # seeing the lease again does not restart its meter
        second = restarted.record(7, end=now)
        assert second.period_start == report.period_end and second.run_seconds == 100
        assert restarted.finish(7, end=now) is None  # nothing between now and now
        assert restarted.meter(7) is None
        sent = [json.loads(p.read_text())["body"] for p in Outbox(tmp_path).pending()]
        assert [(b["period_start"], b["period_end"]) for b in sent] == [
            (report.period_start, report.period_end),
            (second.period_start, second.period_end),
        ]


def test_a_long_log_tail_keeps_its_newest_whole_lines_within_the_limit() -> None:
    from agent.logs import MAX_LOG_BYTES, clip

    assert clip("a\x00b\nc\n") == "ab\nc\n"
    lines = "".join(f"line {i} é\n" for i in range(20_000))
    clipped = clip(lines)
    assert len(clipped.encode()) <= MAX_LOG_BYTES and clipped.endswith("line 19999 é\n")
    assert clipped.startswith("line ") and lines.endswith(clipped)
    assert clip("x" * 10, limit=4) == "xxxx"  # one long line: its end


def test_a_report_carries_the_gpus_readings_where_the_runtime_has_them(tmp_path: Path) -> None:
    """NVML needs an NVIDIA driver, which this host has not: the reading here is what a runtime on a
    GPU host gives (the closest real thing runs below: NVML answering nothing, the report unharmed)."""
    from agent.inventory import GpuMetrics, gpu_metrics

    assert gpu_metrics(["GPU-00000000-0000-0000-0000-000000000000"]) is None  # no driver: no reading
    assert gpu_metrics([]) is None

    class ReadingRuntime(KubernetesRuntime):
        def gpu_metrics(self, lease_id: int) -> GpuMetrics | None:
            return GpuMetrics(utilization_pct=66.66, memory_mib=2048)

    with Cluster() as cluster:
        cluster.add_node("gpu-1", gpus=8, product="NVIDIA-H100-80GB-HBM3", memory_mib=81559)
        key = Account.create().key.hex()
        started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=120)
        lease = {"id": 8, "gpu_count": 1, "started_at": started.isoformat()}
        for runtime, readings in (
            (ReadingRuntime(cluster.api_client(), node_address="203.0.113.9"), (66.7, 2048)),
            (KubernetesRuntime(cluster.api_client(), node_address="203.0.113.9"), None),
        ):
            outbox = Outbox(tmp_path / str(readings))
            meter = UsageMeter(tmp_path / str(readings), runtime, outbox, key=key, chain_id=CHAIN_ID, interval=60)
            meter.start(lease)
            assert meter.record(8, end=int(started.timestamp()) + 60) is not None
            [body] = [json.loads(p.read_text())["body"] for p in outbox.pending()]
            got = (body["gpu_utilization_pct"], body["gpu_memory_mib"]) if "gpu_memory_mib" in body else None
            assert got == readings
