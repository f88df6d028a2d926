"""Bring the runtime in line with the marketplace's view of this provider's leases.

Each pass: deploy funded leases (reporting deploying, then running with endpoints, or failed
with the runtime's reason), redeploy running leases whose workload is missing, and tear down
whatever the runtime still runs for leases that are no longer active. Restarting the agent
changes nothing: the runtime's labels say what it owns.
"""

import logging
from dataclasses import dataclass, field

from providers.agent.client import MarketplaceClient, MarketplaceError
from providers.agent.runtimes.base import LeaseManifest, Runtime, RuntimeError_

logger = logging.getLogger("gpumarket.agent")
ACTIVE = ["funded", "deploying", "running"]


@dataclass
class PassSummary:
    active: int = 0
    deployed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    torn_down: list[int] = field(default_factory=list)


def manifest_from(data: dict) -> LeaseManifest:
    return LeaseManifest(
        lease_id=int(data["lease"]),
        image=str(data["image"]),
        command=[str(c) for c in data.get("command") or []],
        args=[str(a) for a in data.get("args") or []],
        env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
        ports=list(data.get("ports") or []),
        gpu_count=int(data.get("gpu_count") or 0),
        cpu_cores=int(data.get("cpu_cores") or 1),
        memory_gib=int(data.get("memory_gib") or 1),
    )


def reconcile_leases(client: MarketplaceClient, runtime: Runtime) -> PassSummary:
    summary = PassSummary()
    leases = client.leases(ACTIVE)
    active = {int(lease["id"]): lease for lease in leases}
    summary.active = len(active)
    for lease_id, lease in active.items():
        if lease["status"] == "running" and runtime.status(lease_id).state == "running":
            continue
        try:
            manifest = manifest_from(client.manifest(lease_id))
            if lease["status"] == "funded":
                client.report_status(lease_id, "deploying")
            deployment = runtime.deploy(manifest)
            client.report_status(lease_id, "running", endpoints=deployment.endpoints)
            summary.deployed.append(lease_id)
        except RuntimeError_ as exc:
            runtime.teardown(lease_id)
            client.report_status(lease_id, "failed", reason=str(exc))
            summary.failed.append(lease_id)
        except (MarketplaceError, KeyError, ValueError, TypeError) as exc:
            # a garbled answer or a transient error: never crash, try again next pass
            logger.warning("lease pass failed", extra={"fields": {"lease": lease_id, "error": str(exc)}})
    for lease_id in runtime.owned():
        if lease_id not in active:
            runtime.teardown(lease_id)
            summary.torn_down.append(lease_id)
    return summary
