"""Bring the runtime in line with the marketplace's view of this provider's leases.

Each pass, for every active lease: deploy it when the runtime has nothing for it (reporting
``deploying``), report ``running`` with its endpoints once the runtime says it runs, and
``failed`` with the runtime's reason when it cannot run (or did not start in time); meter what
running leases use, and send the tail of their logs (and of a failing one's, before it goes). A
lease out of funds (``insufficient_funds``) has its workload stopped but kept; a top-up makes it
``deploying`` again with ``resumed_at`` set, and the workload is started as it was. Then, for
whatever the runtime still runs for a lease that is no longer active: the final usage report, then
teardown. A lease the marketplace says is running but the runtime lost is drift: it is redeployed
and logged. Restarting the agent changes nothing: the runtime's labels say what it owns, and the
meters live on disk. When the runtime itself does not answer (``RuntimeUnavailable``), the pass
stops and nothing is decided about any lease. A workload created but never started (the agent
stopped between the two) is started.
"""

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime

from agent.client import MarketplaceClient, MarketplaceError
from agent.logs import LogShipper
from agent.reporting import UsageMeter
from agent.runtimes.base import CAUSE_PROVIDER, CAUSE_WORKLOAD, Deployment, LeaseManifest, Runtime, RuntimeError_

logger = logging.getLogger("gpumarket.agent")
ACTIVE = ["funded", "deploying", "running", "insufficient_funds"]
SUSPENDED = "insufficient_funds"
RUNNING_STATES = ("running", "starting", "restarting")
DRIFT_REASON = "the workload disappeared from the provider's runtime; redeploying it"


@dataclass
class PassSummary:
    active: int = 0
    deployed: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    torn_down: list[int] = field(default_factory=list)
    drift: list[int] = field(default_factory=list)  # running on the marketplace, missing here
    suspended: list[int] = field(default_factory=list)  # out of funds: stopped, kept
    resumed: list[int] = field(default_factory=list)  # topped up: started again
    reports: int = 0


def manifest_from(data: dict) -> LeaseManifest:
    """The manifest as the runtime takes it; KeyError, ValueError or TypeError when malformed."""
    ports = data.get("ports") or []
    if not isinstance(ports, list) or any(not isinstance(p, dict) or "port" not in p for p in ports):
        raise ValueError("malformed ports")
    volumes = data.get("volumes") or []
    if not isinstance(volumes, list) or any(
        not isinstance(v, dict) or not {"name", "mount", "size_gib"} <= v.keys() for v in volumes
    ):
        raise ValueError("malformed volumes")
    return LeaseManifest(
        lease_id=int(data["lease"]),
        image=str(data["image"]),
        command=[str(c) for c in data.get("command") or []],
        args=[str(a) for a in data.get("args") or []],
        env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
        secret_env=frozenset(str(name) for name in data.get("secret_env") or []),
        ssh_keys=[str(key) for key in data.get("ssh_authorized_keys") or []],
        ports=[{"port": int(p["port"]), "protocol": str(p.get("protocol", "tcp"))} for p in ports],
        volumes=[
            {
                "name": str(v["name"]),
                "mount": str(v["mount"]),
                "size_gib": int(v["size_gib"]),
                "storage_class": str(v.get("storage_class") or ""),
            }
            for v in volumes
        ],
        gpu_model=str(data.get("gpu_model") or ""),
        gpu_count=int(data.get("gpu_count") or 0),
        cpu_cores=int(data.get("cpu_cores") or 1),
        memory_gib=int(data.get("memory_gib") or 1),
        storage_gib=int(data.get("storage_gib") or 1),
        shm_gib=int(data.get("shm_gib") or 0),
    )


def _timestamp(value: object) -> float:
    return datetime.fromisoformat(str(value)).timestamp()


def _converge(
    client: MarketplaceClient, runtime: Runtime, lease: dict, summary: PassSummary, *, deploy_timeout: int, now: float
) -> None:
    lease_id, status = int(lease["id"]), lease["status"]
    current = runtime.status(lease_id)
    if status == SUSPENDED:  # out of funds: stop it, keep it, and wait for a top-up or the close
        if current.state in RUNNING_STATES:
            runtime.suspend(lease_id)
            summary.suspended.append(lease_id)
            logger.info("suspended: the lease ran out of funds", extra={"fields": {"lease": lease_id}})
        return
    resumed_at = _timestamp(lease["resumed_at"]) if lease.get("resumed_at") else None
    if (
        resumed_at is not None
        and status != "running"
        and current.state in ("stopped", "exited")
        and (current.finished_at is None or current.finished_at <= resumed_at)
    ):  # topped up: start what was stopped (once: a workload that exits after this is just exited)
        current = runtime.resume(lease_id)
        summary.resumed.append(lease_id)
    if current.state == "created":
        # created but never started: the agent stopped in the middle of a deploy (before the keys
        # were placed, perhaps): nothing ran, so it is made again from the manifest
        runtime.teardown(lease_id)
        current = Deployment(lease_id=lease_id, state="missing")
    if current.state == "missing":
        if status == "running":  # drift: tell the client, then bring it back
            summary.drift.append(lease_id)
            logger.warning("drift: a running lease has no workload; redeploying", extra={"fields": {"lease": lease_id}})
            client.report_status(lease_id, "running", endpoints=list(lease.get("endpoints") or []), reason=DRIFT_REASON)
        try:
            manifest = manifest_from(client.manifest(lease_id))
        except (KeyError, ValueError, TypeError) as exc:
            raise RuntimeError_(f"the lease's manifest is malformed ({exc})") from exc
        if status == "funded":
            client.report_status(lease_id, "deploying")
        current = runtime.deploy(manifest)
        summary.deployed.append(lease_id)
    if current.state == "failed":
        raise RuntimeError_(current.error or "the workload cannot start", cause=current.cause or CAUSE_PROVIDER)
    if current.state == "running":
        # restarts are the client's to know: said beside "running", once, until the count changes
        reason = restart_reason(current.restarts)
        if (
            status != "running"
            or sorted(lease.get("endpoints") or []) != current.endpoints
            or (lease.get("status_reason") or "") != reason
        ):
            client.report_status(lease_id, "running", endpoints=current.endpoints, reason=reason)
        summary.running.append(lease_id)
    elif current.state in ("restarting", "starting") and status == "running" and current.restarts:
        # it went down and comes back (a fresh deploy after drift has no restarts, and says so itself)
        said = f": {current.error}" if current.error else ""
        reason = f"the workload is restarting ({_times(current.restarts)} so far){said}"[:480]
        if lease.get("status_reason") != reason:
            client.report_status(lease_id, "running", endpoints=list(lease.get("endpoints") or []), reason=reason)
    elif current.state == "exited" and status == "running":
        # the workload ended (a finished job, or restarts used up): the client should know, and close
        code = "" if current.exit_code is None else f" with code {current.exit_code}"
        reason = f"the workload exited{code}; close the lease to stop paying for it"
        if lease.get("status_reason") != reason:
            client.report_status(lease_id, "running", endpoints=list(lease.get("endpoints") or []), reason=reason)
    elif current.state == "exited" and current.cause == CAUSE_WORKLOAD:  # it never ran: its command fails
        code = "" if current.exit_code is None else f" with code {current.exit_code}"
        raise RuntimeError_(
            f"the workload's command exited{code} each time it started, before it ever ran", cause=CAUSE_WORKLOAD
        )
    elif status != "running" and now - max(_timestamp(lease["started_at"]), resumed_at or 0) > deploy_timeout:
        raise RuntimeError_(f"the workload did not start within {deploy_timeout} s ({current.error or current.state})")


def _times(restarts: int) -> str:
    return f"{restarts} restart" + ("" if restarts == 1 else "s")


def restart_reason(restarts: int) -> str:
    """What a running lease's page says of its workload's restarts ("" when there were none)."""
    return f"running again after {_times(restarts)}" if restarts else ""


def waiting_reason(runtime: str) -> str:
    engine = "its Kubernetes cluster" if runtime == "kubernetes" else "its Docker engine"
    return f"waiting for the provider's container runtime: {engine} does not answer"


def wait_for_runtime(
    client: MarketplaceClient, *, runtime: str, deploy_timeout: int = 900, now: float | None = None
) -> PassSummary:
    """No runtime answers: leases waiting to deploy say why, and fail once they waited too long.

    Running and suspended leases are left alone: nothing is known about their workloads."""
    now = time.time() if now is None else now
    summary = PassSummary()
    reason = waiting_reason(runtime)
    for lease in client.leases(["funded", "deploying"]):
        lease_id = int(lease["id"])
        summary.active += 1
        try:
            if now - _timestamp(lease["started_at"]) > deploy_timeout:
                client.report_status(
                    lease_id, "failed", reason=f"the workload did not start within {deploy_timeout} s ({reason})"
                )
                summary.failed.append(lease_id)
            elif lease["status"] == "funded" or lease.get("status_reason") != reason:
                client.report_status(lease_id, "deploying", reason=reason)
        except (MarketplaceError, KeyError, ValueError, TypeError) as exc:
            logger.warning("lease pass failed", extra={"fields": {"lease": lease_id, "error": str(exc)}})
    return summary


def reconcile_leases(
    client: MarketplaceClient,
    runtime: Runtime,
    meter: UsageMeter | None = None,
    *,
    logs: LogShipper | None = None,
    deploy_timeout: int = 900,
    now: float | None = None,
) -> PassSummary:
    now = time.time() if now is None else now
    summary = PassSummary()
    active = {int(lease["id"]): lease for lease in client.leases(ACTIVE)}
    summary.active = len(active)
    for lease_id, lease in active.items():
        try:
            _converge(client, runtime, lease, summary, deploy_timeout=deploy_timeout, now=now)
        except RuntimeError_ as exc:
            logger.warning("lease failed", extra={"fields": {"lease": lease_id, "reason": str(exc)}})
            if logs is not None:  # what the workload said before it failed is what the client needs
                logs.ship(lease_id)
            runtime.teardown(lease_id)
            try:
                client.report_status(lease_id, "failed", reason=str(exc), cause=exc.cause)
                summary.failed.append(lease_id)
            except MarketplaceError as report_error:  # tried again next pass: nothing runs meanwhile
                logger.warning(
                    "failure report failed", extra={"fields": {"lease": lease_id, "error": str(report_error)}}
                )
            continue
        except (MarketplaceError, AttributeError, KeyError, ValueError, TypeError) as exc:
            # a garbled answer or a transient error: never crash, try again next pass
            logger.warning("lease pass failed", extra={"fields": {"lease": lease_id, "error": str(exc)}})
            continue
        if logs is not None and (lease_id in summary.running or lease["status"] in ("running", SUSPENDED)):
            logs.ship(lease_id)
        if meter is None:
            continue
        # a suspended lease goes on reporting: what ran until it stopped, then the stopped time as not running
        suspended = lease["status"] == SUSPENDED and meter.meter(lease_id) is not None
        if lease_id in summary.running:
            meter.start(lease)
        if (
            (suspended or lease_id in summary.running)
            and meter.due(lease_id, now)
            and meter.record(lease_id, end=int(now))
        ):
            summary.reports += 1
    if logs is not None:
        logs.forget(set(active))
    owned = set(runtime.owned())
    metered = set(meter.known()) if meter is not None else set()
    for lease_id in sorted((owned | metered) - set(active)):
        if meter is not None and lease_id in metered:
            try:
                closed_at = client.lease(lease_id).get("closed_at")
                end: int | None = min(int(now), math.floor(_timestamp(closed_at))) if closed_at else int(now)
            except MarketplaceError as exc:
                if exc.status != 404:  # keep it running until the final report can be written
                    logger.warning("closed lease unreadable", extra={"fields": {"lease": lease_id, "error": str(exc)}})
                    continue
                end = None  # not a lease of this provider: nothing to report
            if meter.finish(lease_id, end=end):
                summary.reports += 1
        if lease_id in owned:
            runtime.teardown(lease_id)
            summary.torn_down.append(lease_id)
    return summary
