"""The agent's main loop: what is due, when.

- inventory and heartbeat every ``heartbeat_seconds``, and the proof-of-GPU checks asked for;
- a bidding pass and a lease pass when the push socket says something happened, else every
  ``poll_seconds`` (backing off while the marketplace fails, up to two minutes);
- usage reports for running leases every ``usage_seconds``, sent through the on-disk outbox.

Nothing the marketplace or the runtime says can stop the loop: each step logs its failure and the
next pass tries again.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from agent.attesting import attest
from agent.bidding import bid_pass
from agent.client import MarketplaceClient, MarketplaceError
from agent.config import AgentConfig
from agent.inventory import source as inventory_source
from agent.lifecycle import reconcile_leases, wait_for_runtime
from agent.logs import LogShipper
from agent.proving import ProverFor, answer_checks, provers
from agent.push import PushListener
from agent.reporting import Outbox, UsageMeter
from agent.runtimes.base import Runtime, RuntimeError_, RuntimeUnavailable
from agent.shell import ShellRelay
from protocol.catalog import normalize_gpu_name

logger = logging.getLogger("gpumarket.agent")
MAX_BACKOFF = 120.0


def read_key(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


@dataclass
class Schedule:
    """When each job next runs (monotonic seconds), and how long to wait after a failure."""

    next_at: dict[str, float] = field(default_factory=dict)
    backoff: dict[str, float] = field(default_factory=dict)

    def due(self, job: str, now: float) -> bool:
        return now >= self.next_at.get(job, 0.0)

    def done(self, job: str, now: float, every: float, *, ok: bool) -> None:
        if ok:
            self.backoff.pop(job, None)
            self.next_at[job] = now + every
        else:
            wait = min(max(self.backoff.get(job, every / 2) * 2, 1.0), MAX_BACKOFF)
            self.backoff[job] = wait
            self.next_at[job] = now + wait


LOG_STREAM_SECONDS = 2.0  # how often a watched lease's log tail is sent while it changes


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        client: MarketplaceClient | None = None,
        runtime: Runtime | None = None,
        runtime_factory: Callable[[], Runtime | None] | None = None,
        push: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.client = client or MarketplaceClient(cfg.marketplace_url, cfg.token)
        self.runtime = runtime
        self.runtime_factory = runtime_factory  # tried again each lease pass while there is no runtime
        self.clock = clock
        self.wake = threading.Event()
        self.schedule = Schedule()
        self.outbox = Outbox(cfg.state_dir)
        self.meter: UsageMeter | None = None
        self.listed_models: list[str] = []  # catalog ids of the GPUs the last inventory report listed
        self.logs: LogShipper | None = None
        self._key_missing = False
        # leases whose logs someone reads now (lease id -> until, on the clock): streamed meanwhile
        self.watched: dict[int, float] = {}
        self._watched_lock = threading.Lock()
        self.listener: PushListener | None = None
        self.shells: ShellRelay | None = None
        if push:
            self.listener = PushListener(cfg.marketplace_url, cfg.token, self.wake, on_logs_watch=self.watch_logs)
            # clients' shells into their leases travel over the same socket
            self.shells = ShellRelay(lambda: self.runtime, self.listener.send)
            self.listener.on_shell, self.listener.on_lost = self.shells.handle, self.shells.close_all

    # --- set-up -------------------------------------------------------------------------------
    def _ensure_meter(self) -> None:
        """Usage is metered once the signing key and the marketplace's signing domain are known."""
        if self.meter is not None or self.runtime is None:
            return
        key = read_key(self.cfg.signing_key_file)
        if key is None:
            if self._key_missing:
                return
            self._key_missing = True
            logger.warning(
                "no signing key: usage is not reported", extra={"fields": {"key": self.cfg.signing_key_file}}
            )
            return
        domain = self.client.me().get("usage_signing_domain") or {}
        self.meter = UsageMeter(
            self.cfg.state_dir,
            self.runtime,
            self.outbox,
            key=key,
            chain_id=int(domain["chainId"]),
            interval=self.cfg.usage_seconds,
        )

    # --- jobs ---------------------------------------------------------------------------------
    def report_inventory(self) -> None:
        """What there is to rent, by model and by node, with the pricing policy's asking prices."""
        if self.runtime is not None:
            report = self.runtime.inventory_report()
        else:
            report = inventory_source(self.cfg.declared_inventory)().report()
        if self.cfg.pricing.per_gpu_hour:
            report["prices"] = dict(self.cfg.pricing.per_gpu_hour)
        self.client.report_inventory(report)
        self.listed_models = sorted(
            {normalize_gpu_name(line["model"]) or line["model"] for line in report["gpus"] if line.get("total")}
        )
        logger.info(
            "inventory reported", extra={"fields": {"gpu_lines": len(report["gpus"]), "nodes": len(report["nodes"])}}
        )

    @cached_property
    def prover_for(self) -> ProverFor | None:
        """What proves each GPU model here; found on first use (importing PyTorch takes seconds)."""
        # cards leases hold are not free to check
        return provers(self.cfg.prover, self.runtime.gpus_in_use if self.runtime is not None else set)

    def prove(self) -> None:
        """Answer the marketplace's proof-of-GPU checks, on the GPUs of each claimed model."""
        if self.prover_for is None:
            return
        summary = answer_checks(self.client, self.prover_for, self.runtime)
        if summary.answered:
            logger.info("gpu checks answered", extra={"fields": asdict(summary)})

    def attest(self) -> None:
        """Hardware attestation of each GPU model listed, where the operator set an attestation
        command (GPUs in NVIDIA confidential-computing mode)."""
        if not self.cfg.attestation_command or not self.listed_models:
            return
        summary = attest(self.client, self.cfg.attestation_command, self.listed_models)
        if summary.attested or summary.rejected or summary.failed:
            logger.info("gpu attestations", extra={"fields": asdict(summary)})

    def bid(self) -> None:
        if not self.cfg.pricing.per_gpu_hour:
            return
        summary = bid_pass(self.client, self.cfg.pricing)
        logger.info("bids placed", extra={"fields": asdict(summary)})

    def leases(self) -> None:
        if self.runtime is None and self.runtime_factory is not None:
            self.runtime = self.runtime_factory()
        if self.runtime is None:  # won leases wait, and their clients are told why
            summary = wait_for_runtime(
                self.client, runtime=self.cfg.runtime, deploy_timeout=self.cfg.deploy_timeout_seconds
            )
            logger.info("leases wait for a runtime", extra={"fields": asdict(summary)})
            return
        self._ensure_meter()
        if self.logs is None:
            self.logs = LogShipper(self.client, self.runtime)
        summary = reconcile_leases(
            self.client, self.runtime, self.meter, logs=self.logs, deploy_timeout=self.cfg.deploy_timeout_seconds
        )
        logger.info("leases reconciled", extra={"fields": asdict(summary)})

    def watch_logs(self, lease_id: int, seconds: float) -> None:
        """Stream the lease's log for ``seconds`` (from the push socket's thread)."""
        with self._watched_lock:
            self.watched[lease_id] = self.clock() + seconds

    def stream_logs(self) -> None:
        """Send the watched leases' log tails, where they changed; forget the watches that ended."""
        now = self.clock()
        with self._watched_lock:
            for lease_id in [lease for lease, until in self.watched.items() if until <= now]:
                del self.watched[lease_id]
            watched = list(self.watched)
        if self.logs is None:
            return
        for lease_id in watched:
            self.logs.ship(lease_id)

    def flush(self) -> None:
        if not self.outbox.pending():
            return
        summary = self.outbox.flush(self.client)
        logger.info("usage reports sent", extra={"fields": asdict(summary)})
        if summary.waiting:
            raise MarketplaceError(f"{summary.waiting} usage reports wait: {summary.error}")

    # --- the loop -----------------------------------------------------------------------------
    def step(self) -> None:
        """Run whatever is due now (or everything the push socket asked for)."""
        woken = self.wake.is_set()
        self.wake.clear()
        polling = self.cfg.heartbeat_seconds if self._pushed() else self.cfg.poll_seconds
        jobs: list[tuple[str, Callable[[], None], float]] = [
            ("inventory", self.report_inventory, self.cfg.heartbeat_seconds),
            ("checks", self.prove, self.cfg.heartbeat_seconds),
            ("attestation", self.attest, self.cfg.heartbeat_seconds),
            ("bids", self.bid, polling),
            ("leases", self.leases, min(polling, self.cfg.usage_seconds)),
            ("usage", self.flush, 5.0),
            ("logs", self.stream_logs, LOG_STREAM_SECONDS),
        ]
        for name, job, every in jobs:
            now = self.clock()
            pushed = woken and name in ("bids", "leases")
            if not (pushed or self.schedule.due(name, now)):
                continue
            try:
                job()
                self.schedule.done(name, now, every, ok=True)
            except (
                MarketplaceError,
                RuntimeError_,
                RuntimeUnavailable,
                OSError,
                AttributeError,
                KeyError,
                ValueError,
                TypeError,
            ) as exc:
                # the marketplace may be down or answer garbage: keep going, try again later
                logger.warning(f"{name} failed", extra={"fields": {"error": str(exc)}})
                self.schedule.done(name, now, every, ok=False)

    def _pushed(self) -> bool:
        return self.listener is not None and self.listener.connected.is_set()

    def run(self, stopping: Callable[[], bool], *, once: bool = False) -> None:
        if self.listener is not None and not once:
            self.listener.start()
        try:
            while not stopping():
                self.step()
                if once:
                    break
                self.wake.wait(timeout=1.0)
        finally:
            if self.listener is not None and not once:
                self.listener.stop()
